//! Federation: publishing this trust domain's bundle and keeping the
//! bundles of foreign trust domains current.
//!
//! - [`endpoint`]: the bundle endpoint (`server.federation.bundle_endpoint`),
//!   `GET /` → SPIFFE bundle JSON, profile `https_spiffe` or `https_web`.
//! - [`fetch`]: one authenticated fetch of a foreign endpoint.
//! - [`Federation`] (`poller.rs`): the relationships (from
//!   `federates_with` in the config, stored at start, and from the
//!   TrustDomain API at run time), each polled at its bundle's refresh hint
//!   ([`DEFAULT_REFRESH`] when the bundle has none, never more often than
//!   [`MIN_REFRESH`]); a failure is logged with the URL, the last good bundle
//!   stays, and the fetch is retried sooner. Fetched bundles are stored with
//!   the datastore's bundle API under their own trust domain only (bundles
//!   of different trust domains are never merged), where agents get them
//!   with `GetFederatedBundle`.

pub mod endpoint;
pub mod fetch;
mod poller;

use std::path::PathBuf;

pub use endpoint::BundleEndpoint;
pub use poller::{Federation, DEFAULT_REFRESH, MIN_REFRESH};

use crate::config::{FederatesWith, RemoteProfile};
use crate::datastore::{DataStoreError, StoredFederationRelationship};

/// The `https_web` profile name, as stored and as SPIRE spells it.
pub const PROFILE_HTTPS_WEB: &str = "https_web";
/// The `https_spiffe` profile name.
pub const PROFILE_HTTPS_SPIFFE: &str = "https_spiffe";

/// What went wrong in federation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The endpoint could not be reached, authenticated or read.
    #[error("fetching the bundle from {url} failed: {reason}")]
    Fetch {
        /// The bundle endpoint URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No relationship exists with the trust domain.
    #[error("no federation relationship with trust domain {0:?}")]
    NoRelationship(String),
    /// `https_spiffe` needs a known bundle of the trust domain first.
    #[error("no bundle of trust domain {0:?} is known: seed it with `bundle set` before the https_spiffe endpoint can be authenticated")]
    NoKnownBundle(String),
    /// A stored relationship is unusable.
    #[error("federation relationship with {trust_domain:?} is invalid: {reason}")]
    InvalidRelationship {
        /// Its trust domain.
        trust_domain: String,
        /// What is wrong.
        reason: String,
    },
    /// The datastore failed.
    #[error(transparent)]
    DataStore(#[from] DataStoreError),
    /// A certificate or key file is unreadable.
    #[error("{}: {reason}", path.display())]
    CertFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// TLS could not be set up.
    #[error("bundle endpoint TLS: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: String,
        /// The OS error.
        reason: String,
    },
}

impl From<crate::tls::CertFileError> for FederationError {
    fn from(e: crate::tls::CertFileError) -> Self {
        FederationError::CertFile {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// A config `federates_with` as a stored relationship.
pub fn stored_from_config(f: &FederatesWith) -> StoredFederationRelationship {
    let (profile, endpoint_spiffe_id) = match &f.profile {
        RemoteProfile::HttpsWeb => (PROFILE_HTTPS_WEB, String::new()),
        RemoteProfile::HttpsSpiffe { endpoint_spiffe_id } => {
            (PROFILE_HTTPS_SPIFFE, endpoint_spiffe_id.to_string())
        }
    };
    StoredFederationRelationship {
        trust_domain: f.trust_domain.to_string(),
        bundle_endpoint_url: f.bundle_endpoint_url.clone(),
        profile: profile.to_owned(),
        endpoint_spiffe_id,
    }
}
