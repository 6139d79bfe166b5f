//! Tests of the [`flags`](super) module.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser, Subcommand};

use super::*;

#[derive(Debug, Parser)]
#[command(name = "spinel-server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Run {
        #[arg(long, short = 'c')]
        config: Option<String>,
        #[arg(long = "expandEnv", action = ArgAction::Set, num_args = 0..=1,
              require_equals = true, default_value = "false",
              default_missing_value = "true", value_parser = parse_go_bool)]
        expand_env: bool,
    },
    #[command(subcommand)]
    Entry(EntryCmd),
}

#[derive(Debug, Subcommand)]
enum EntryCmd {
    Create {
        #[arg(long = "spiffeID")]
        spiffe_id: Option<String>,
        #[arg(long = "parentID")]
        parent_id: Option<String>,
        #[arg(long = "selector", action = ArgAction::Append)]
        selectors: Vec<String>,
        #[arg(long, allow_hyphen_values = true)]
        hint: Option<String>,
        #[arg(long, allow_negative_numbers = true)]
        ttl: Option<i64>,
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        admin: bool,
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_value = "false", default_missing_value = "true",
              value_parser = parse_go_bool)]
        downstream: bool,
        #[arg(last = true)]
        rest: Vec<String>,
    },
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn normalize(args: &[&str]) -> Vec<OsString> {
    normalize_args(&Cli::command(), args.iter().copied())
}

fn create(args: &[&str]) -> Result<EntryCmd, clap::Error> {
    let mut all = vec!["spinel-server", "entry", "create"];
    all.extend_from_slice(args);
    match parse_go_style::<Cli>(all)?.command {
        Cmd::Entry(entry) => Ok(entry),
        Cmd::Run { .. } => panic!("parsed the wrong subcommand"),
    }
}

#[test]
fn rewrites_known_long_flags_in_all_forms() {
    let got = normalize(&[
        "spinel-server",
        "entry",
        "create",
        "-spiffeID",
        "spiffe://x/a",
        "-parentID=spiffe://x/b",
        "--selector",
        "unix:uid:0",
    ]);
    let want = os(&[
        "spinel-server",
        "entry",
        "create",
        "--spiffeID",
        "spiffe://x/a",
        "--parentID=spiffe://x/b",
        "--selector",
        "unix:uid:0",
    ]);
    assert_eq!(got, want);

    let EntryCmd::Create {
        spiffe_id,
        parent_id,
        selectors,
        ..
    } = create(&[
        "-spiffeID",
        "spiffe://x/a",
        "-parentID=spiffe://x/b",
        "--selector",
        "a:b",
    ])
    .unwrap();
    assert_eq!(spiffe_id.as_deref(), Some("spiffe://x/a"));
    assert_eq!(parent_id.as_deref(), Some("spiffe://x/b"));
    assert_eq!(selectors, ["a:b"]);
}

