//! SPIFFE identity building blocks shared by `spinel-server` and `spinel-agent`.
//!
//! - [`id`]: strict parsing of SPIFFE IDs and trust domains as users type them,
//!   and the reserved SPIRE paths (`/spire/server`, `/spire/agent/...`).
//! - [`selector`]: `type:value` selectors and the subset rule that decides
//!   which registration entries a workload or a node matches.
//! - [`bundle`]: the SPIFFE trust bundle JSON format (a JWKS with
//!   `spiffe_sequence` and `spiffe_refresh_hint`).
//! - [`jwt`]: JWT-SVID validation against a bundle.
//! - [`clock`]: the one clock seam; it follows tokio's clock so that rotation
//!   and expiry are tested with paused time.
//! - [`keyfile`]: atomic, durable, mode-0600 writes for key material,
//!   safe against other local users.
//! - [`trusted_dir`]: the rule for directories that hold key files and
//!   sockets: no other user can change them.
//! - [`failpoint`]: named pause points for kill -9 tests (debug builds only).

pub mod bundle;
pub mod clock;
pub mod failpoint;
pub mod id;
pub mod jwt;
pub mod keyfile;
pub mod selector;
pub mod tls;
pub mod trusted_dir;

#[cfg(test)]
mod prop_tests;

pub use bundle::{BundleError, JwtAuthority, TrustBundle};
pub use clock::Clock;
pub use id::{IdError, SpiffeId, TrustDomain};
pub use selector::{Selector, SelectorError};
