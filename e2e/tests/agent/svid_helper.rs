//! End to end: `spinel-agent svid-helper` keeps SVID files fresh for an
//! application that cannot speak the Workload API, with real server,
//! agent and helper processes, and a real non-Rust TLS peer (`openssl
//! s_server` / `s_client`) using the files it writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::process::{free_port, write_file};
use spinel_test_fixtures::{
    bin_path, AgentHandle, AgentOptions, Process, ServerHandle, ServerOptions,
};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;

use crate::support::wait_until;

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

fn trust_domain(ttl: &str) -> (ServerHandle, AgentHandle) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let uid = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/web",
            "-selector",
            &uid,
            "-dns",
            "web.example.org",
            "-x509SVIDTTL",
            ttl,
        ])
        .unwrap();
    (server, agent)
}

/// Starts the helper with `conf` (written into `dir`).
fn start_helper(dir: &Path, conf: &str) -> Process {
    let path = dir.join("helper.conf");
    write_file(&path, conf).unwrap();
    Process::spawn(
        &bin_path("spinel-agent"),
        &["svid-helper", "-config", path.to_str().unwrap()],
        &[],
        &dir.join("helper.log"),
    )
    .unwrap()
}

fn uri_san(pem_text: &[u8]) -> String {
    let pem = Pem::iter_from_buffer(pem_text).next().unwrap().unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                san.general_names.iter().find_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
            }
            _ => None,
        })
        .unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// How long a step may take.
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn helper_writes_rotates_and_runs_the_reload_hook() {
    let (server, agent) = trust_domain("8");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let reloads = dir.path().join("reloads");
    let hook = dir.path().join("reload.sh");
    write_file(
        &hook,
        &format!("#!/bin/sh\necho reload >> {}\n", reloads.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut helper = start_helper(
        dir.path(),
        &format!(
            r#"agent_address = "{socket}"
cert_dir = "{certs}"
cmd = "{hook}"
jwt_svids = [{{jwt_audience = "vault", jwt_extra_audiences = ["db"], jwt_svid_file_name = "jwt.token"}}]
jwt_bundle_file_name = "jwt_bundle.json"
"#,
            socket = agent.socket_path.display(),
            certs = certs.display(),
            hook = hook.display(),
        ),
    );
    let svid = certs.join("svid.pem");
    wait_until(
        "the hook ran once",
        LIMIT,
        || helper.log(),
        || lines(&reloads) >= 1,
    );

    let first = std::fs::read(&svid).unwrap();
    assert_eq!(uri_san(&first), "spiffe://example.org/web");
    let key = certs.join("svid_key.pem");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&svid), 0o644);
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let bundle = std::fs::read_to_string(certs.join("bundle.pem")).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE"));
    assert_eq!(mode(&certs.join("jwt.token")), 0o600);
    let token = std::fs::read_to_string(certs.join("jwt.token")).unwrap();
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "spiffe://example.org/web");
    assert_eq!(claims["aud"], serde_json::json!(["vault", "db"]));
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(certs.join("jwt_bundle.json")).unwrap()).unwrap();
    assert!(!jwks["keys"].as_array().unwrap().is_empty(), "{jwks}");

    // Rotation (TTL 8 s: renewed at about half) rewrites the chain and runs
    // the hook again.
    wait_until(
        "a rotated SVID on disk",
        LIMIT,
        || helper.log(),
        || std::fs::read(&svid).unwrap() != first && lines(&reloads) >= 2,
    );
    assert_eq!(
        uri_san(&std::fs::read(&svid).unwrap()),
        "spiffe://example.org/web"
    );
    assert!(helper.is_running());
    helper.stop(Duration::from_secs(10)).unwrap();
    drop(server);
}

