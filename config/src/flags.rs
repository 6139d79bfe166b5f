//! Go-style command-line flags on top of `clap`.
//!
//! SPIRE's commands use Go's `flag` package, where long flags take one dash:
//! `-spiffeID spiffe://x`, `-spiffeID=spiffe://x`, and also `--spiffeID x`.
//! Define the command with `clap` derive and the Go spellings as long names
//! (`#[arg(long = "spiffeID")]`), then parse with [`parse_go_style`], which
//! runs [`normalize_args`] to turn `-spiffeID` into `--spiffeID` first.
//!
//! # Rewriting rules
//!
//! * Only `-name` and `-name=value` where `name` is a long flag (or alias) of
//!   the command are rewritten; flags of the subcommand reached so far are
//!   used, then, for error messages, any long flag of the whole tree. So
//!   negative numbers (`-5`), `-` and unknown short clusters are untouched.
//! * Nothing after a `--` separator is rewritten.
//! * The argument after a flag that takes a value (`-hint -x`) is that flag's
//!   value and is never rewritten. A flag with an optional value consumes the
//!   next argument only if it does not start with `-`; a flag with
//!   `require_equals` never consumes the next argument. Only one value is
//!   skipped, even for flags taking several values per occurrence: repeat the
//!   flag instead, as Go does (`-selector a -selector b`).
//!
//! # Go-style booleans
//!
//! Go accepts `-admin`, `-admin=true` and `-admin=false` (but not
//! `-admin false`). In `clap` that is:
//!
//! ```
//! use clap::{ArgAction, Parser};
//!
//! #[derive(Parser)]
//! struct Create {
//!     #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
//!           default_value = "false", default_missing_value = "true",
//!           value_parser = spinel_config::flags::parse_go_bool)]
//!     admin: bool,
//!     /// Repeated flags collect into a `Vec`.
//!     #[arg(long = "selector", action = ArgAction::Append)]
//!     selectors: Vec<String>,
//! }
//!
//! let parse = |args: &[&str]| spinel_config::flags::parse_go_style::<Create>(args.iter().copied());
//! assert!(parse(&["create", "-admin"])?.admin);
//! assert!(parse(&["create", "-admin=true"])?.admin);
//! assert!(!parse(&["create", "-admin=false"])?.admin);
//! assert!(!parse(&["create"])?.admin);
//! let c = parse(&["create", "-selector", "unix:uid:0", "--selector=k8s:ns:x"])?;
//! assert_eq!(c.selectors, ["unix:uid:0", "k8s:ns:x"]);
//! # Ok::<(), clap::Error>(())
//! ```

use std::ffi::OsString;

use clap::{Arg, Command, Parser};

/// Parses `args` (starting with the program name) into `T`, accepting Go's
/// single-dash long flags; see the [module documentation](self).
pub fn parse_go_style<T: Parser>(
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<T, clap::Error> {
    let mut cmd = T::command();
    let args = normalize_args(&cmd, args);
    let mut matches = cmd.try_get_matches_from_mut(args)?;
    T::from_arg_matches_mut(&mut matches).map_err(|err| err.format(&mut cmd))
}

/// Go's `strconv.ParseBool`, for use as a `clap` `value_parser`: accepts
/// `1 t T TRUE true True 0 f F FALSE false False`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean value {s:?}; expected true or false"
        )),
    }
}

/// How a flag treats the argument that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The next argument is not this flag's.
    Free,
    /// The next argument is this flag's value, whatever it looks like.
    Value,
    /// The next argument is this flag's value unless it starts with `-`.
    ValueUnlessFlag,
}

/// What the argument after `arg` is, when `arg` is given as `--name` (with
/// `inline` true for `--name=value`).
fn next_of(arg: &Arg, inline: bool) -> Next {
    let takes_values = arg.get_action().takes_values()
        && arg.get_num_args().is_none_or(|range| range.takes_values());
    if inline || !takes_values || arg.is_require_equals_set() {
        Next::Free
    } else if arg
        .get_num_args()
        .is_some_and(|range| range.min_values() == 0)
    {
        Next::ValueUnlessFlag
    } else {
        Next::Value
    }
}

/// The argument of `cmd` with long name or alias `name`.
fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|arg| {
        arg.get_long() == Some(name)
            || arg
                .get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

/// The argument with long name or alias `name` anywhere under `cmd`.
fn find_long_in_tree<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    find_long(cmd, name).or_else(|| {
        cmd.get_subcommands()
            .find_map(|sub| find_long_in_tree(sub, name))
    })
}

/// The argument of `cmd` with short name or alias `c`.
fn find_short(cmd: &Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().find(|arg| {
        arg.get_short() == Some(c)
            || arg
                .get_all_short_aliases()
                .is_some_and(|aliases| aliases.contains(&c))
    })
}

/// Rewrites Go-style `-name` and `-name=value` long flags to `--name` and
/// `--name=value` for `clap`; see the [module documentation](self) for the
/// exact rules. `args` starts with the program name, unless `cmd` has
/// `no_binary_name` set.
pub fn normalize_args(
    cmd: &Command,
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> Vec<OsString> {
    let mut root = cmd.clone();
    root.build();
    let mut args = args.into_iter().map(Into::into);
    let mut out: Vec<OsString> = Vec::new();
    if !root.is_no_binary_name_set() {
        out.extend(args.next());
    }
    let mut current = &root;
    let mut next = Next::Free;
    let mut verbatim = false;
    for arg in args {
        let owned = std::mem::replace(&mut next, Next::Free);
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let is_value = match owned {
            Next::Free => false,
            Next::Value => true,
            Next::ValueUnlessFlag => !text.starts_with('-'),
        };
        if verbatim || is_value {
            out.push(arg);
            continue;
        }
        if text == "--" {
            verbatim = true;
            out.push(arg);
            continue;
        }
        if let Some(body) = text.strip_prefix("--") {
            let (name, inline) = body
                .split_once('=')
                .map_or((body, false), |(n, _)| (n, true));
            if let Some(flag) = find_long(current, name).or_else(|| find_long_in_tree(&root, name))
            {
                next = next_of(flag, inline);
            }
            out.push(arg);
            continue;
        }
        if let Some(body) = text.strip_prefix('-').filter(|b| !b.is_empty()) {
            let (name, inline) = body
                .split_once('=')
                .map_or((body, false), |(n, _)| (n, true));
            if let Some(flag) = find_long(current, name).or_else(|| find_long_in_tree(&root, name))
            {
                next = next_of(flag, inline);
                out.push(format!("-{text}").into());
                continue;
            }
            // A lone short flag that takes a value, as in `-c server.conf`.
            let mut chars = body.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                if let Some(flag) = find_short(current, c) {
                    next = next_of(flag, false);
                }
            }
            out.push(arg);
            continue;
        }
        if let Some(sub) = current.find_subcommand(text) {
            current = sub;
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests;
