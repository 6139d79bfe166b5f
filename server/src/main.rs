//! `spinel-server`: see the library for everything it does.

/// jemalloc, with its background thread, gives memory back to the system soon after it is freed; with
/// glibc's allocator a flood of 8,000 connections left ~270 MB resident
/// after every connection had closed (docs/benchmarks.md#floods).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    spinel_server::cli::main()
}
