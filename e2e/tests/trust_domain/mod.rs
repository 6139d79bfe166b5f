//! One trust domain of real processes, set up and driven as an operator
//! would, checked with independent clients.
//!
//! - `operator.rs`: server, agents and CLIs end to end, checked with the
//!   `spiffe` crate (X.509 and JWT SVIDs, bundles, entries, tokens);
//! - `oidc_discovery.rs`: a JWT-SVID verified by `jsonwebtoken` from the
//!   issuer URL alone;
//! - `upstream_disk.rs`: `UpstreamAuthority "disk"`: chains carry the
//!   intermediate, the bundle holds the root, bad files are named;
//! - `ca_keys.rs`: a damaged key file stops the server, naming the file;
//! - `x509pop.rs`: agents attest with node certificates (ECDSA and RSA)
//!   from an outside PKI; a certificate of another CA is refused.

mod ca_keys;
mod oidc_discovery;
mod operator;
mod upstream_disk;
mod x509pop;
