//! Real `spire-server` and `spire-agent` processes for the interop tests:
//! a config in a temporary directory under /tmp, a free TCP port (SPIRE
//! cannot bind port 0 and report it), readiness by SPIRE's own
//! `healthcheck` command, SIGKILL on drop and the log printed when a test
//! fails (`spinel_test_fixtures::Process`). Starting, health and the CLI
//! are `spinel_test_fixtures::spinel`'s, shared with Spinel's processes;
//! what is SPIRE's is the config and the binaries' version check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spinel_test_fixtures::process::{free_port, poll, write_file, Process};
use spinel_test_fixtures::spinel::{self, entry_id_of, run_cli};
use spinel_test_fixtures::{CliOutput, ServerEndpoint};
use tempfile::TempDir;

use super::TD;

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

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A running `spire-agent` (join_token, memory key manager, unix workload
/// attestor) in its own temporary directory.
#[derive(Debug)]
pub struct SpireAgent {
    /// The Workload API socket.
    pub socket_path: PathBuf,
    process: Process,
    _dir: TempDir,
}

impl SpireAgent {
    /// Starts an agent attesting to `server` with `join_token` and waits
    /// until its Workload API is up (which is after attestation).
    pub fn start(spire: &Spire, server: &ServerEndpoint, join_token: &str) -> Result<Self> {
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
    join_token = "{join_token}"
}}

plugins {{
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
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
        let process = run_until_healthy(&spire.agent, root, &socket_path)?;
        Ok(SpireAgent {
            socket_path,
            process,
            _dir: dir,
        })
    }

    /// Waits until the agent logs `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.process.wait_for_log(needle, timeout)
    }

    /// Waits until the agent process exits by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let process = &mut self.process;
        poll(timeout, "spire-agent to exit", || {
            Ok((!process.is_running()).then_some(()))
        })
        .with_context(|| format!("spire-agent log:\n{}", process.log()))
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
