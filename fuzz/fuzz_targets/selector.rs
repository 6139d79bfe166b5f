//! Selector parsing: an accepted selector round-trips exactly and keeps
//! the invariants `Selector::validate` states; a set matches itself.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use spinel_spiffe::selector::{self, Selector};

fuzz_target!(|data: &[u8]| {
    let Some(input) = spinel_fuzz::text(data) else {
        return;
    };
    let mut accepted = BTreeSet::new();
    for line in input.split('\n') {
        let Ok(sel) = Selector::parse(line) else {
            continue;
        };
        assert_eq!(sel.to_string(), line, "shown as given");
        assert_eq!(Selector::parse(&sel.to_string()).as_ref(), Ok(&sel));
        assert!(sel.validate().is_ok());
        assert!(!sel.kind.is_empty() && !sel.value.is_empty());
        assert!(!sel.kind.contains(':'));
        assert!(!line.chars().any(char::is_control));
        assert_eq!(
            Selector::new(sel.kind.clone(), sel.value.clone()).as_ref(),
            Ok(&sel)
        );
        accepted.insert(sel);
    }
    if !accepted.is_empty() {
        assert!(selector::is_subset(&accepted, &accepted));
        assert!(selector::missing(&accepted, &accepted).is_empty());
    } else {
        assert!(
            !selector::is_subset(&accepted, &accepted),
            "no selectors match nothing"
        );
    }
});
