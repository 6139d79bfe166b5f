//! A local trust domain made of real `spinel-server` and `spinel-agent`
//! processes, configured the way an operator would (HCL files, CLI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::process::{bin_path, free_port, poll, write_file, Process};

/// How long a process may take to become ready on a loaded 2-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The result of one CLI run.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Fails with the command's output unless it exited 0.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            bail!(
                "command failed with exit code {}\nstdout:\n{}\nstderr:\n{}",
                self.code,
                self.stdout,
                self.stderr
            )
        }
    }
}

/// Runs `program args...` to completion.
pub fn run_cli(program: &Path, args: &[&str]) -> Result<CliOutput> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    Ok(CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `program <args> -socketPath <socket>` to completion: how SPIRE's
/// and Spinel's CLIs reach a server's admin socket or an agent's Workload
/// API socket.
pub fn run_cli_at(program: &Path, socket: &Path, args: &[&str]) -> Result<CliOutput> {
    let socket = socket.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-socketPath", &socket]);
    run_cli(program, &all)
}

/// Starts `<binary> run -config <config>` (SPIRE's or Spinel's), logging
/// to `log`, and waits until `<binary> healthcheck -socketPath <socket>`
/// succeeds; fails at once if the process exits, with its log.
pub fn run_until_healthy(
    binary: &Path,
    config: &Path,
    socket: &Path,
    log: &Path,
    envs: &[(&str, &str)],
) -> Result<Process> {
    let config = config.display().to_string();
    let mut process = Process::spawn(binary, &["run", "-config", &config], envs, log)?;
    let name = binary.file_name().map_or_else(
        || binary.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let ready = poll(READY_TIMEOUT, &format!("{name} to become healthy"), || {
        if !process.is_running() {
            bail!("{name} exited; log:\n{}", process.log());
        }
        let out = run_cli_at(binary, socket, &["healthcheck"])?;
        Ok(out.success().then_some(()))
    });
    if let Err(e) = ready {
        bail!("{e:#}\n{name} log:\n{}", process.log());
    }
    Ok(process)
}

/// The DataStore block [`ServerOptions`] writes by default: the embedded
/// sled store in the server's data directory.
pub const SLED_DATASTORE: &str = "    DataStore \"sled\" {\n        plugin_data {}\n    }";

/// Settings of a test server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Trust domain name.
    pub trust_domain: String,
    /// `disk` or `memory`.
    pub key_manager: String,
    /// Extra lines placed inside `server { ... }`.
    pub server_extra: String,
    /// More plugin blocks inside `plugins { ... }` (e.g. `NodeAttestor
    /// "k8s_psat"`, beside the `join_token` one).
    pub plugins_extra: String,
    /// The `DataStore` block inside `plugins { ... }`, indented by four
    /// spaces (default [`SLED_DATASTORE`]).
    pub datastore: String,
    /// `log_level` (default `DEBUG`).
    pub log_level: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            trust_domain: "example.org".into(),
            key_manager: "disk".into(),
            server_extra: String::new(),
            plugins_extra: String::new(),
            datastore: SLED_DATASTORE.into(),
            log_level: "DEBUG".into(),
        }
    }
}

/// A running `spinel-server` with its own temporary directory.
#[derive(Debug)]
pub struct ServerHandle {
    /// The server's directory (config, data, socket, log).
    pub dir: TempDir,
    /// The config file.
    pub config_path: PathBuf,
    /// The admin socket.
    pub socket_path: PathBuf,
    /// The TCP port agents connect to.
    pub port: u16,
    /// The trust domain.
    pub trust_domain: String,
    /// The process, `None` while stopped.
    pub process: Option<Process>,
}

impl ServerHandle {
    /// Writes a config and starts the server, waiting until it is healthy.
    pub fn start(opts: ServerOptions) -> Result<Self> {
        let mut server = Self::configure(opts)?;
        server.start_process()?;
        Ok(server)
    }

