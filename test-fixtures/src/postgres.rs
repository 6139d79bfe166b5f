//! A real PostgreSQL server for tests: `initdb` in a temporary directory,
//! `postgres` on a Unix socket there (and loopback TCP on a free port),
//! stopped on drop.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the
//! `postgres` user (Debian's package makes it); otherwise as the caller.
//! [`available`] says whether the binaries are installed
//! (`/usr/lib/postgresql/<version>/bin`), so a test can skip with a
//! message where they are not.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{free_port, my_uid, write_file};

/// Where the server binaries are and whom the server runs as.
#[derive(Debug, Clone)]
pub struct Install {
    /// `.../bin` of the newest installed version.
    pub bin: PathBuf,
    /// uid and gid to run as (`postgres` when the caller is root).
    pub ids: Option<(u32, u32)>,
}

/// TLS for the server: its certificate, key and the CA it trusts for
/// client certificates (copied into the data directory).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// CA for client certificates (`ssl_ca_file`).
    pub ca: PathBuf,
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `pg_hba.conf` contents.
    pub hba: String,
    /// TLS, if any.
    pub tls: Option<Tls>,
}

impl Default for PostgresOptions {
    /// Trust on the local socket and on loopback TCP: for tests only.
    fn default() -> Self {
        PostgresOptions {
            hba:
                "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
                    .into(),
            tls: None,
        }
    }
}

/// A running PostgreSQL server in a temporary directory, stopped on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    /// The TCP (and socket) port.
    pub port: u16,
    /// The directory holding the Unix socket.
    pub socket_dir: PathBuf,
    /// The binaries.
    pub install: Install,
    dir: PathBuf,
    /// The `postgres` command line (data directory, port, settings).
    args: Vec<String>,
}

/// The newest PostgreSQL server installed, and whom to run it as; `None`
/// when there is none, or the caller is root and there is no `postgres`
/// user. With `SPINEL_INTEROP_REQUIRED=1` (CI, which installs Debian's
/// package) a missing server panics instead: no test may skip there.
pub fn available() -> Option<Install> {
    let found = find();
    if found.is_none() && std::env::var("SPINEL_INTEROP_REQUIRED").as_deref() == Ok("1") {
        panic!(
            "PostgreSQL is not installed under /usr/lib/postgresql (or, as root, there is no postgres user); SPINEL_INTEROP_REQUIRED=1 forbids skipping"
        );
    }
    found
}

fn find() -> Option<Install> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    let bin = versions.pop()?;
    let ids = if my_uid() == 0 {
        Some(postgres_user()?)
    } else {
        None
    };
    Some(Install { bin, ids })
}

/// uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&"postgres") {
            return None;
        }
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `postgres` with `args`, logging to `dir/postgres.log` (appended).
fn spawn_server(install: &Install, dir: &Path, args: &[String]) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))?;
    install
        .command("postgres")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting postgres")
}

impl Install {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    fn own(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }
}

impl Postgres {
    /// `initdb` in `dir` (which must exist and be short enough for a socket
    /// path: use `/tmp`), then starts the server and waits until it answers.
    pub fn start(install: &Install, dir: &Path, options: &PostgresOptions) -> Result<Postgres> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let data = dir.join("pgdata");
        let socket_dir = dir.join("pgsock");
        for d in [&data, &socket_dir] {
            std::fs::create_dir(d)?;
            install.own(d)?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        }
        let data_arg = data.to_str().context("data dir is not UTF-8")?;
        let out = install
            .command("initdb")
            .args(["-D", data_arg, "-U", "postgres", "--auth-local=trust"])
            .args(["--auth-host=reject"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut args: Vec<String> = Vec::new();
        if let Some(tls) = &options.tls {
            for (src, name, mode) in [
                (&tls.cert, "server.crt", 0o644),
                (&tls.key, "server.key", 0o600),
                (&tls.ca, "spinel-ca.pem", 0o644),
            ] {
                let to = data.join(name);
                std::fs::copy(src, &to)?;
                install.own(&to)?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
            }
            for setting in [
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
                "ssl_ca_file=spinel-ca.pem",
            ] {
                args.extend(["-c".to_owned(), setting.to_owned()]);
            }
        }
        write_file(&data.join("pg_hba.conf"), &options.hba)?;
        install.own(&data.join("pg_hba.conf"))?;
        let port = free_port()?;
        let mut server_args: Vec<String> = ["-D", data_arg, "-p", &port.to_string()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        server_args.extend(["-c".to_owned(), "listen_addresses=localhost".to_owned()]);
        server_args.extend([
            "-c".to_owned(),
            format!("unix_socket_directories={}", socket_dir.display()),
        ]);
        for setting in ["max_connections=200", "fsync=on"] {
            server_args.extend(["-c".to_owned(), setting.to_owned()]);
        }
        server_args.extend(args);
        let child = spawn_server(install, dir, &server_args)?;
        let pg = Postgres {
            child,
            port,
            socket_dir,
            install: install.clone(),
            dir: dir.to_owned(),
            args: server_args,
        };
        pg.wait_ready()?;
        Ok(pg)
    }

    /// Waits until the server answers SQL (30 s at most).
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.local_sql("select 1")?.status.success() {
            if Instant::now() > deadline {
                bail!("PostgreSQL did not start:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: connections are cut, committed
    /// transactions are kept). [`Postgres::start_again`] brings it back.
    pub fn stop(&mut self) {
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

    /// Starts the stopped server again on the same data and port.
    pub fn start_again(&mut self) -> Result<()> {
        self.child = spawn_server(&self.install, &self.dir, &self.args)?;
        self.wait_ready()
    }

    /// SQL over the local socket as the superuser, with `psql`.
    pub fn local_sql(&self, sql: &str) -> Result<Output> {
        let socket_dir = self
            .socket_dir
            .to_str()
            .context("socket dir is not UTF-8")?;
        self.install
            .command("psql")
            .args(["-h", socket_dir, "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-tAc", sql])
            .output()
            .context("running psql")
    }

    /// Creates database `name` (a plain identifier).
    pub fn create_database(&self, name: &str) -> Result<()> {
        let out = self.local_sql(&format!("create database {name}"))?;
        if !out.status.success() {
            bail!(
                "create database {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// libpq keyword connection string for database `name` as the
    /// superuser over the Unix socket.
    pub fn keyword_connection_string(&self, name: &str) -> String {
        format!(
            "dbname={name} host={} port={} user=postgres",
            self.socket_dir.display(),
            self.port
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}
