//! SVID login to a real secrets backend: a real PostgreSQL server (the
//! Debian package, started by the test) trusts the Spinel bundle
//! (`ssl_ca_file`) and authenticates clients by certificate (`cert` in
//! `pg_hba.conf`, CN = role); an app logs in with its X509-SVID (CN from the
//! entry's first DNS name) and no password. The server's own certificate is
//! an SVID too, and the client verifies it (`sslmode=verify-full`).
//!
//! Needs root (PostgreSQL refuses to run as root, so the test runs it as the
//! `postgres` user) and PostgreSQL 15 under `/usr/lib/postgresql`; without
//! them the test says so and checks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use spinel_test_fixtures::postgres::{self, Postgres, PostgresOptions, Tls};
use spinel_test_fixtures::process::{my_uid, write_file};
use spinel_test_fixtures::spinel::run_cli;
use spinel_test_fixtures::{bin_path, AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

/// `select current_user` over TCP with TLS as `user`, authenticating
/// with `cert`/`key` only, verifying the server against `root`.
fn login(pg: &Postgres, user: &str, cert: &Path, key: &Path, root: &Path) -> Output {
    let conninfo = format!(
        "host=localhost port={} user={user} dbname=postgres sslmode=verify-full \
         sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
        pg.port,
        root.display(),
        cert.display(),
        key.display()
    );
    Command::new(pg.install.bin.join("psql"))
        .args([&conninfo, "-w", "-tAc", "select current_user"])
        .env("PGPASSWORD", "")
        .output()
        .unwrap()
}

/// Writes the SVID with `hint` into `dir` with `spinel-agent svid-helper
/// -daemonMode=false`, retrying until the agent holds it.
fn write_svid(agent: &AgentHandle, dir: &Path, hint: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("helper.conf");
    write_file(
        &conf,
        &format!(
            "agent_address = \"{}\"\ncert_dir = \"{}\"\nhint = \"{hint}\"\n",
            agent.socket_path.display(),
            dir.display()
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run_cli(
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
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no SVID with hint {hint}: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn app_logs_in_to_postgres_with_its_svid_and_no_password() {
    let (Some(install), true) = (postgres::available(), my_uid() == 0) else {
        eprintln!(
            "skipped: needs root, the postgres user and PostgreSQL under /usr/lib/postgresql"
        );
        return;
    };
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
    let entry = |id: &str, dns: &str, hint: &str| {
        server
            .create_entry(&[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                id,
                "-selector",
                "unix:uid:0",
                "-dns",
                dns,
                "-hint",
                hint,
            ])
            .unwrap();
    };
    // The database's own identity (DNS name localhost, for verify-full),
    // the app's (CN "app" = the role it logs in as), and one whose CN names
    // no role.
    entry("spiffe://example.org/db", "localhost", "db");
    entry("spiffe://example.org/app", "app", "app");
    entry("spiffe://example.org/stranger", "stranger", "stranger");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let svids = |hint: &str| dir.path().join(hint);
    for hint in ["db", "app", "stranger"] {
        write_svid(&agent, &svids(hint), hint);
    }
    let file = |hint: &str, name: &str| svids(hint).join(name);
    let pg = Postgres::start(
        &install,
        dir.path(),
        &PostgresOptions {
            hba: "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n"
                .into(),
            tls: Some(Tls {
                cert: file("db", "svid.pem"),
                key: file("db", "svid_key.pem"),
                ca: file("db", "bundle.pem"),
            }),
        },
    )
    .unwrap();
    let created = pg.local_sql("create role app login").unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // The app logs in with its SVID alone.
    let root = file("app", "bundle.pem");
    let out = login(
        &pg,
        "app",
        &file("app", "svid.pem"),
        &file("app", "svid_key.pem"),
        &root,
    );
    assert!(
        out.status.success(),
        "login with the SVID failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "app");

    // An SVID of the trust domain for another name cannot take the role.
    let out = login(
        &pg,
        "app",
        &file("stranger", "svid.pem"),
        &file("stranger", "svid_key.pem"),
        &root,
    );
    assert!(
        !out.status.success(),
        "a certificate for CN=stranger logged in as app"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A certificate from outside the trust domain, even with CN=app, is
    // refused at the TLS layer.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "app");
    let key = rcgen::KeyPair::generate().unwrap();
    let foreign = params.self_signed(&key).unwrap();
    let (fc, fk) = (
        dir.path().join("foreign.pem"),
        dir.path().join("foreign.key"),
    );
    write_file(&fc, &foreign.pem()).unwrap();
    write_file(&fk, &key.serialize_pem()).unwrap();
    std::fs::set_permissions(&fk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = login(&pg, "app", &fc, &fk, &root);
    assert!(!out.status.success(), "a foreign certificate logged in");
    drop(pg);
    drop(server);
}