    /// Writes a config in a new directory without starting the server.
    pub fn configure(opts: ServerOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spinel-srv")
            .tempdir_in("/tmp")?;
        let port = free_port()?;
        let root = dir.path();
        let socket_path = root.join("private/api.sock");
        let config_path = root.join("server.conf");
        let key_manager = match opts.key_manager.as_str() {
            "memory" => "KeyManager \"memory\" {\n        plugin_data {}\n    }".to_owned(),
            _ => format!(
                "KeyManager \"disk\" {{\n        plugin_data {{\n            keys_path = \"{}\"\n        }}\n    }}",
                root.join("data/keys.json").display()
            ),
        };
        let config = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "{td}"
    data_dir = "{data}"
    log_level = "{log_level}"
{extra}
}}

plugins {{
{datastore}
    {key_manager}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
{plugins_extra}
}}
"#,
            plugins_extra = opts.plugins_extra,
            datastore = opts.datastore,
            log_level = opts.log_level,
            socket = socket_path.display(),
            td = opts.trust_domain,
            data = root.join("data").display(),
            extra = opts.server_extra,
        );
        write_file(&config_path, &config)?;
        Ok(ServerHandle {
            dir,
            config_path,
            socket_path,
            port,
            trust_domain: opts.trust_domain,
            process: None,
        })
    }

    /// Starts the server process on the existing config and waits for health.
    pub fn start_process(&mut self) -> Result<()> {
        self.start_process_with_env(&[])
    }

    /// [`ServerHandle::start_process`] with extra environment variables
    /// (e.g. `SPINEL_PAUSE_AT` to arm a failpoint).
    pub fn start_process_with_env(&mut self, envs: &[(&str, &str)]) -> Result<()> {
        let log = self.dir.path().join("server.log");
        self.process = Some(run_until_healthy(
            &bin_path("spinel-server"),
            &self.config_path,
            &self.socket_path,
            &log,
            envs,
        )?);
        Ok(())
    }

    /// Starts the server process with extra environment variables without
    /// waiting for it to become healthy (a start meant to stop at a
    /// failpoint).
    pub fn spawn_process_with_env(&mut self, envs: &[(&str, &str)]) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let config = self.config_path.display().to_string();
        self.process = Some(Process::spawn(
            &bin_path("spinel-server"),
            &["run", "-config", &config],
            envs,
            &log,
        )?);
        Ok(())
    }

    /// Waits until the server's log contains `needle`; fails if the server
    /// exits or is stopped first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        match self.process.as_mut() {
            Some(p) => p.wait_for_log(needle, timeout),
            None => bail!("the server is not running"),
        }
    }

    /// Stops the server gracefully (SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Stops and starts the server on the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_process()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Runs `spinel-server <args> -socketPath <admin socket>`.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        run_cli_at(&bin_path("spinel-server"), &self.socket_path, args)
    }

    /// `token generate [-spiffeID id]`, returning the token.
    pub fn generate_token(&self, spiffe_id: Option<&str>) -> Result<String> {
        let mut args = vec!["token", "generate"];
        if let Some(id) = spiffe_id {
            args.extend(["-spiffeID", id]);
        }
        token_of(&self.cli(&args)?.ok()?.stdout)
    }

    /// `entry create ...`, returning the entry ID.
    pub fn create_entry(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["entry", "create"];
        all.extend_from_slice(args);
        let out = self.cli(&all)?.ok()?;
        entry_id_of(&out.stdout)
    }

    /// `entry create -data FILE` with `entries` (SPIRE's entries-file JSON
    /// objects), `per_file` per file (one `entry create` each); fails on
    /// the first file the CLI refuses, with its output.
    pub fn create_entries_from_data(
        &self,
        entries: &[serde_json::Value],
        per_file: usize,
    ) -> Result<()> {
        create_entries_from_data(
            &bin_path("spinel-server"),
            &self.socket_path,
            entries,
            per_file,
        )
    }

    /// The trust bundle as PEM (`bundle show -format pem`).
    pub fn bundle_pem(&self) -> Result<String> {
        Ok(self
            .cli(&["bundle", "show", "-format", "pem"])?
            .ok()?
            .stdout)
    }
}