#[test]
fn leaves_unknown_flags_numbers_and_dashes_alone() {
    let got = normalize(&[
        "spinel-server",
        "entry",
        "create",
        "-nope",
        "-5",
        "-",
        "-x=1",
    ]);
    assert_eq!(
        got,
        os(&[
            "spinel-server",
            "entry",
            "create",
            "-nope",
            "-5",
            "-",
            "-x=1"
        ])
    );
    let err = create(&["-nope"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownArgument);
}

#[test]
fn never_rewrites_after_the_separator() {
    let got = normalize(&[
        "spinel-server",
        "entry",
        "create",
        "-admin",
        "--",
        "-spiffeID",
        "x",
    ]);
    assert_eq!(
        got,
        os(&[
            "spinel-server",
            "entry",
            "create",
            "--admin",
            "--",
            "-spiffeID",
            "x"
        ])
    );
    let EntryCmd::Create {
        rest, spiffe_id, ..
    } = create(&["--", "-spiffeID", "x"]).unwrap();
    assert_eq!(rest, ["-spiffeID", "x"]);
    assert_eq!(spiffe_id, None);
}

#[test]
fn never_rewrites_a_flag_value() {
    let got = normalize(&[
        "spinel-server",
        "entry",
        "create",
        "-hint",
        "-spiffeID",
        "-ttl",
        "-5",
    ]);
    assert_eq!(
        got,
        os(&[
            "spinel-server",
            "entry",
            "create",
            "--hint",
            "-spiffeID",
            "--ttl",
            "-5"
        ])
    );
    let EntryCmd::Create { hint, ttl, .. } = create(&["-hint", "-spiffeID", "-ttl=-5"]).unwrap();
    assert_eq!(hint.as_deref(), Some("-spiffeID"));
    assert_eq!(ttl, Some(-5));
}

#[test]
fn short_flags_taking_values_consume_the_next_argument() {
    let got = normalize(&["spinel-server", "run", "-c", "-expandEnv"]);
    assert_eq!(got, os(&["spinel-server", "run", "-c", "-expandEnv"]));
    let got = normalize(&["spinel-server", "run", "-c", "a.conf", "-expandEnv"]);
    assert_eq!(
        got,
        os(&["spinel-server", "run", "-c", "a.conf", "--expandEnv"])
    );
}

#[test]
fn go_booleans_accept_bare_and_equals_forms() {
    let admin = |args: &[&str]| match create(args) {
        Ok(EntryCmd::Create {
            admin, downstream, ..
        }) => (admin, downstream),
        Err(err) => panic!("{args:?}: {err}"),
    };
    assert_eq!(admin(&[]), (false, false));
    assert_eq!(admin(&["-admin", "-downstream"]), (true, true));
    assert_eq!(admin(&["-admin=true", "-downstream=true"]), (true, true));
    assert_eq!(
        admin(&["-admin=false", "-downstream=false"]),
        (false, false)
    );
    assert_eq!(admin(&["--admin=true", "--downstream=1"]), (true, true));
    assert_eq!(admin(&["-downstream=F"]), (false, false));
    // As in Go, the value must be attached: `-admin false` leaves `false` over.
    assert_eq!(
        normalize(&["p", "entry", "create", "-admin", "false"])[3],
        "--admin"
    );
    assert!(create(&["-admin", "false"]).is_err());
    assert!(create(&["-downstream=maybe"]).is_err());
}

#[test]
fn repeated_flags_collect_in_order() {
    let EntryCmd::Create { selectors, .. } =
        create(&["-selector", "a:1", "-selector=b:2", "--selector", "c:3"]).unwrap();
    assert_eq!(selectors, ["a:1", "b:2", "c:3"]);
}

#[test]
fn flags_of_other_subcommands_are_rewritten_for_clear_errors() {
    let got = normalize(&["spinel-server", "run", "-spiffeID", "x"]);
    assert_eq!(got, os(&["spinel-server", "run", "--spiffeID", "x"]));
    let err = parse_go_style::<Cli>(["spinel-server", "run", "-spiffeID", "x"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    assert!(err.to_string().contains("--spiffeID"), "{err}");
}

#[test]
fn help_is_reachable_with_one_dash() {
    let err = parse_go_style::<Cli>(["spinel-server", "run", "-help"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DisplayHelp);
    let err = parse_go_style::<Cli>(["spinel-server", "-h"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DisplayHelp);
}

#[test]
fn run_flags_parse() {
    let cli =
        parse_go_style::<Cli>(["spinel-server", "run", "-config=s.conf", "-expandEnv"]).unwrap();
    match cli.command {
        Cmd::Run { config, expand_env } => {
            assert_eq!(config.as_deref(), Some("s.conf"));
            assert!(expand_env);
        }
        Cmd::Entry(_) => panic!("parsed the wrong subcommand"),
    }
}

#[test]
fn parse_go_bool_matches_strconv() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_go_bool(t), Ok(true));
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_go_bool(f), Ok(false));
    }
    for bad in ["", "yes", "tRUE", "2"] {
        assert!(parse_go_bool(bad).is_err());
    }
}
