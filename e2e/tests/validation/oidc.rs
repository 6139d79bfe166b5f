//! OIDC discovery and the `Host` header: with no `domains`, any caller
//! chooses the `Host`, so the discovery document must not take its
//! `issuer` or `jwks_uri` from it (a JWT consumer that fetched discovery
//! through an attacker's name would trust keys wherever it points).
//! Before the fix, `domains` could be left empty and both URLs echoed the
//! request's `Host`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::free_port;

use crate::support::{ServerHandle, ServerOptions};

/// The line `server_extra` starts on in the harness's server.conf.
const EXTRA_LINE: usize = 8;

/// `GET path` on 127.0.0.1:`port` with `Host: host`: (status, body).
fn get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn oidc_block(port: u16, extra: &str) -> String {
    format!(
        "    oidc_discovery {{\n        address = \"127.0.0.1\"\n        port = {port}\n        insecure_http = true\n{extra}    }}\n"
    )
}

#[test]
fn without_domains_or_issuer_the_server_does_not_start() {
    let port = free_port().unwrap();
    let mut server = ServerHandle::configure(ServerOptions {
        server_extra: oidc_block(port, ""),
        ..Default::default()
    })
    .unwrap();
    server.spawn_process_with_env(&[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let process = server.process.as_mut().unwrap();
    while process.is_running() {
        assert!(
            Instant::now() < deadline,
            "the server started with a Host-reflecting OIDC discovery:\n{}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = process.log();
    assert!(
        log.contains(&format!("server.conf:{EXTRA_LINE}:"))
            && log.contains("server.oidc_discovery.domains")
            && log.contains("jwt_issuer")
            && log.contains("insecure_allow_any_host"),
        "the error names the key, its line and the ways out:\n{log}"
    );
}

#[test]
fn with_an_issuer_and_no_domains_the_host_is_never_published() {
    let port = free_port().unwrap();
    let issuer = "https://oidc.example.org";
    let server = ServerHandle::start(ServerOptions {
        server_extra: format!("    jwt_issuer = \"{issuer}\"\n{}", oidc_block(port, "")),
        ..Default::default()
    })
    .unwrap();
    let (status, body) = get(
        port,
        "/.well-known/openid-configuration",
        "attacker.example:8443",
    );
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["jwks_uri"], format!("{issuer}/keys"));
    assert!(!body.contains("attacker"), "{body}");
    // The keys are still served to whoever asks.
    let (status, keys) = get(port, "/keys", "attacker.example");
    assert_eq!(status, 200);
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert!(!keys["keys"].as_array().unwrap().is_empty(), "{keys}");
}

#[test]
fn the_host_is_published_only_when_asked_for_and_logged() {
    let port = free_port().unwrap();
    let mut server = ServerHandle::start(ServerOptions {
        server_extra: oidc_block(port, "        insecure_allow_any_host = true\n"),
        ..Default::default()
    })
    .unwrap();
    server
        .wait_for_log("insecure_allow_any_host = true", Duration::from_secs(10))
        .unwrap();
    let (status, body) = get(port, "/.well-known/openid-configuration", "dev.local:80");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["issuer"], "http://dev.local:80");
    assert_eq!(doc["jwks_uri"], "http://dev.local:80/keys");
}
