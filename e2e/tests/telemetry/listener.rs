//! The metrics listener of a real server keeps the limits of the health
//! listener (`spinel_transport::plain_http`): a client that trickles its
//! request head is cut off after the head timeout (10 s), an oversized
//! head is refused, and others are served meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::free_port;
use spinel_test_fixtures::{ServerHandle, ServerOptions};

use super::{append, get, telemetry_block};

/// Whether the server closed `stream` (reads EOF or an error).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slow_and_oversized_requests_are_refused() {
    let port = free_port().unwrap();
    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    append(&server.config_path, &telemetry_block(port));
    server.start_process().unwrap();

    // Slowloris: one header byte a second, never the end of the head.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let mut served_meanwhile = false;
    let cut_off = loop {
        std::thread::sleep(Duration::from_secs(1));
        if slow.write_all(b"a").is_err() || closed(&mut slow) {
            break started.elapsed();
        }
        if !served_meanwhile {
            assert_eq!(get(port, "GET", "/metrics").0, "HTTP/1.1 200 OK");
            served_meanwhile = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "a trickling client kept its connection for 25 s"
        );
    };
    assert!(
        cut_off >= Duration::from_secs(8),
        "cut off after {cut_off:?}: before the head timeout"
    );

    // An oversized head: 431, or the connection closed.
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = "a".repeat(64 * 1024);
    let _ = write!(
        big,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {header}\r\n\r\n"
    );
    let mut response = String::new();
    let _ = big.read_to_string(&mut response);
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response}"
    );
    assert!(!response.contains("spire_server_"), "{response}");

    // Still serving.
    assert_eq!(get(port, "GET", "/metrics").0, "HTTP/1.1 200 OK");
}
