//! `spinel-server`: see the library for everything it does.

fn main() -> std::process::ExitCode {
    spinel_server::cli::main()
}
