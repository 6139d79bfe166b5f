//! Notifiers: SPIRE's `Notifier` plugin kind, told of every change of the
//! trust domain's own bundle.
//!
//! One notifier exists, `k8sbundle` ([`k8sbundle`]): it keeps the bundle's
//! X.509 authorities, as concatenated PEM, in one key of a Kubernetes
//! ConfigMap, so agents on new nodes and workloads read it from there.
//!
//! Two tasks, split at a seam so each is tested alone:
//! - [`watch_bundle_pem`] follows the bundle: it wakes on the CA's bundle
//!   watch ([`crate::ca::Ca::watch_bundle`]: start, rotation, prepare,
//!   activate, taint, revoke) and on a new bundle sequence in the change
//!   marks ([`crate::notify::Changes`]: `bundle append`, and changes made
//!   by other servers sharing the database), reads the stored bundle (what
//!   `spinel-server bundle show` prints) and publishes its PEM in a
//!   `tokio::sync::watch` channel;
//! - [`publish`] writes the latest PEM through a [`ConfigMapWriter`]
//!   (the Kubernetes client of `k8s_psat`,
//!   [`crate::kube::KubeClient`]), retrying with capped
//!   backoff until it succeeds. Only the latest bundle is ever written.
//!
//! Neither blocks the CA or the API: they only read the watch channels.

pub mod k8sbundle;

pub use k8sbundle::{
    publish, watch_bundle_pem, ConfigMapTarget, ConfigMapWriter, INITIAL_BACKOFF, MAX_BACKOFF,
};
