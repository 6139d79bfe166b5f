//! The system under test, chosen by `--impl spinel|spire`: real
//! `spinel-server` / `spinel-agent` processes, or SPIRE 1.13.3's
//! `spire-server` / `spire-agent` (from `SPIRE_BIN_DIR`, default
//! `interop/out/spire/`), started the same way, so that every row runs
//! unchanged against either.
//!
//! Settings, the same on both sides unless said: trust domain
//! `example.org`, loopback TCP, join token node attestation, `memory` key
//! managers (server and agent), `unix` workload attestor, ECDSA P-256
//! keys, X509-SVID TTL 1 h and JWT-SVID TTL 5 min (both servers' default,
//! and what the entries here carry), DEBUG logs. Datastores differ by
//! design: Spinel's embedded `sled`, SPIRE's `sqlite3`. Each side is
//! driven by its own CLI (`spinel-server` / `spire-server`); the
//! Workload API clients are the same for both.
//!
//! SPIRE's own defaults are kept except `x509_svid_cache_max_size`,
//! raised from 1,000 to 1,000,000 so its agent, like Spinel's, holds an
//! SVID for every entry it is authorized for. `--spire-poll MS` shortens
//! the two polls an entry change waits for in SPIRE (the server's entry
//! cache reload, `experimental.cache_reload_interval`, default 5 s, and
//! the agent's sync, `experimental.sync_interval`, default 5 s); Spinel's
//! server pushes changes to its agents (which also poll every 1 s).

use std::path::Path;

use anyhow::{bail, Result};
use spinel_test_fixtures::spinel::run_cli_at;
use spinel_test_fixtures::spire::{Spire, SpireAgent, SpireServer};
use spinel_test_fixtures::{
    bin_path, AgentHandle, AgentOptions, CliOutput, ServerEndpoint, ServerHandle, ServerOptions,
};

use crate::args::Flags;

/// Which implementation a row runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Spinel,
    Spire,
}

impl Impl {
    pub fn parse(s: &str) -> Result<Impl> {
        match s {
            "spinel" => Ok(Impl::Spinel),
            "spire" => Ok(Impl::Spire),
            other => bail!("--impl must be spinel or spire, got {other:?}"),
        }
    }
}

/// The `--impl` and `--spire-poll` of a row.
#[derive(Debug, Clone)]
pub struct System {
    pub imp: Impl,
    /// SPIRE's server cache reload and agent sync interval, in ms.
    spire_poll_ms: Option<usize>,
    spire: Option<Spire>,
}

impl System {
    /// Reads `--impl` (default `spinel`) and `--spire-poll MS` from
    /// `flags` and prints the `system:` line.
    pub fn from_flags(flags: &mut Flags) -> Result<System> {
        let imp = Impl::parse(&flags.text("impl", "spinel"))?;
        let poll = flags.number("spire-poll", 0, 0)?;
        let spire = match imp {
            Impl::Spinel => None,
            Impl::Spire => {
                let spire = Spire::built();
                spire.check()?;
                Some(spire)
            }
        };
        if poll > 0 && imp == Impl::Spinel {
            bail!("--spire-poll is for --impl spire");
        }
        let system = System {
            imp,
            spire_poll_ms: (poll > 0).then_some(poll),
            spire,
        };
        println!("system: {}", system.describe());
        Ok(system)
    }

    /// How this system is set up, for a row's first line.
    pub fn describe(&self) -> String {
        match (self.imp, self.spire_poll_ms) {
            (Impl::Spinel, _) => "spinel".into(),
            (Impl::Spire, None) => "spire (default 5 s polls)".into(),
            (Impl::Spire, Some(ms)) => format!("spire (polls every {ms} ms)"),
        }
    }

    /// Starts a server.
    pub fn server(&self) -> Result<Server> {
        match &self.spire {
            None => Ok(Server::Spinel(ServerHandle::start(ServerOptions {
                key_manager: "memory".into(),
                ..Default::default()
            })?)),
            Some(spire) => {
                let extra = match self.spire_poll_ms {
                    Some(ms) => format!(
                        "    experimental {{\n        cache_reload_interval = \"{ms}ms\"\n    }}\n"
                    ),
                    None => String::new(),
                };
                Ok(Server::Spire(SpireServer::start(spire, &extra)?))
            }
        }
    }