/// `<cli> entry create -data FILE -socketPath <socket>` (SPIRE's or
/// Spinel's CLI) with `entries`, `per_file` per file; fails on the first
/// file the CLI refuses, with its output.
pub fn create_entries_from_data(
    cli: &Path,
    socket: &Path,
    entries: &[serde_json::Value],
    per_file: usize,
) -> Result<()> {
    let dir = tempfile::tempdir_in("/tmp")?;
    for (n, chunk) in entries.chunks(per_file.max(1)).enumerate() {
        let path = dir.path().join(format!("entries-{n}.json"));
        write_file(&path, &serde_json::json!({ "entries": chunk }).to_string())?;
        let path = path.to_str().context("temporary path is not UTF-8")?;
        let out = run_cli_at(cli, socket, &["entry", "create", "-data", path])?;
        if !out.success() {
            bail!("entry create -data {path} failed:\n{}", out.stderr);
        }
    }
    Ok(())
}

/// The token in the output of `token generate` (SPIRE's and Spinel's):
/// the `Token: <token>` line.
pub fn token_of(stdout: &str) -> Result<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Token: "))
        .map(|t| t.trim().to_owned())
        .with_context(|| format!("no `Token: ` line in {stdout:?}"))
}

/// The `Entry ID : <id>` value in SPIRE-formatted CLI output.
pub fn entry_id_of(stdout: &str) -> Result<String> {
    stdout
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "Entry ID").then(|| v.trim().to_owned())
        })
        .with_context(|| format!("no `Entry ID` line in {stdout:?}"))
}

/// Settings of a test agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Join token to attest with (none: the agent must already be attested).
    pub join_token: Option<String>,
    /// `disk` (default) or `memory`.
    pub key_manager: Option<String>,
    /// Extra lines inside `agent { ... }`.
    pub agent_extra: String,
    /// Extra `plugin_data` lines for `WorkloadAttestor "unix"`.
    pub unix_plugin_data: String,
    /// The `NodeAttestor` block (default: `join_token`).
    pub node_attestor: Option<String>,
    /// More plugin blocks inside `plugins { ... }` (e.g. `WorkloadAttestor "k8s"`).
    pub plugins_extra: String,
}

/// A running `spinel-agent` with its own temporary directory.
#[derive(Debug)]
pub struct AgentHandle {
    /// The agent's directory (config, data, socket, log).
    pub dir: TempDir,
    /// The config file.
    pub config_path: PathBuf,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    /// The process, `None` while stopped.
    pub process: Option<Process>,
}

/// The server an agent attests to: a Spinel server of this harness or any
/// other (SPIRE's, in the interop tests).
#[derive(Debug, Clone)]
pub struct ServerEndpoint {
    /// The server's TCP port on 127.0.0.1.
    pub port: u16,
    /// Its trust domain.
    pub trust_domain: String,
    /// Its trust bundle as PEM (the agent's `trust_bundle_path`).
    pub bundle_pem: String,
}

impl ServerHandle {
    /// Where and how agents reach this server.
    pub fn endpoint(&self) -> Result<ServerEndpoint> {
        Ok(ServerEndpoint {
            port: self.port,
            trust_domain: self.trust_domain.clone(),
            bundle_pem: self.bundle_pem()?,
        })
    }
}

impl AgentHandle {
    /// Writes a config (trust bundle taken from the server) and starts the
    /// agent, waiting until its Workload API answers.
    pub fn start(server: &ServerHandle, opts: AgentOptions) -> Result<Self> {
        Self::start_for(&server.endpoint()?, opts)
    }

