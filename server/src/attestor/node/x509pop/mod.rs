//! The `x509pop` node attestor: X.509 proof of possession.
//!
//! A node provisioned out of band with a certificate and its private key
//! (by an enterprise PKI, a provisioning system) proves both:
//!
//! 1. the agent sends `{"certificates": [<DER, base64>, ...]}`, leaf first,
//!    then any intermediates ([`wire::AttestationData`], SPIRE's shape);
//! 2. the server checks the sizes, the leaf's key (RSA of at most
//!    [`MAX_RSA_BITS`] bits, ECDSA P-256 or P-384) and its `digitalSignature`
//!    key usage, then verifies the chain to the configured CA bundle
//!    ([`chain`]): all before any signature work it can avoid;
//! 3. it sends a challenge holding a 32-byte nonce; the agent answers with
//!    its own 32-byte nonce and a signature over SHA-256(server nonce ||
//!    agent nonce): RSA-PSS with SHA-256, or ECDSA (`r` and `s`) over that
//!    digest ([`wire`], SPIRE's `pkg/common/plugin/x509pop`);
//! 4. the agent ID is `spiffe://<td>/spire/agent` + the rendered
//!    `agent_path_template` ([`template`]), by default
//!    `/x509pop/<SHA-1 fingerprint of the leaf DER>`.
//!
//! Node selectors (type `x509pop`): `subject:cn:<leaf CN>`,
//! `ca:fingerprint:<SHA-1>` for every certificate of the verified chain
//! above the leaf (root included), `serialnumber:<lowercase hex, even
//! length>`, and `san:<key>:<value>` for every URI SAN
//! `x509pop://<td>/<key>/<value>` of the leaf. Agents may attest again (a
//! fresh challenge each time), as SPIRE's.
//!
//! Only SPIRE's default `mode = "external_pki"` is supported; `"spiffe"`
//! (SVID exchange against the server's own bundle) is refused by the
//! config loader.

pub mod attestor;
pub mod chain;
pub mod leaf;
pub mod template;
pub mod wire;

#[cfg(test)]
mod tests;

pub use attestor::X509popAttestor;
pub use chain::CaBundle;
pub use template::AgentPathTemplate;

/// The attestor's name in config files and `AttestationData.type`, and the
/// type of its selectors.
pub const NAME: &str = "x509pop";

/// The largest attestation payload looked at; larger ones are refused
/// before they are parsed. A chain of ten 8192-bit RSA certificates is
/// about 30 KiB of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The most certificates a payload may hold (leaf and intermediates).
pub const MAX_CERTIFICATES: usize = 16;
/// The largest challenge response looked at (an 8192-bit RSA signature
/// and a nonce are under 1.5 KiB of JSON).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// The largest RSA key accepted, in the leaf or any certificate sent
/// (ring's limit for RSA signature checks).
pub const MAX_RSA_BITS: usize = 8192;
/// The smallest RSA key accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// How long the agent has to answer the challenge.
pub const CHALLENGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
