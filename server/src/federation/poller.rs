//! [`Federation`]: the relationships and the loop that polls them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use spinel_spiffe::id;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::fetch::{fetch_bundle, Authenticate};
use super::{FederationError, PROFILE_HTTPS_SPIFFE, PROFILE_HTTPS_WEB};
use crate::datastore::{DataStore, StoredBundle, StoredFederationRelationship};
use crate::tls;

/// Poll interval when the foreign bundle has no refresh hint (SPIRE's).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The shortest poll interval, whatever the refresh hint says.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// First retry after a failed fetch; doubled on each further failure, up
/// to the normal interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// How often the relationship list is re-read even without a change signal
/// (another server sharing the datastore may have changed it).
const RELOAD: Duration = Duration::from_secs(60);

/// The outcome of one refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// Whether the stored bundle changed.
    pub changed: bool,
    /// The bundle's refresh hint (seconds; 0 if none).
    pub refresh_hint: i64,
    /// Its sequence number.
    pub sequence: u64,
}

/// Federation relationships and the polling of their bundle endpoints.
#[derive(Debug)]
pub struct Federation {
    datastore: Arc<dyn DataStore>,
    web_roots: Arc<RootCertStore>,
    wake: Notify,
}

#[derive(Debug)]
struct Schedule {
    /// The relationship as last seen; a changed one is fetched at once.
    relationship: StoredFederationRelationship,
    due: Instant,
    failures: u32,
}

impl Federation {
    /// Polls the relationships stored in `datastore`; `https_web` endpoints
    /// are checked against `web_roots`.
    pub fn new(datastore: Arc<dyn DataStore>, web_roots: RootCertStore) -> Arc<Self> {
        Arc::new(Federation {
            datastore,
            web_roots: Arc::new(web_roots),
            wake: Notify::new(),
        })
    }

    /// Stores the relationships of the config (replacing stored ones of the
    /// same trust domain), as SPIRE does at start.
    pub async fn store_configured(
        &self,
        relationships: &[StoredFederationRelationship],
    ) -> Result<(), FederationError> {
        for r in relationships {
            match self
                .datastore
                .get_federation_relationship(&r.trust_domain)
                .await?
            {
                Some(existing) if existing == *r => {}
                Some(_) => {
                    self.datastore
                        .update_federation_relationship(r.clone())
                        .await?
                }
                None => {
                    self.datastore
                        .create_federation_relationship(r.clone())
                        .await?
                }
            }
        }
        self.relationships_changed();
        Ok(())
    }

    /// Tells the poll loop that relationships were created, changed or deleted.
    pub fn relationships_changed(&self) {
        self.wake.notify_one();
    }

    /// Fetches the bundle of `trust_domain` now and stores it if it changed.
    pub async fn refresh(&self, trust_domain: &str) -> Result<Refreshed, FederationError> {
        let rel = self
            .datastore
            .get_federation_relationship(trust_domain)
            .await?
            .ok_or_else(|| FederationError::NoRelationship(trust_domain.to_owned()))?;
        self.refresh_relationship(&rel).await
    }

    async fn refresh_relationship(
        &self,
        rel: &StoredFederationRelationship,
    ) -> Result<Refreshed, FederationError> {
        let invalid = |reason: String| FederationError::InvalidRelationship {
            trust_domain: rel.trust_domain.clone(),
            reason,
        };
        let td = id::parse_trust_domain(&rel.trust_domain).map_err(|e| invalid(e.to_string()))?;
        let stored = self.datastore.get_bundle(&rel.trust_domain).await?;
        let auth = match rel.profile.as_str() {
            PROFILE_HTTPS_WEB => Authenticate::Web(self.web_roots.clone()),
            PROFILE_HTTPS_SPIFFE => {
                let endpoint_id =
                    id::parse_id(&rel.endpoint_spiffe_id).map_err(|e| invalid(e.to_string()))?;
                let roots = stored
                    .as_ref()
                    .map(|b| b.x509_authorities.clone())
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| FederationError::NoKnownBundle(rel.trust_domain.clone()))?;
                Authenticate::Spiffe { endpoint_id, roots }
            }
            other => return Err(invalid(format!("unknown profile {other:?}"))),
        };
        let fetched = fetch_bundle(&rel.bundle_endpoint_url, &td, &auth, tls::provider()).await?;
        let next = StoredBundle::from(&fetched);
        let changed = stored.as_ref().is_none_or(|s| {
            s.x509_authorities != next.x509_authorities
                || s.jwt_authorities != next.jwt_authorities
                || s.refresh_hint != next.refresh_hint
                || s.sequence_number != next.sequence_number
        });
        if changed {
            self.datastore.set_bundle(next).await?;
            tracing::info!(
                trust_domain = %rel.trust_domain,
                url = %rel.bundle_endpoint_url,
                sequence = fetched.sequence,
                "Bundle refreshed"
            );
        } else {
            tracing::debug!(trust_domain = %rel.trust_domain, "bundle unchanged");
        }
        Ok(Refreshed {
            changed,
            refresh_hint: fetched.refresh_hint,
            sequence: fetched.sequence,
        })
    }

    /// Polls every relationship until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut schedule: BTreeMap<String, Schedule> = BTreeMap::new();
        loop {
            let relationships = match self.datastore.list_federation_relationships().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list federation relationships; retrying");
                    tokio::time::sleep(FIRST_RETRY).await;
                    continue;
                }
            };
            schedule.retain(|td, _| relationships.iter().any(|r| r.trust_domain == *td));
            let now = Instant::now();
            for rel in &relationships {
                let slot = schedule
                    .entry(rel.trust_domain.clone())
                    .or_insert_with(|| Schedule {
                        relationship: rel.clone(),
                        due: now,
                        failures: 0,
                    });
                if slot.relationship != *rel {
                    slot.relationship = rel.clone();
                    slot.due = now;
                    slot.failures = 0;
                }
                if slot.due > now {
                    continue;
                }
                match self.refresh_relationship(rel).await {
                    Ok(done) => {
                        slot.failures = 0;
                        slot.due = Instant::now() + interval(done.refresh_hint);
                    }
                    Err(e) => {
                        let retry = FIRST_RETRY
                            .saturating_mul(2u32.saturating_pow(slot.failures.min(16)))
                            .min(DEFAULT_REFRESH);
                        slot.failures = slot.failures.saturating_add(1);
                        slot.due = Instant::now() + retry;
                        tracing::warn!(
                            trust_domain = %rel.trust_domain,
                            url = %rel.bundle_endpoint_url,
                            error = %e,
                            retry_in = ?retry,
                            "federated bundle refresh failed; keeping the last good bundle"
                        );
                    }
                }
            }
            let next = schedule
                .values()
                .map(|s| s.due)
                .min()
                .unwrap_or(now + RELOAD)
                .min(Instant::now() + RELOAD);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}

/// The poll interval for a bundle with `refresh_hint` seconds.
pub fn interval(refresh_hint: i64) -> Duration {
    match u64::try_from(refresh_hint) {
        Ok(secs) if secs > 0 => Duration::from_secs(secs).max(MIN_REFRESH),
        _ => DEFAULT_REFRESH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_honours_the_hint_with_a_floor() {
        assert_eq!(interval(0), DEFAULT_REFRESH);
        assert_eq!(interval(-3), DEFAULT_REFRESH);
        assert_eq!(interval(1), MIN_REFRESH);
        assert_eq!(interval(600), Duration::from_secs(600));
    }
}