    /// [`AgentHandle::start`] against any server.
    pub fn start_for(server: &ServerEndpoint, opts: AgentOptions) -> Result<Self> {
        let mut agent = Self::configure_for(server, opts)?;
        agent.start_process()?;
        Ok(agent)
    }

    /// Writes the config and directory of an agent of `server` without
    /// starting it ([`AgentHandle::start_process`] or
    /// [`AgentHandle::spawn_process`] start it).
    pub fn configure(server: &ServerHandle, opts: AgentOptions) -> Result<Self> {
        Self::configure_for(&server.endpoint()?, opts)
    }

    /// [`AgentHandle::configure`] against any server.
    pub fn configure_for(server: &ServerEndpoint, opts: AgentOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spinel-agt")
            .tempdir_in("/tmp")?;
        let root = dir.path();
        let bundle_path = root.join("bootstrap.pem");
        write_file(&bundle_path, &server.bundle_pem)?;
        let socket_path = root.join("public/api.sock");
        let config_path = root.join("agent.conf");
        let key_manager = match opts.key_manager.as_deref() {
            Some("memory") => "KeyManager \"memory\" {\n        plugin_data {}\n    }".to_owned(),
            _ => format!(
                "KeyManager \"disk\" {{\n        plugin_data {{\n            directory = \"{}\"\n        }}\n    }}",
                root.join("data").display()
            ),
        };
        let join_token = opts
            .join_token
            .as_ref()
            .map(|t| format!("    join_token = \"{t}\"\n"))
            .unwrap_or_default();
        let config = format!(
            r#"agent {{
    data_dir = "{data}"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = "{socket}"
    trust_bundle_path = "{bundle}"
    trust_domain = "{td}"
{join_token}{extra}
}}

plugins {{
    {key_manager}
    {node_attestor}
    WorkloadAttestor "unix" {{
        plugin_data {{
{unix}
        }}
    }}
{plugins_extra}
}}
"#,
            data = root.join("data").display(),
            port = server.port,
            socket = socket_path.display(),
            bundle = bundle_path.display(),
            td = server.trust_domain,
            extra = opts.agent_extra,
            unix = opts.unix_plugin_data,
            node_attestor = opts
                .node_attestor
                .as_deref()
                .unwrap_or("NodeAttestor \"join_token\" {\n        plugin_data {}\n    }"),
            plugins_extra = opts.plugins_extra,
        );
        write_file(&config_path, &config)?;
        Ok(AgentHandle {
            dir,
            config_path,
            socket_path,
            process: None,
        })
    }

    /// Starts the agent process without waiting for anything (the caller
    /// polls its socket).
    pub fn spawn_process(&mut self) -> Result<()> {
        let log = self.dir.path().join("agent.log");
        let config = self.config_path.display().to_string();
        self.process = Some(Process::spawn(
            &bin_path("spinel-agent"),
            &["run", "-config", &config],
            &[],
            &log,
        )?);
        Ok(())
    }

    /// Starts the agent process on the existing config and waits until ready.
    pub fn start_process(&mut self) -> Result<()> {
        let log = self.dir.path().join("agent.log");
        self.process = Some(run_until_healthy(
            &bin_path("spinel-agent"),
            &self.config_path,
            &self.socket_path,
            &log,
            &[],
        )?);
        Ok(())
    }

    /// Stops the agent gracefully (SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The largest identity count the agent's debug log says it published
    /// (`published a new cache snapshot ... identities=N`).
    pub fn published_identities(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("published a new cache snapshot"))
            .filter_map(|l| {
                let (_, rest) = l.split_once("identities")?;
                let digits: String = rest
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// Runs `spinel-agent <args> -socketPath <workload socket>`.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        run_cli_at(&bin_path("spinel-agent"), &self.socket_path, args)
    }

    /// The socket as a Workload API endpoint URI (`unix:///...`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }
}
