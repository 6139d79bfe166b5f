//! `kill -9` of a real server inside a key-file write (`KeyManager "disk"`,
//! `keys.json`): after the temporary file is written and synced but before
//! the rename (`keyfile:temp-written`), and after the rename but before the
//! directory sync (`keyfile:renamed`), on the very first start and during
//! `localauthority prepare`. The restarted server comes back with a key file
//! that matches its journal, a bundle that verifies every SVID it issued,
//! and no temporary key file left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use crate::support::crash::*;
use spinel_test_fixtures::{ServerHandle, ServerOptions};

/// First start, killed inside the write of the very first CA key.
fn first_start_killed_at(point: &str) {
    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    server.spawn_process_with_env(&pause_env(point)).unwrap();
    kill_at(&mut server, point);
    let keys = server.dir.path().join("data/keys.json");
    match point {
        // The key exists only in the temporary file.
        "keyfile:temp-written" => {
            assert!(!keys.exists());
            assert_eq!(temp_files(&server).len(), 1);
        }
        // The key file is in place; nothing is journaled yet.
        _ => assert!(keys.exists() && temp_files(&server).is_empty()),
    }
    server.start_process().unwrap();
    let b = bundle(&server);
    assert_eq!(b.x509_authorities.len(), 1);
    assert_eq!(b.jwt_authorities.len(), 1);
    // The CA made now is the one that stays: the same bundle after a kill.
    let pem = server.bundle_pem().unwrap();
    server.kill();
    server.start_process().unwrap();
    assert_eq!(server.bundle_pem().unwrap(), pem);
    check_consistent_and_rotate(&server, &mut Minted::default());
}

#[test]
fn first_start_killed_before_the_key_file_rename() {
    if failpoints_compiled() {
        first_start_killed_at("keyfile:temp-written");
    }
}

#[test]
fn first_start_killed_after_the_key_file_rename() {
    if failpoints_compiled() {
        first_start_killed_at("keyfile:renamed");
    }
}

/// `localauthority <kind> prepare` killed inside its key-file write, once
/// with nothing prepared and once replacing a prepared authority (the new
/// key then goes into the slot the journaled prepared authority holds).
fn prepare_killed_at(kind: &str, point: &str, already_prepared: bool) {
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let mut minted = Minted::default();
    minted.mint(&server);
    let before = if already_prepared {
        let v = json(&server, &["localauthority", kind, "prepare"]);
        id_of(&v, "prepared_authority")
    } else {
        None
    };
    let out = crash_during(&mut server, point, &["localauthority", kind, "prepare"]);
    assert!(
        !out.success(),
        "prepare answered although killed: {}",
        out.stdout
    );

    let state = json(&server, &["localauthority", kind, "show"]);
    let after = id_of(&state, "prepared");
    // The interrupted prepare left either nothing prepared, or (when one
    // was prepared before) at most that one; never a new one, never one
    // whose key is gone (the server would not have started).
    assert!(after.is_none() || after == before, "{state}");
    minted.verify(&server);
    check_consistent_and_rotate(&server, &mut minted);
}

#[test]
fn x509_prepare_killed_before_the_key_file_rename() {
    if failpoints_compiled() {
        prepare_killed_at("x509", "keyfile:temp-written", false);
    }
}

#[test]
fn x509_prepare_again_killed_after_the_key_file_rename() {
    if failpoints_compiled() {
        prepare_killed_at("x509", "keyfile:renamed", true);
    }
}

#[test]
fn jwt_prepare_again_killed_before_the_key_file_rename() {
    if failpoints_compiled() {
        prepare_killed_at("jwt", "keyfile:temp-written", true);
    }
}

#[test]
fn jwt_prepare_killed_after_the_key_file_rename() {
    if failpoints_compiled() {
        prepare_killed_at("jwt", "keyfile:renamed", false);
    }
}
