//! SPIRE's `health_checks` HTTP listener on both binaries, with real
//! processes: `live` and `ready` on the configured paths, other paths 404,
//! other methods 405, the listener gone with the process. (`ready` false
//! while not serving: `spinel_transport::health_http`'s tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::free_port;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

/// `method path` over HTTP/1.1; the status code, or `None` while nothing
/// listens.
fn status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

fn eventually(port: u16, path: &str, want: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = status(port, "GET", path);
        if last == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what}: GET {path} never answered {want} (last: {last:?}); log:\n{}",
        log()
    );
}

fn health_block(port: u16) -> String {
    format!(
        "\nhealth_checks {{\n    listener_enabled = true\n    bind_address = \"127.0.0.1\"\n    bind_port = \"{port}\"\n    live_path = \"/alive\"\n    ready_path = \"/readyz\"\n}}\n"
    )
}

fn append(path: &std::path::Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn live_and_ready_on_both_binaries() {
    let server_health = free_port().unwrap();
    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    append(&server.config_path, &health_block(server_health));
    server.start_process().unwrap();
    assert_eq!(status(server_health, "GET", "/alive"), Some(200));
    assert_eq!(status(server_health, "GET", "/readyz"), Some(200));
    assert_eq!(status(server_health, "GET", "/live"), Some(404));
    assert_eq!(status(server_health, "POST", "/readyz"), Some(405));
    let token = server.generate_token(None).unwrap();

    let agent_health = free_port().unwrap();
    let mut agent = AgentHandle::configure(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    append(&agent.config_path, &health_block(agent_health));
    agent.start_process().unwrap();
    eventually(agent_health, "/alive", 200, "the agent", || agent.log());
    eventually(
        agent_health,
        "/readyz",
        200,
        "the agent once synced",
        || agent.log(),
    );
    assert_eq!(status(agent_health, "GET", "/nope"), Some(404));
    assert_eq!(status(agent_health, "PUT", "/alive"), Some(405));

    agent.stop().unwrap();
    assert_eq!(
        status(agent_health, "GET", "/alive"),
        None,
        "the listener outlived the agent"
    );
}
