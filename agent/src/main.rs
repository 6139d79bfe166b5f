//! `spinel-agent`: see the library for everything it does.

fn main() -> std::process::ExitCode {
    spinel_agent::cli::main()
}
