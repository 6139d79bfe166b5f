//! The entry point both binaries share: parse the command line the Go way
//! (SPIRE's spellings, see [`crate::flags`]), run the chosen command on a
//! multi-threaded tokio runtime, and turn the outcome into the exit code
//! SPIRE's commands use.
//!
//! | outcome | output | exit code |
//! |---|---|---|
//! | `-h`, `--help`, `--version` | the text, on stdout | 0 |
//! | usage error (unknown flag, missing value) | clap's message, on stderr | 2 |
//! | the runtime cannot start | `Error: cannot start the async runtime: ...` | 1 |
//! | the command fails | `Error: <error and its causes>` | 1 |
//! | the command chooses one (`validate`) | its own | its own |

use std::ffi::OsString;
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use clap::Parser;

/// Parses `args` (the first is the program name) into `C` and runs
/// `command` with it on a fresh runtime. `command` answers `Ok(code)` for a
/// command that chose its exit code, `Ok(ExitCode::SUCCESS)` when it
/// succeeded, or the error to print (with `{:#}`, so an `anyhow` error
/// shows its causes).
pub fn main_with_args<C, F, Fut, E>(
    args: impl IntoIterator<Item = OsString>,
    command: F,
) -> ExitCode
where
    C: Parser,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<ExitCode, E>>,
    E: Display,
{
    let cli: C = match crate::flags::parse_go_style(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match command(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