    /// Writes the config of an agent of `server` attesting with `token`,
    /// without starting it.
    pub fn configure_agent(&self, server: &Server, token: &str) -> Result<Agent> {
        let endpoint = server.endpoint()?;
        match &self.spire {
            None => Ok(Agent::Spinel(AgentHandle::configure_for(
                &endpoint,
                AgentOptions {
                    join_token: Some(token.to_owned()),
                    key_manager: Some("memory".into()),
                    ..Default::default()
                },
            )?)),
            Some(spire) => {
                let mut extra = "    x509_svid_cache_max_size = 1000000\n".to_owned();
                if let Some(ms) = self.spire_poll_ms {
                    extra.push_str(&format!(
                        "    experimental {{\n        sync_interval = \"{ms}ms\"\n    }}\n"
                    ));
                }
                Ok(Agent::Spire(SpireAgent::configure(
                    spire, &endpoint, token, &extra,
                )?))
            }
        }
    }

    /// Starts an agent of `server` attesting with `token` and waits until
    /// its Workload API is healthy.
    pub fn agent(&self, server: &Server, token: &str) -> Result<Agent> {
        let mut agent = self.configure_agent(server, token)?;
        match &mut agent {
            Agent::Spinel(a) => a.start_process()?,
            Agent::Spire(a) => a.start_process()?,
        }
        Ok(agent)
    }
}

/// A running server of either implementation.
pub enum Server {
    Spinel(ServerHandle),
    Spire(SpireServer),
}

impl Server {
    /// The server process's ID (not its CLI's).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Server::Spinel(s) => s.process.as_ref().and_then(|p| p.pid()),
            Server::Spire(s) => s.pid(),
        }
    }

    /// `<its own CLI> <args> -socketPath <admin socket>`.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        match self {
            Server::Spinel(s) => run_cli_at(&bin_path("spinel-server"), &s.socket_path, args),
            Server::Spire(s) => s.cli(args),
        }
    }

    /// `token generate -spiffeID <id>`, returning the token.
    pub fn generate_token(&self, id: &str) -> Result<String> {
        match self {
            Server::Spinel(s) => s.generate_token(Some(id)),
            Server::Spire(s) => s.generate_token(id),
        }
    }

    /// `entry create <args>`, returning the entry ID.
    pub fn create_entry(&self, args: &[&str]) -> Result<String> {
        match self {
            Server::Spinel(s) => s.create_entry(args),
            Server::Spire(s) => s.create_entry(args),
        }
    }

    /// `entry create -data FILE`, `per_file` entries per file.
    pub fn create_entries_from_data(
        &self,
        entries: &[serde_json::Value],
        per_file: usize,
    ) -> Result<()> {
        match self {
            Server::Spinel(s) => s.create_entries_from_data(entries, per_file),
            Server::Spire(s) => s.create_entries_from_data(entries, per_file),
        }
    }

    /// Where and how agents reach this server.
    pub fn endpoint(&self) -> Result<ServerEndpoint> {
        match self {
            Server::Spinel(s) => s.endpoint(),
            Server::Spire(s) => s.endpoint(),
        }
    }
}

/// An agent of either implementation (configured; running once started).
pub enum Agent {
    Spinel(AgentHandle),
    Spire(SpireAgent),
}

impl Agent {
    /// Starts the configured agent without waiting for anything.
    pub fn spawn(&mut self) -> Result<()> {
        match self {
            Agent::Spinel(a) => a.spawn_process(),
            Agent::Spire(a) => a.spawn(),
        }
    }

    pub fn socket_path(&self) -> &Path {
        match self {
            Agent::Spinel(a) => &a.socket_path,
            Agent::Spire(a) => &a.socket_path,
        }
    }

    /// The Workload API endpoint URI (`unix:///...`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Agent::Spinel(a) => a.process.as_ref().and_then(|p| p.pid()),
            Agent::Spire(a) => a.pid(),
        }
    }

    pub fn log(&self) -> String {
        match self {
            Agent::Spinel(a) => a.log(),
            Agent::Spire(a) => a.log(),
        }
    }

    /// How many X509-SVIDs the agent holds, by its debug log.
    pub fn held_svids(&self) -> usize {
        match self {
            Agent::Spinel(a) => a.published_identities(),
            Agent::Spire(a) => a.cached_svids(),
        }
    }
}
