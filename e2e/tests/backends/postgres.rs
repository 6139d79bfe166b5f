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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::{free_port, my_uid, write_file};
use spinel_test_fixtures::spinel::run_cli;
use spinel_test_fixtures::{bin_path, AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

/// The newest PostgreSQL server installed, if any.
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres")).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// A PostgreSQL server in a temporary directory, stopped on drop.
struct Postgres {
    child: Child,
    port: u16,
    socket_dir: PathBuf,
    bin: PathBuf,
    ids: (u32, u32),
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn as_postgres(cmd: &mut Command, ids: (u32, u32)) -> &mut Command {
    cmd.uid(ids.0).gid(ids.1).env("LC_ALL", "C")
}

fn chown_to(path: &Path, ids: (u32, u32)) {
    std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1)).unwrap();
}

impl Postgres {
    /// `initdb`, TLS with `cert`/`key`/`ca` (copied in, owned by postgres),
    /// `hostssl ... cert` for TCP, trust on the local socket for set-up.
    fn start(
        dir: &Path,
        bin: &Path,
        ids: (u32, u32),
        cert: &Path,
        key: &Path,
        ca: &Path,
    ) -> Postgres {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.join("pgdata");
        let socket_dir = dir.join("pgsock");
        for d in [&data, &socket_dir] {
            std::fs::create_dir(d).unwrap();
            chown_to(d, ids);
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let out = as_postgres(&mut Command::new(bin.join("initdb")), ids)
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
            ])
            .args(["--auth-host=reject"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (src, name, mode) in [
            (cert, "server.crt", 0o644),
            (key, "server.key", 0o600),
            (ca, "spinel-ca.pem", 0o644),
        ] {
            let to = data.join(name);
            std::fs::copy(src, &to).unwrap();
            chown_to(&to, ids);
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        write_file(
            &data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n",
        )
        .unwrap();
        chown_to(&data.join("pg_hba.conf"), ids);
        let port = free_port().unwrap();
        let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
        let child = as_postgres(&mut Command::new(bin.join("postgres")), ids)
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=localhost"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", socket_dir.display()),
            ])
            .args([
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.crt",
                "-c",
                "ssl_key_file=server.key",
            ])
            .args(["-c", "ssl_ca_file=spinel-ca.pem"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pg = Postgres {
            child,
            port,
            socket_dir,
            bin: bin.to_owned(),
            ids,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pg.local_sql("select 1").status.success() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start:\n{}",
                std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// SQL over the local socket, as the superuser (set-up only).
    fn local_sql(&self, sql: &str) -> Output {
        as_postgres(&mut Command::new(self.bin.join("psql")), self.ids)
            .args([
                "-h",
                self.socket_dir.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "postgres", "-d", "postgres", "-tAc", sql])
            .output()
            .unwrap()
    }

    /// `select current_user` over TCP with TLS as `user`, authenticating
    /// with `cert`/`key` only, verifying the server against `root`.
    fn login(&self, user: &str, cert: &Path, key: &Path, root: &Path) -> Output {
        let conninfo = format!(
            "host=localhost port={} user={user} dbname=postgres sslmode=verify-full \
             sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
            self.port,
            root.display(),
            cert.display(),
            key.display()
        );
        Command::new(self.bin.join("psql"))
            .args([&conninfo, "-w", "-tAc", "select current_user"])
            .env("PGPASSWORD", "")
            .output()
            .unwrap()
    }
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
    let (Some(bin), Some(ids), true) = (pg_bin(), postgres_user(), my_uid() == 0) else {
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
        dir.path(),
        &bin,
        ids,
        &file("db", "svid.pem"),
        &file("db", "svid_key.pem"),
        &file("db", "bundle.pem"),
    );
    let created = pg.local_sql("create role app login");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // The app logs in with its SVID alone.
    let root = file("app", "bundle.pem");
    let out = pg.login(
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
    let out = pg.login(
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
    let out = pg.login("app", &fc, &fk, &root);
    assert!(!out.status.success(), "a foreign certificate logged in");
    drop(pg);
    drop(server);
}
