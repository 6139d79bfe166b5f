//! SPIRE 1.13.3 itself against Spinel: real `spire-server` and
//! `spire-agent` processes (built by `interop/spire/build`, or
//! `interop/build`, into `interop/out/spire/`) talking to real `spinel-server` and `spinel-agent`
//! processes.
//!
//! | file | what |
//! | --- | --- |
//! | `spire_agent.rs` | `spire-agent` attests to `spinel-server` with a join token, serves workloads, renews, obeys a ban |
//! | `spinel_agent.rs` | `spinel-agent` attests to `spire-server`, serves workloads, obeys a ban |
//! | `cli.rs` | `spire-server` CLI (entry, token, bundle, agent) on Spinel's admin socket |
//! | `import.rs` | `spinel-server datastore import -from spire` of a datastore `spire-server` wrote |
//! | `mixed.rs` | one trust domain served by both agent kinds at once |
//! | `sample_configs.rs` | SPIRE's own `conf/server/server.conf` and `conf/agent/agent.conf` start Spinel or fail naming the key or plugin |
//! | `workload.rs` | SPIRE's Workload API CLI (`spire-agent api fetch/validate`), the tests' workload |
//! | `x509pop.rs` | `x509pop` node attestation both ways (SPIRE agent to `spinel-server`, `spinel-agent` to `spire-server`), ECDSA and RSA node keys |
//!
//! The SPIRE processes (configs, free ports, temp dirs, kill on drop, logs
//! on failure) are `spinel_test_fixtures::spire`'s, shared with
//! `spinel-bench`.
//!
//! Without a SPIRE build these tests pass with a message naming
//! `interop/spire/build`; with `SPINEL_INTEROP_REQUIRED=1` (CI) a missing
//! build fails them. The workload in every test is SPIRE's own Workload
//! API client (`spire-agent api fetch ...`) run by this test process and
//! registered by `unix:uid`.

mod cli;
mod import;
mod mixed;
mod sample_configs;
mod spinel_agent;
mod spire_agent;
mod workload;
mod x509pop;

use std::path::{Path, PathBuf};

use spinel_test_fixtures::process::my_uid;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

pub use spinel_test_fixtures::spire::{Spire, SpireAgent, SpireServer};
pub use workload::{FetchedX509, WorkloadCli};

/// Where `interop/spire/build` (and `interop/build`) put the binaries.
pub fn spire_out() -> PathBuf {
    repo_root().join("interop/out/spire")
}

/// The repository root (the e2e crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Whether a missing peer is a failure rather than a skip.
pub fn interop_required() -> bool {
    std::env::var("SPINEL_INTEROP_REQUIRED").is_ok_and(|v| v == "1")
}

/// Reports a missing prerequisite: a panic under
/// `SPINEL_INTEROP_REQUIRED=1`, otherwise a note on stderr (the caller then
/// returns, so the test passes as skipped).
pub fn missing(what: &str) {
    let msg = format!("SPIRE interop test skipped: {what}");
    assert!(!interop_required(), "{msg} (SPINEL_INTEROP_REQUIRED=1)");
    eprintln!("{msg}");
}

/// The SPIRE binaries, or `None` (after [`missing`]) when they are not built.
pub fn spire() -> Option<Spire> {
    let spire = Spire::in_dir(&spire_out());
    match spire.check() {
        Ok(()) => Some(spire),
        Err(e) => {
            missing(&format!("{e:#}; build it with `interop/spire/build`"));
            None
        }
    }
}

/// `unix:uid:<this process's uid>`: the selector of the test's workloads.
pub fn my_uid_selector() -> String {
    format!("unix:uid:{}", my_uid())
}

/// The DER certificates of a PEM text.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// The URI SAN of a DER certificate.
pub fn spiffe_id_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                san.general_names.iter().find_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
            }
            _ => None,
        })
}

fn parse_der(der: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(der).ok().map(|(_, c)| c)
}

/// Whether the chain (leaf first, DER) leads, signature by signature, to
/// one of the `roots`.
pub fn chains_to(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> bool {
    let roots: Vec<X509Certificate<'_>> = roots.iter().filter_map(|d| parse_der(d)).collect();
    let chain: Vec<X509Certificate<'_>> = chain.iter().filter_map(|d| parse_der(d)).collect();
    let Some(mut current) = chain.first() else {
        return false;
    };
    // At most one step per certificate: the walk cannot loop.
    for _ in 0..=chain.len() {
        let signed = |ca: &X509Certificate<'_>| {
            ca.subject() == current.issuer()
                && current.verify_signature(Some(ca.public_key())).is_ok()
        };
        if roots.iter().any(signed) {
            return true;
        }
        match chain.iter().skip(1).find(|c| signed(c)) {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

/// Asserts that `fetched` holds one SVID for `id` that chains to `roots`,
/// and that the bundle the agent handed out is exactly `roots`.
pub fn assert_svid(fetched: &FetchedX509, id: &str, roots: &[Vec<u8>]) {
    assert_eq!(fetched.spiffe_ids(), vec![id.to_owned()], "{fetched:?}");
    assert!(
        chains_to(&fetched.chain, roots),
        "the SVID for {id} does not chain to the server's bundle"
    );
    let mut got = fetched.bundle.clone();
    let mut want = roots.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the agent's bundle is not the server's");
}
