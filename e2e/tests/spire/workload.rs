//! SPIRE's Workload API client, the workload of these tests:
//! `spire-agent api fetch x509|jwt` and `api validate jwt` on any agent's
//! socket (SPIRE's or Spinel's), with what they wrote parsed back.

use std::path::Path;

use anyhow::{bail, Context, Result};
use spinel_test_fixtures::process::poll;
use spinel_test_fixtures::spinel::{run_cli, READY_TIMEOUT};
use spinel_test_fixtures::CliOutput;

use super::{pem_certs, spiffe_id_of, Spire};

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

/// SPIRE's Workload API CLI, run from the SPIRE build (a trait: [`Spire`]
/// is `spinel_test_fixtures`'s).
pub trait WorkloadCli {
    /// `api fetch x509` retried until it gets an SVID for `id`.
    fn wait_x509(&self, socket: &Path, id: &str) -> Result<FetchedX509>;
    /// `api fetch x509 -write DIR`, parsed back.
    fn fetch_x509(&self, socket: &Path) -> Result<FetchedX509>;
    /// `api fetch jwt -audience AUDIENCE`: the SPIFFE ID and the token.
    fn fetch_jwt(&self, socket: &Path, audience: &str) -> Result<(String, String)>;
    /// `api validate jwt -audience AUDIENCE -svid TOKEN`.
    fn validate_jwt(&self, socket: &Path, audience: &str, token: &str) -> Result<CliOutput>;
}

impl WorkloadCli for Spire {
    /// `spire-agent api fetch x509 -socketPath <socket> -write <temp dir>`,
    /// retried until it succeeds with an SVID for `id` (entries reach an
    /// agent within its sync interval).
    fn wait_x509(&self, socket: &Path, id: &str) -> Result<FetchedX509> {
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
    fn fetch_x509(&self, socket: &Path) -> Result<FetchedX509> {
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
    fn fetch_jwt(&self, socket: &Path, audience: &str) -> Result<(String, String)> {
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
    fn validate_jwt(&self, socket: &Path, audience: &str, token: &str) -> Result<CliOutput> {
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
}
