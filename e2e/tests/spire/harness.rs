//! Real `spire-server` and `spire-agent` processes for the interop tests:
//! a config in a temporary directory under /tmp, a free TCP port (SPIRE
//! cannot bind port 0 and report it), readiness by SPIRE's own
//! `healthcheck` command, SIGKILL on drop and the log printed when a test
//! fails (`spinel_test_fixtures::Process`). Also SPIRE's Workload API CLI
//! (`spire-agent api fetch ...`), the workload of these tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spinel_test_fixtures::process::{free_port, poll, write_file, Process};
use spinel_test_fixtures::spinel::{entry_id_of, run_cli, READY_TIMEOUT};
use spinel_test_fixtures::{CliOutput, ServerEndpoint};
use tempfile::TempDir;

use super::{pem_certs, spiffe_id_of, TD};

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

/// What `spire-agent api fetch x509 -write` wrote: every SVID's chain
/// (leaf first, DER) and the first SVID's bundle.
#[derive(Debug, Clone)]
pub struct FetchedX509 {
    /// One chain per SVID.
    pub chains: Vec<Vec<Vec<u8>>>,
    /// The first SVID's chain.
    pub chain: Vec<Vec<u8>>,
    /// The trust bundle that came with the first SVID.
    pub bundle: Vec<Vec<u8>>,
}

impl FetchedX509 {
    /// The SPIFFE ID of each SVID, sorted.
    pub fn spiffe_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .chains
            .iter()
            .filter_map(|c| c.first().and_then(|leaf| spiffe_id_of(leaf)))
            .collect();
        ids.sort();
        ids
    }
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

    /// `spire-agent api fetch x509 -socketPath <socket> -write <temp dir>`,
    /// retried until it succeeds with an SVID for `id` (entries reach an
    /// agent within its sync interval).
    pub fn wait_x509(&self, socket: &Path, id: &str) -> Result<FetchedX509> {
        let mut last = String::new();
        let got = poll(
            READY_TIMEOUT,
            &format!("an X509-SVID for {id}"),
            || match self.fetch_x509(socket) {
                Ok(f) if f.spiffe_ids().iter().any(|i| i == id) => Ok(Some(f)),
                Ok(f) => {
                    last = format!("got {:?}", f.spiffe_ids());
                    Ok(None)
                }
                Err(e) => {
                    last = format!("{e:#}");
                    Ok(None)
                }
            },
        );
        got.with_context(|| format!("last attempt: {last}"))
    }

    /// One `spire-agent api fetch x509` call, writing into a temp dir.
    pub fn fetch_x509(&self, socket: &Path) -> Result<FetchedX509> {
        let dir = tempfile::Builder::new()
            .prefix("spire-fetch")
            .tempdir_in("/tmp")?;
        let write = dir.path().display().to_string();
        let socket = socket.display().to_string();
        let args = [
            "api",
            "fetch",
            "x509",
            "-socketPath",
            &socket,
            "-write",
            &write,
        ];
        run_cli(&self.agent, &args)?.ok()?;
        let read = |name: String| std::fs::read_to_string(dir.path().join(name));
        let mut chains = Vec::new();
        while let Ok(pem) = read(format!("svid.{}.pem", chains.len())) {
            chains.push(pem_certs(&pem));
        }
        let bundle = pem_certs(&read("bundle.0.pem".into()).context("no bundle.0.pem")?);
        let chain = chains.first().cloned().context("no svid.0.pem")?;
        Ok(FetchedX509 {
            chains,
            chain,
            bundle,
        })
    }

    /// `spire-agent api fetch jwt -audience <aud>`: the (SPIFFE ID, token)
    /// of the first JWT-SVID.
    pub fn fetch_jwt(&self, socket: &Path, audience: &str) -> Result<(String, String)> {
        let socket = socket.display().to_string();
        let out = run_cli(
            &self.agent,
            &[
                "api",
                "fetch",
                "jwt",
                "-audience",
                audience,
                "-socketPath",
                &socket,
            ],
        )?
        .ok()?;
        // token(spiffe://example.org/x):\n\t<jwt>\nbundle(...):...
        let mut lines = out.stdout.lines();
        while let Some(line) = lines.next() {
            if let Some(id) = line
                .strip_prefix("token(")
                .and_then(|l| l.strip_suffix("):"))
            {
                let token = lines.next().context("no token after its header")?.trim();
                return Ok((id.to_owned(), token.to_owned()));
            }
        }
        bail!("no token in {:?}", out.stdout)
    }

    /// `spire-agent api validate jwt -audience <aud> -svid <token>`.
    pub fn validate_jwt(&self, socket: &Path, audience: &str, token: &str) -> Result<CliOutput> {
        let socket = socket.display().to_string();
        run_cli(
            &self.agent,
            &[
                "api",
                "validate",
                "jwt",
                "-audience",
                audience,
                "-svid",
                token,
                "-socketPath",
                &socket,
            ],
        )
    }

    /// `spire-server <args> -socketPath <socket>`.
    pub fn server_cli(&self, socket: &Path, args: &[&str]) -> Result<CliOutput> {
        let socket = socket.display().to_string();
        let mut all = args.to_vec();
        all.extend(["-socketPath", &socket]);
        run_cli(&self.server, &all)
    }
}

/// Starts `<binary> run -config <config>` and waits until `<binary>
/// healthcheck -socketPath <socket>` succeeds.
fn run_until_healthy(binary: &Path, dir: &Path, socket: &Path) -> Result<Process> {
    let config = dir.join("conf").display().to_string();
    let log = dir.join("log");
    let mut process = Process::spawn(binary, &["run", "-config", &config], &[], &log)?;
    let socket = socket.display().to_string();
    let name = binary.display().to_string();
    let ready = poll(READY_TIMEOUT, &format!("{name} to become healthy"), || {
        if !process.is_running() {
            bail!("{name} exited");
        }
        let out = run_cli(binary, &["healthcheck", "-socketPath", &socket])?;
        Ok(out.success().then_some(()))
    });
    if let Err(e) = ready {
        bail!("{e:#}\n{name} log:\n{}", process.log());
    }
    Ok(process)
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
        let out = self.cli(&["token", "generate", "-spiffeID", id])?.ok()?;
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("no `Token: ` line in {:?}", out.stdout))
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