#[test]
fn helper_signals_the_process_in_pid_file_and_openssl_uses_the_files() {
    let (server, agent) = trust_domain("3600");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    // An application that reloads on SIGHUP, with its pid in a file.
    let hups = dir.path().join("hups");
    let pid_file = dir.path().join("app.pid");
    let mut app = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap 'echo hup >> {}' HUP; echo $$ > {}; while :; do sleep 0.1; done",
            hups.display(),
            pid_file.display()
        ))
        .spawn()
        .unwrap();
    wait_until("the app wrote its pid", LIMIT, String::new, || {
        lines(&pid_file) == 1
    });
    let mut helper = start_helper(
        dir.path(),
        &format!(
            "agent_address = \"unix://{socket}\"\ncert_dir = \"{certs}\"\npid_file_name = \"{pid}\"\nrenew_signal = \"SIGHUP\"\n",
            socket = agent.socket_path.display(),
            certs = certs.display(),
            pid = pid_file.display(),
        ),
    );
    wait_until(
        "the app got SIGHUP",
        LIMIT,
        || helper.log(),
        || lines(&hups) >= 1,
    );

    // A real non-Rust TLS stack accepts and presents the helper's files:
    // mutual TLS, each side verifying the other against bundle.pem.
    let file = |n: &str| certs.join(n).to_str().unwrap().to_owned();
    let (svid, key) = (file("svid.pem"), file("svid_key.pem"));
    let out = mutual_tls(dir.path(), &certs, &svid, &key);
    assert!(
        out.client.contains("Verify return code: 0 (ok)"),
        "{}",
        out.client
    );
    assert!(out.client.contains("web.example.org"), "{}", out.client);
    assert!(
        out.server.contains("BEGIN SSL SESSION PARAMETERS") && !out.server.contains("verify error"),
        "s_server did not accept the SVID:\n{}",
        out.server
    );

    // A certificate from another CA is refused by the server.
    let foreign = rcgen::generate_simple_self_signed(vec!["intruder".to_owned()]).unwrap();
    let (fc, fk) = (dir.path().join("f.pem"), dir.path().join("f.key"));
    write_file(&fc, &foreign.cert.pem()).unwrap();
    write_file(&fk, &foreign.signing_key.serialize_pem()).unwrap();
    let out = mutual_tls(
        dir.path(),
        &certs,
        fc.to_str().unwrap(),
        fk.to_str().unwrap(),
    );
    assert!(
        out.server.contains("verify error"),
        "s_server accepted a foreign certificate:\n{}",
        out.server
    );

    helper.stop(Duration::from_secs(10)).unwrap();
    let _ = app.kill();
    let _ = app.wait();
    drop(server);
}

#[test]
fn helper_writes_once_and_exits_without_daemon_mode() {
    let (server, agent) = trust_domain("3600");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let conf = dir.path().join("helper.conf");
    write_file(
        &conf,
        &format!(
            "agent_address = \"{}\"\ncert_dir = \"{}\"\ndaemon_mode = true\nsvid_bundle_file_name = \"ca.pem\"\n",
            agent.socket_path.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    // The flag overrides the file; retry until the agent has the entry.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = spinel_test_fixtures::spinel::run_cli(
            &bin_path("spinel-agent"),
            &[
                "svid-helper",
                "-config",
                conf.to_str().unwrap(),
                "-daemonMode=false",
            ],
        )
        .unwrap();
        if out.success() {
            break;
        }
        assert!(Instant::now() < deadline, "never succeeded: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(dir.path().join("svid.pem").exists());
    assert!(dir.path().join("ca.pem").exists());

    // A config error names the key and the file.
    write_file(
        &conf,
        "cert_dir = \"/nonexistent-dir\"\nsvid_file = \"x\"\n",
    )
    .unwrap();
    let out = spinel_test_fixtures::spinel::run_cli(
        &bin_path("spinel-agent"),
        &["svid-helper", "-config", conf.to_str().unwrap()],
    )
    .unwrap();
    assert!(!out.success());
    assert!(
        out.stderr.contains("svid_file") && out.stderr.contains("helper.conf"),
        "{}",
        out.stderr
    );
    drop(server);
}

/// What `openssl s_server` and `s_client` printed for one connection.
struct TlsRun {
    server: String,
    client: String,
}

/// One mutual-TLS connection: `openssl s_server` with the helper's files
/// (client certificate required, verified against `bundle.pem`), and
/// `openssl s_client` presenting `cert`/`key` and verifying the server.
fn mutual_tls(dir: &Path, certs: &Path, cert: &str, key: &str) -> TlsRun {
    let file = |n: &str| certs.join(n).to_str().unwrap().to_owned();
    let port = free_port().unwrap();
    let log = dir.join(format!("s_server.{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    // stdin stays open (piped) or s_server quits at once.
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", &port.to_string(), "-naccept", "1"])
        .args(["-cert", &file("svid.pem"), "-key", &file("svid_key.pem")])
        .args([
            "-CAfile",
            &file("bundle.pem"),
            "-Verify",
            "1",
            "-verify_return_error",
        ])
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-cert", cert, "-key", key, "-CAfile", &file("bundle.pem")])
            .args(["-verify_return_error"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("CONNECTED") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // -naccept 1: the server ends after this connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
    TlsRun {
        server: std::fs::read_to_string(&log).unwrap_or_default(),
        client,
    }
}
