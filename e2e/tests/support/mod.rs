//! What several areas of the whole-system tests share. Add here what a
//! second area needs; what one area needs stays in its folder.

pub use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
