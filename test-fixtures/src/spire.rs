//! Real `spire-server` and `spire-agent` processes (SPIRE 1.13.3, built by
//! `interop/spire/build` into `interop/out/spire/`), for the interop tests
//! in `e2e/tests/spire/` and the side-by-side rows of `spinel-bench`: a
//! config in a temporary directory under /tmp, a free TCP port (SPIRE
//! cannot bind port 0 and report it), readiness by SPIRE's own
//! `healthcheck` command, SIGKILL on drop and the log printed when a test
//! fails ([`Process`]). Starting, health and the CLI are [`crate::spinel`]'s,
//! shared with Spinel's processes; what is SPIRE's is the config and the
//! binaries' version check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::process::{free_port, poll, write_file, Process};
use crate::spinel::{self, entry_id_of, run_cli};
use crate::{CliOutput, ServerEndpoint};

/// The trust domain of every SPIRE server started here.
pub const TD: &str = "example.org";

/// The SPIRE version `interop/spire/go.mod` pins.
pub const SPIRE_VERSION: &str = "1.13.3";

/// The two SPIRE binaries.
#[derive(Debug, Clone)]
pub struct Spire {
    /// `spire-server`.
    pub server: PathBuf,
    /// `spire-agent`.
    pub agent: PathBuf,
}

impl Spire {
    /// The binaries in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Spire {
            server: dir.join("spire-server"),
            agent: dir.join("spire-agent"),
        }
    }

    /// The binaries in `SPIRE_BIN_DIR`, or else where `interop/spire/build`
    /// puts them (`interop/out/spire/` of this repository).
    pub fn built() -> Self {
        match std::env::var_os("SPIRE_BIN_DIR") {
            Some(dir) => Self::in_dir(Path::new(&dir)),
            None => {
                Self::in_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/out/spire"))
            }
        }
    }

    /// Both binaries exist and are the pinned version.
    pub fn check(&self) -> Result<()> {
        for bin in [&self.server, &self.agent] {
            if !bin.exists() {
                bail!("{} is not built", bin.display());
            }
            let out = run_cli(bin, &["--version"])?;
            let said = format!("{}{}", out.stdout, out.stderr);
            if !said.trim_start().starts_with(SPIRE_VERSION) {
                bail!(
                    "{} is version {:?}, not {SPIRE_VERSION}",
                    bin.display(),
                    said.trim()
                );
            }
        }
        Ok(())
    }

    /// `spire-server <args> -socketPath <socket>`.
    pub fn server_cli(&self, socket: &Path, args: &[&str]) -> Result<CliOutput> {
        spinel::run_cli_at(&self.server, socket, args)
    }
}

/// Starts `<binary> run -config <dir>/conf`, logging to `<dir>/log`, and
/// waits until it is healthy.
fn run_until_healthy(binary: &Path, dir: &Path, socket: &Path) -> Result<Process> {
    spinel::run_until_healthy(binary, &dir.join("conf"), socket, &dir.join("log"), &[])
}

/// A running `spire-server` (sqlite3 datastore, memory key manager,
/// join_token node attestor) in its own temporary directory.
#[derive(Debug)]
pub struct SpireServer {
    /// The TCP port agents connect to.
    pub port: u16,
    /// The admin socket.
    pub socket_path: PathBuf,
    spire: Spire,
    // Killed (and its log printed on failure) before the directory goes.
    process: Process,
    _dir: TempDir,
}

impl SpireServer {
    /// Starts a server of trust domain [`TD`] with `server_extra` lines
    /// inside `server { ... }`.
    pub fn start(spire: &Spire, server_extra: &str) -> Result<Self> {
        Self::start_with_plugins(spire, server_extra, "")
    }

    /// [`SpireServer::start`] with `plugins_extra` blocks inside
    /// `plugins { ... }` (e.g. `NodeAttestor "x509pop"`, beside
    /// `join_token`).
    pub fn start_with_plugins(
        spire: &Spire,
        server_extra: &str,
        plugins_extra: &str,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spire-srv")
            .tempdir_in("/tmp")?;
        let root = dir.path();
        let port = free_port()?;
        let socket_path = root.join("private/api.sock");
        let data = root.join("data");
        let config = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "{TD}"
    data_dir = "{data}"
    log_level = "DEBUG"
{server_extra}
}}

plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "{data}/datastore.sqlite3"
        }}
    }}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
{plugins_extra}
}}
"#,
            socket = socket_path.display(),
            data = data.display(),
        );
        write_file(&root.join("conf"), &config)?;
        let process = run_until_healthy(&spire.server, root, &socket_path)?;
        Ok(SpireServer {
            port,
            socket_path,
            spire: spire.clone(),
            process,
            _dir: dir,
        })
    }

    /// `spire-server <args> -socketPath <admin socket>`.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        self.spire.server_cli(&self.socket_path, args)
    }

    /// `token generate -spiffeID <id>`, returning the token.
    pub fn generate_token(&self, id: &str) -> Result<String> {
        spinel::token_of(
            &self
                .cli(&["token", "generate", "-spiffeID", id])?
                .ok()?
                .stdout,
        )
    }

    /// `entry create <args>`, returning the entry ID.
    pub fn create_entry(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["entry", "create"];
        all.extend_from_slice(args);
        entry_id_of(&self.cli(&all)?.ok()?.stdout)
    }

    /// Where and how agents reach this server.
    pub fn endpoint(&self) -> Result<ServerEndpoint> {
        Ok(ServerEndpoint {
            port: self.port,
            trust_domain: TD.into(),
            bundle_pem: self
                .cli(&["bundle", "show", "-format", "pem"])?
                .ok()?
                .stdout,
        })
    }

    /// `entry create -data FILE` with `entries` (entries-file JSON
    /// objects), `per_file` per file; fails on the first file refused.
    pub fn create_entries_from_data(
        &self,
        entries: &[serde_json::Value],
        per_file: usize,
    ) -> Result<()> {
        spinel::create_entries_from_data(&self.spire.server, &self.socket_path, entries, per_file)
    }

    /// The server's process ID.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The server's SQLite datastore file.
    pub fn datastore_path(&self) -> PathBuf {
        self._dir.path().join("data/datastore.sqlite3")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A `spire-agent` (join_token or another node attestor, memory key manager, unix workload
/// attestor) in its own temporary directory; running once started.
#[derive(Debug)]
pub struct SpireAgent {
    /// The Workload API socket.
    pub socket_path: PathBuf,
    binary: PathBuf,
    /// `None` until started.
    process: Option<Process>,
    _dir: TempDir,
}

impl SpireAgent {
    /// Starts an agent attesting to `server` with `join_token` and waits
    /// until its Workload API is up (which is after attestation).
    pub fn start(spire: &Spire, server: &ServerEndpoint, join_token: &str) -> Result<Self> {
        Self::start_with(spire, server, join_token, "")
    }

    /// [`SpireAgent::start`] with `agent_extra` lines inside `agent { ... }`.
    pub fn start_with(
        spire: &Spire,
        server: &ServerEndpoint,
        join_token: &str,
        agent_extra: &str,
    ) -> Result<Self> {
        let mut agent = Self::configure(spire, server, join_token, agent_extra)?;
        agent.start_process()?;
        Ok(agent)
    }

    /// Starts the configured agent and waits until its Workload API is up.
    pub fn start_process(&mut self) -> Result<()> {
        self.process = Some(run_until_healthy(
            &self.binary,
            self._dir.path(),
            &self.socket_path,
        )?);
        Ok(())
    }

    /// Writes the config and directory of an agent without starting it
    /// ([`SpireAgent::spawn`] starts it).
    pub fn configure(
        spire: &Spire,
        server: &ServerEndpoint,
        join_token: &str,
        agent_extra: &str,
    ) -> Result<Self> {
        let agent_extra = format!("    join_token = \"{join_token}\"\n{agent_extra}");
        Self::configure_with_node_attestor(
            spire,
            server,
            "NodeAttestor \"join_token\" {\n        plugin_data {}\n    }",
            &agent_extra,
        )
    }

    /// [`SpireAgent::configure`] with another `NodeAttestor` block (e.g.
    /// `x509pop`) and no join token.
    pub fn configure_with_node_attestor(
        spire: &Spire,
        server: &ServerEndpoint,
        node_attestor: &str,
        agent_extra: &str,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spire-agt")
            .tempdir_in("/tmp")?;
        let root = dir.path();
        let socket_path = root.join("public/api.sock");
        let bundle = root.join("bootstrap.pem");
        write_file(&bundle, &server.bundle_pem)?;
        let config = format!(
            r#"agent {{
    data_dir = "{data}"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = "{socket}"
    trust_bundle_path = "{bundle}"
    trust_domain = "{td}"
{agent_extra}
}}

plugins {{
    {node_attestor}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"#,
            data = root.join("data").display(),
            port = server.port,
            socket = socket_path.display(),
            bundle = bundle.display(),
            td = server.trust_domain,
        );
        write_file(&root.join("conf"), &config)?;
        Ok(SpireAgent {
            socket_path,
            binary: spire.agent.clone(),
            process: None,
            _dir: dir,
        })
    }

    /// Starts the configured agent without waiting for anything (the
    /// caller polls its socket).
    pub fn spawn(&mut self) -> Result<()> {
        let root = self._dir.path();
        let config = root.join("conf").display().to_string();
        self.process = Some(Process::spawn(
            &self.binary,
            &["run", "-config", &config],
            &[],
            &root.join("log"),
        )?);
        Ok(())
    }

    fn process(&mut self) -> Result<&mut Process> {
        self.process.as_mut().context("spire-agent is not started")
    }

    /// Waits until the agent logs `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.process()?.wait_for_log(needle, timeout)
    }

    /// Waits until the agent process exits by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let process = self.process()?;
        poll(timeout, "spire-agent to exit", || {
            Ok((!process.is_running()).then_some(()))
        })
        .with_context(|| format!("spire-agent log:\n{}", process.log()))
    }

    /// The agent's process ID, once started.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// How many X509-SVIDs the agent has put in its cache, by its debug
    /// log (one `SVID updated` line per SVID stored; with no rotation
    /// during the run, the SVIDs it holds).
    pub fn cached_svids(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("msg=\"SVID updated\""))
            .count()
    }

    /// The socket as a Workload API endpoint URI (`unix:///...`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }
}
