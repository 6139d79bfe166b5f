//! Test helpers: parse a `spinel-server` command line as the binary does,
//! Go-style flags included.

use spinel_config::flags::parse_go_style;

use crate::cli::Cli;

fn with_program(args: &[&str]) -> Vec<String> {
    std::iter::once("spinel-server")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// Parses `args` (without the program name); panics with clap's message on error.
pub fn parse(args: &[&str]) -> Cli {
    match parse_go_style::<Cli>(with_program(args)) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?} did not parse: {e}"),
    }
}

/// Parses `args` expecting an error; returns clap's message.
pub fn parse_err(args: &[&str]) -> String {
    match parse_go_style::<Cli>(with_program(args)) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => e.to_string(),
    }
}
