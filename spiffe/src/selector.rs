//! Selectors: `type:value` facts about a workload or a node.
//!
//! The type is the attestor's name (`unix`, `k8s`, `join_token`, ...); the
//! value may itself contain colons (`k8s:pod-label:app:web`). An entry
//! matches a caller when every selector of the entry is among the caller's
//! attested selectors ([`is_subset`]).

use std::collections::BTreeSet;
use std::fmt;

/// A `type:value` selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    /// The attestor type, e.g. `unix`.
    pub kind: String,
    /// The value, e.g. `uid:1000`.
    pub value: String,
}

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text has no `:` separating type and value.
    #[error("selector {0:?} must be of the form type:value")]
    MissingSeparator(String),
    /// The type is empty.
    #[error("selector {0:?} has an empty type")]
    EmptyType(String),
    /// The value is empty.
    #[error("selector {0:?} has an empty value")]
    EmptyValue(String),
    /// The selector holds control characters.
    #[error("selector {0:?} contains control characters")]
    ControlCharacter(String),
}

impl Selector {
    /// Builds a selector from its parts, validating them.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Result<Self, SelectorError> {
        let sel = Selector {
            kind: kind.into(),
            value: value.into(),
        };
        sel.validate()?;
        Ok(sel)
    }

    /// Parses `type:value`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| SelectorError::MissingSeparator(text.to_owned()))?;
        Selector::new(kind, value)
    }

    /// Checks the invariants that [`Selector::new`] enforces.
    pub fn validate(&self) -> Result<(), SelectorError> {
        let text = || self.to_string();
        if self.kind.is_empty() {
            return Err(SelectorError::EmptyType(text()));
        }
        if self.kind.contains(':') {
            return Err(SelectorError::MissingSeparator(text()));
        }
        if self.value.is_empty() {
            return Err(SelectorError::EmptyValue(text()));
        }
        if self
            .kind
            .chars()
            .chain(self.value.chars())
            .any(char::is_control)
        {
            return Err(SelectorError::ControlCharacter(text()));
        }
        Ok(())
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// True when every selector in `required` is in `attested`. An empty
/// `required` set matches nothing: an entry without selectors is never
/// handed out.
pub fn is_subset<'a>(
    required: impl IntoIterator<Item = &'a Selector>,
    attested: &BTreeSet<Selector>,
) -> bool {
    let mut any = false;
    for s in required {
        any = true;
        if !attested.contains(s) {
            return false;
        }
    }
    any
}

/// The selectors of `required` missing from `attested`, for diagnostics.
pub fn missing<'a>(
    required: impl IntoIterator<Item = &'a Selector>,
    attested: &BTreeSet<Selector>,
) -> Vec<&'a Selector> {
    required
        .into_iter()
        .filter(|s| !attested.contains(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_with_colons() {
        let s = Selector::parse("k8s:pod-label:app:web").unwrap();
        assert_eq!(s.kind, "k8s");
        assert_eq!(s.value, "pod-label:app:web");
        assert_eq!(s.to_string(), "k8s:pod-label:app:web");
    }

    #[test]
    fn refuses_bad_selectors() {
        assert!(matches!(
            Selector::parse("unix"),
            Err(SelectorError::MissingSeparator(_))
        ));
        assert!(matches!(
            Selector::parse(":uid"),
            Err(SelectorError::EmptyType(_))
        ));
        assert!(matches!(
            Selector::parse("unix:"),
            Err(SelectorError::EmptyValue(_))
        ));
        assert!(matches!(
            Selector::parse("unix:uid:1\n0"),
            Err(SelectorError::ControlCharacter(_))
        ));
    }

    #[test]
    fn subset_rule() {
        let attested: BTreeSet<_> = ["unix:uid:1000", "unix:gid:1000"]
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        let one = [Selector::parse("unix:uid:1000").unwrap()];
        let two = [
            Selector::parse("unix:uid:1000").unwrap(),
            Selector::parse("unix:gid:0").unwrap(),
        ];
        assert!(is_subset(&one, &attested));
        assert!(!is_subset(&two, &attested));
        assert!(!is_subset(&[], &attested));
        assert_eq!(missing(&two, &attested), vec![&two[1]]);
    }
}
