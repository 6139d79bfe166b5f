//! Spinel's whole-system tests live in `tests/`: one test binary
//! (`tests/main.rs`), one folder per area, one support module. They start
//! the real `spinel-server` and `spinel-agent` binaries of this workspace
//! (built by `cargo nextest run --workspace`) through
//! `spinel_test_fixtures`, and check them with clients nobody on this
//! project wrote wherever one exists. This library is empty.
