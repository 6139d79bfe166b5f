//! Prometheus metrics (`telemetry { Prometheus { host, port } }`) of real
//! processes, read with a parser Spinel did not write: the official Python
//! client's `prometheus_client.parser` (`interop/prometheus/`, built by
//! `interop/build prometheus`; skipped without it, unless
//! `SPINEL_INTEROP_REQUIRED=1`).
//!
//! - `metrics.rs`: the values after known actions (an attestation, an
//!   entry created, a workload fetching X509-SVIDs and a JWT-SVID), on the
//!   server and the agent; no SPIFFE ID or entry ID as a label value;
//! - `listener.rs`: the metrics listener's limits (a request head trickled
//!   byte by byte, an oversized one), other paths and methods.

mod listener;
mod metrics;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::interop::interop_dir;

/// The `telemetry` block serving metrics on `127.0.0.1:port`.
pub fn telemetry_block(port: u16) -> String {
    format!(
        "\ntelemetry {{\n    Prometheus {{\n        host = \"127.0.0.1\"\n        port = {port}\n    }}\n}}\n"
    )
}

/// Appends `text` to the config file at `path`.
pub fn append(path: &std::path::Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// `GET path` over HTTP/1.1: the status line, the head and the body.
pub fn get(port: u16, method: &str, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head.to_owned(), body.to_owned())
}

/// The parser's Python, or `None` (skipped) when `interop/build
/// prometheus` has not run and `SPINEL_INTEROP_REQUIRED` is not `1`.
pub fn parser() -> Option<PathBuf> {
    let python = interop_dir().join("out/prometheus/venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let msg = format!(
        "the Prometheus parser is not built ({} is missing): run `interop/build prometheus` (needs Python 3.11+ with venv, and PyPI)",
        python.display()
    );
    if std::env::var("SPINEL_INTEROP_REQUIRED").as_deref() == Ok("1") {
        panic!("{msg}; SPINEL_INTEROP_REQUIRED=1 forbids skipping");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// One scrape, parsed by `prometheus_client`.
#[derive(Debug)]
pub struct Scrape {
    /// `{"families": [...]}` as the parser printed it.
    pub parsed: Value,
    /// The exposition text.
    pub text: String,
}

impl Scrape {
    /// Scrapes `GET /metrics` on `port` and parses it with `python`.
    pub fn take(python: &std::path::Path, port: u16) -> Scrape {
        let (status, head, text) = get(port, "GET", "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("metrics.txt");
        std::fs::write(&input, &text).unwrap();
        let out = Command::new(python)
            .arg(interop_dir().join("prometheus/parse_metrics.py"))
            .stdin(std::fs::File::open(&input).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the parser refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed = serde_json::from_slice(&out.stdout).unwrap();
        Scrape { parsed, text }
    }

    /// Every sample as (name, labels, value).
    pub fn samples(&self) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
        let mut out = Vec::new();
        for family in self.parsed["families"].as_array().unwrap() {
            for s in family["samples"].as_array().unwrap() {
                out.push((
                    s["name"].as_str().unwrap().to_owned(),
                    s["labels"].as_object().unwrap().clone(),
                    s["value"].as_f64().unwrap_or(f64::NAN),
                ));
            }
        }
        out
    }

    /// The sum of the samples named `name` whose labels include `labels`
    /// (`None`: no such sample).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples()
            .into_iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// [`Scrape::value`], 0 when absent.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The type the parser gave the family `name`.
    pub fn family_type(&self, name: &str) -> Option<String> {
        self.parsed["families"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["type"].as_str())
            .map(str::to_owned)
    }
}
