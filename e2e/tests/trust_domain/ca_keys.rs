//! A damaged KeyManager key file makes a real server refuse to start, with
//! an error naming the file; it never silently makes a new CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spinel_test_fixtures::{ServerHandle, ServerOptions};

fn keys_path(server: &ServerHandle) -> std::path::PathBuf {
    server.dir.path().join("data/keys.json")
}

#[test]
fn truncated_or_corrupt_keys_json_is_refused() {
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let bundle = server.bundle_pem().unwrap();
    server.stop().unwrap();
    let path = keys_path(&server);
    let good = std::fs::read(&path).unwrap();

    // Truncated in the middle.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let err = format!("{:#}", server.start_process().unwrap_err());
    assert!(
        err.contains(&path.display().to_string()) && err.contains("corrupt or truncated"),
        "{err}"
    );

    // Valid JSON, but a key that is not a key.
    std::fs::write(
        &path,
        br#"{"keys": {"x509-CA-A": {"type": "ec-p256", "pkcs8": "AAAA"}}}"#,
    )
    .unwrap();
    let err = format!("{:#}", server.start_process().unwrap_err());
    assert!(err.contains("x509-CA-A"), "{err}");

    // Emptied: the journal's CA has no key, which is refused too.
    std::fs::write(&path, br#"{"keys": {}}"#).unwrap();
    let err = format!("{:#}", server.start_process().unwrap_err());
    assert!(err.contains("refusing to make a new CA silently"), "{err}");

    // Restored, the server starts with the same CA.
    std::fs::write(&path, &good).unwrap();
    server.start_process().unwrap();
    assert_eq!(server.bundle_pem().unwrap(), bundle);
}
