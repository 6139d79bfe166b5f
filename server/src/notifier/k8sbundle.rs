//! The `k8sbundle` notifier: the trust bundle in a ConfigMap key.
//!
//! The ConfigMap is patched (JSON merge patch of `data.<key>`), never
//! created, as SPIRE does: when it is missing the notifier logs an error
//! naming it and retries. Failures are retried after [`INITIAL_BACKOFF`],
//! doubling up to [`MAX_BACKOFF`]; a newer bundle that arrives meanwhile
//! replaces the one being retried. Log lines name the namespace, ConfigMap
//! and key, never a credential.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spinel_spiffe::bundle::pem_encode;
use tokio::sync::watch;

use crate::ca::Ca;
use crate::datastore::DataStore;
use crate::kube::{KubeClient, KubeError};
use crate::notify::Changes;

/// The first wait after a failed write.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the bundle goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapTarget {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub config_map: String,
    /// The key of `data` that holds the PEM.
    pub key: String,
}

/// The seam between [`publish`] and the Kubernetes API: sets one key of a
/// ConfigMap's `data`, failing if the ConfigMap does not exist.
#[async_trait]
pub trait ConfigMapWriter: Send + Sync {
    /// Sets `data.<target.key>` to `value`.
    async fn write(&self, target: &ConfigMapTarget, value: &str) -> Result<(), KubeError>;
}

#[async_trait]
impl ConfigMapWriter for KubeClient {
    async fn write(&self, target: &ConfigMapTarget, value: &str) -> Result<(), KubeError> {
        self.patch_config_map_data(&target.namespace, &target.config_map, &target.key, value)
            .await
    }
}

/// Writes every bundle `bundles` holds (`None`: not known yet) to `target`
/// through `writer`, until the channel's sender is gone. Only the latest
/// bundle is written; a failed write is retried with capped backoff.
pub async fn publish(
    writer: Arc<dyn ConfigMapWriter>,
    target: ConfigMapTarget,
    mut bundles: watch::Receiver<Option<String>>,
) {
    let mut written: Option<String> = None;
    loop {
        let latest = bundles.borrow_and_update().clone();
        if let Some(mut pem) = latest.filter(|pem| written.as_ref() != Some(pem)) {
            let mut backoff = INITIAL_BACKOFF;
            loop {
                match writer.write(&target, &pem).await {
                    Ok(()) => {
                        tracing::info!(
                            namespace = %target.namespace,
                            config_map = %target.config_map,
                            key = %target.key,
                            "trust bundle written to the ConfigMap"
                        );
                        written = Some(pem);
                        break;
                    }
                    Err(e) => {
                        let hint = match e {
                            KubeError::NotFound { .. } => {
                                " (create it: the notifier patches it, never creates it)"
                            }
                            _ => "",
                        };
                        tracing::error!(
                            namespace = %target.namespace,
                            config_map = %target.config_map,
                            key = %target.key,
                            error = %e,
                            retry_in = ?backoff,
                            "cannot write the trust bundle to the ConfigMap{hint}"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        if let Some(newer) = bundles.borrow_and_update().clone() {
                            pem = newer;
                        }
                    }
                }
            }
        }
        if bundles.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps `tx` holding the PEM of the trust domain's own bundle as stored
/// (what `bundle show` prints; the CA's own bundle until one is stored),
/// woken by the CA's bundle watch and by a new bundle sequence in
/// `changes`. Runs until `tx` has no receiver.
pub async fn watch_bundle_pem(
    ca: Arc<Ca>,
    datastore: Arc<dyn DataStore>,
    changes: Arc<Changes>,
    tx: watch::Sender<Option<String>>,
) {
    let trust_domain = ca.trust_domain().as_str().to_owned();
    let mut from_ca = ca.watch_bundle();
    let mut marks = changes.subscribe();
    let mut sequence = marks.borrow_and_update().bundle_sequence;
    loop {
        let mut failed = false;
        let pem = match datastore.get_bundle(&trust_domain).await {
            Ok(Some(stored)) => Some(
                stored
                    .x509_authorities
                    .iter()
                    .map(|der| pem_encode("CERTIFICATE", der))
                    .collect::<String>(),
            ),
            Ok(None) => Some(ca.bundle().x509_pem()),
            Err(e) => {
                failed = true;
                tracing::warn!(error = %e, "k8sbundle: cannot read the trust bundle from the datastore");
                tx.borrow().is_none().then(|| ca.bundle().x509_pem())
            }
        };
        if let Some(pem) = pem.filter(|p| !p.is_empty()) {
            tx.send_if_modified(|current| {
                let moved = current.as_ref() != Some(&pem);
                if moved {
                    *current = Some(pem);
                }
                moved
            });
        }
        tokio::select! {
            changed = from_ca.changed() => if changed.is_err() { return },
            changed = marks.wait_for(|m| m.bundle_sequence != sequence) => match changed {
                Ok(m) => sequence = m.bundle_sequence,
                Err(_) => return,
            },
            () = tx.closed() => return,
            () = tokio::time::sleep(MAX_BACKOFF), if failed => {}
        }
    }
}

#[cfg(test)]
mod tests;
