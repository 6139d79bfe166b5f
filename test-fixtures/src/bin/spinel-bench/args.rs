//! `--name value` flags of one row; a flag the row does not read is an error.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// The flags given, consumed by the row as it reads them.
pub struct Flags(BTreeMap<String, String>);

impl Flags {
    pub fn parse(argv: impl Iterator<Item = String>) -> Result<Flags> {
        let mut map = BTreeMap::new();
        let mut argv = argv.peekable();
        while let Some(flag) = argv.next() {
            let Some(name) = flag.strip_prefix("--").or_else(|| flag.strip_prefix('-')) else {
                bail!("expected a flag, got {flag:?}");
            };
            let value = argv
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            map.insert(name.to_owned(), value);
        }
        Ok(Flags(map))
    }

    /// The number given as `--name`, or `default`; at least `min`.
    pub fn number(&mut self, name: &str, default: usize, min: usize) -> Result<usize> {
        let Some(value) = self.0.remove(name) else {
            return Ok(default);
        };
        let n: usize = value
            .parse()
            .with_context(|| format!("--{name} needs a number, got {value:?}"))?;
        if n < min {
            bail!("--{name} must be at least {min}, got {n}");
        }
        Ok(n)
    }

    /// The text given as `--name`, or `default`.
    pub fn text(&mut self, name: &str, default: &str) -> String {
        self.0.remove(name).unwrap_or_else(|| default.to_owned())
    }

    /// Fails on any flag no one read.
    pub fn done(self) -> Result<()> {
        if let Some(name) = self.0.keys().next() {
            bail!("unknown flag --{name} for this row");
        }
        Ok(())
    }
}
