//! A second local user against both binaries: what they can plant in a
//! directory, where the sockets are, and what the command-line clients
//! will talk to.
//!
//! - `key_files`: key and SVID files (`api fetch x509 -write`,
//!   `svid-helper`, the server's key file) are never written through a file
//!   or link another user planted, and never into a directory another user
//!   can change.
//! - `sockets`: socket directories another user owns or can write are
//!   refused; the CLIs refuse a socket another user planted; the admin
//!   socket cannot be put in the Workload API socket's directory through
//!   `..`.
//!
//! The other user is uid 65534 (nobody). These tests need root to act as
//! it (CI runs as root); without root they say so and return.

mod key_files;
mod sockets;

use std::path::Path;
use std::time::Duration;

use spinel_test_fixtures::process::{my_uid, poll};

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

/// The other local user (and its group).
pub const NOBODY: u32 = 65534;

/// True when running as root; otherwise says why the test does nothing.
pub fn root_or_skip() -> bool {
    if my_uid() == 0 {
        return true;
    }
    eprintln!("not root: acting as a second local user needs root; skipped");
    false
}

/// Gives `path` (not followed if a link) to the other user, as if they had
/// created it.
pub fn give_to_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The permission bits of `path` (not followed if a link).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// A server and an agent whose user (root) has the identity
/// `spiffe://example.org/local`, fetched once to be sure it is there.
pub fn trust_domain_with_my_identity() -> (ServerHandle, AgentHandle) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server
        .generate_token(Some("spiffe://example.org/node"))
        .unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/node",
            "-spiffeID",
            "spiffe://example.org/local",
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
    poll(Duration::from_secs(30), "the local identity", || {
        Ok(agent
            .cli(&["api", "fetch", "x509"])?
            .success()
            .then_some(()))
    })
    .unwrap();
    (server, agent)
}
