//! The datastore conformance suite (`conformance.rs`; its `run_suite` takes
//! a constructor of fresh backends), run here against sled.

mod conformance;
