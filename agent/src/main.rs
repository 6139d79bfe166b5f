//! `spinel-agent`: see the library for everything it does.

/// jemalloc, with its background thread, gives memory back to the system soon after it is freed (see
/// the server's `main.rs` and docs/benchmarks.md#floods).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    spinel_agent::cli::main()
}
