//! One sync round ([`sync_once`]), in order:
//!
//! 1. `GetBundle`: the trust bundle; tainted authorities are noted and
//!    JWT-SVIDs signed by a tainted key dropped (`authorities.rs`);
//! 2. the agent SVID is renewed when due or signed by a tainted authority
//!    (`RenewAgent`, or attesting again when reattestable);
//! 3. new roots are saved and the channel rebuilt (`Manager::set_roots`);
//! 4. `SyncAuthorizedEntries`: the entries this agent may serve, only the
//!    new or changed ones downloaded (`client::sync_authorized_entries`);
//! 5. `GetFederatedBundle` for every trust domain they federate with;
//! 6. `BatchNewX509SVID` for entries that are new, changed, due, expired,
//!    signed by a tainted CA or by a CA that left the bundle (one fresh key
//!    and CSR each, in chunks that keep every response far under the gRPC
//!    message limit: `svids.rs`);
//! 7. a new cache snapshot is published if anything changed; the Workload
//!    API streams wake on it. A long step 6 also publishes along the way,
//!    and a chunk that fails keeps the SVIDs of the chunks before it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use spinel_proto::bundle::to_trust_bundle;
use spinel_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use spinel_proto::spire::api::server::agent::v1::{AgentX509svidParams, RenewAgentRequest};
use spinel_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spinel_proto::spire::api::server::bundle::v1::{GetBundleRequest, GetFederatedBundleRequest};
use spinel_proto::spire::api::types;
use spinel_spiffe::{Selector, TrustBundle, TrustDomain};
use tonic::Status;

use super::authorities::{
    drop_tainted_jwts, issued_by_any, signed_by_tainted, tainted_authorities,
};
use super::svids;
use crate::cache::{CachedEntry, Identity, Snapshot};
use crate::manager::certs::{key_and_csr, validity};
use crate::manager::state::{AgentSvid, Manager};
use crate::manager::timing::renewal_due_at;

/// A deterministic jitter in [-0.1, 0.1] for one certificate, so each SVID
/// renews at its own moment rather than all at once.
fn jitter_for(der: &[u8]) -> f64 {
    let b = der.last().copied().unwrap_or(128);
    (f64::from(b) / 255.0 - 0.5) * 0.2
}

/// The authorized entries, synced incrementally: entries already held at
/// the same revision (the entries of the current identities) are reused,
/// only new or changed ones are downloaded.
async fn authorized_entries(m: &Manager, snapshot: &Snapshot) -> Result<Vec<CachedEntry>, Status> {
    let held: std::collections::HashMap<String, &CachedEntry> = snapshot
        .identities
        .values()
        .map(|i| (i.entry.id.clone(), &i.entry))
        .collect();
    let known = held
        .iter()
        .map(|(id, e)| (id.clone(), e.revision_number))
        .collect();
    let synced = crate::client::sync_authorized_entries(m.channel(), &known).await?;
    let mut entries: Vec<CachedEntry> = synced
        .unchanged
        .iter()
        .filter_map(|id| held.get(id).map(|e| (*e).clone()))
        .collect();
    entries.extend(synced.changed.iter().filter_map(|e| {
        let cached = to_cached(e);
        if cached.is_none() {
            tracing::warn!(entry_id = %e.id, "skipping an entry with an invalid SPIFFE ID or selector");
        }
        cached
    }));
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    tracing::trace!(
        entries = entries.len(),
        downloaded = synced.changed.len(),
        "synced authorized entries"
    );
    Ok(entries)
}

fn to_cached(e: &types::Entry) -> Option<CachedEntry> {
    let id = e.spiffe_id.as_ref()?;
    // Strict, with the 2,048-byte limit: an entry the agent could not serve
    // (or the CA would not sign) is left out.
    let spiffe_id =
        spinel_spiffe::id::parse_id(&format!("spiffe://{}{}", id.trust_domain, id.path)).ok()?;
    let selectors = e
        .selectors
        .iter()
        .map(|s| Selector::new(s.r#type.clone(), s.value.clone()))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(CachedEntry {
        id: e.id.clone(),
        spiffe_id,
        selectors,
        federates_with: e
            .federates_with
            .iter()
            .filter_map(|td| spinel_spiffe::id::parse_trust_domain(td).ok())
            .collect(),
        hint: e.hint.clone(),
        revision_number: e.revision_number,
        admin: e.admin,
        downstream: e.downstream,
    })
}

/// The bundles of the foreign trust domains the entries federate with, from
/// the server's `GetFederatedBundle`. One the server does not have (yet) is
/// left out; one that cannot be fetched now keeps its cached copy.
async fn federated_bundles(
    m: &Manager,
    entries: &[CachedEntry],
    cached: &BTreeMap<TrustDomain, TrustBundle>,
) -> BTreeMap<TrustDomain, TrustBundle> {
    let wanted: BTreeSet<&TrustDomain> = entries
        .iter()
        .flat_map(|e| e.federates_with.iter())
        .filter(|td| *td != m.trust_domain())
        .collect();
    let mut out = BTreeMap::new();
    let mut client = BundleClient::new(m.channel());
    for td in wanted {
        let request = GetFederatedBundleRequest {
            trust_domain: td.to_string(),
            output_mask: None,
        };
        match client.get_federated_bundle(request).await {
            Ok(response) => {
                let bundle = response.into_inner();
                if bundle.trust_domain != td.as_str() {
                    tracing::warn!(trust_domain = %td, got = %bundle.trust_domain, "the server sent the bundle of another trust domain; ignored");
                    continue;
                }
                out.insert(td.clone(), to_trust_bundle(td, &bundle));
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::debug!(trust_domain = %td, "the server has no bundle of this federated trust domain yet");
            }
            Err(status) => {
                tracing::warn!(trust_domain = %td, code = ?status.code(), error = %status.message(), "cannot fetch a federated bundle; keeping the cached one");
                if let Some(b) = cached.get(td) {
                    out.insert(td.clone(), b.clone());
                }
            }
        }
    }
    out
}

async fn renew_agent_if_due(m: &Manager, tainted: &[Vec<u8>]) -> Result<(), Status> {
    let svid = m.agent_svid();
    let now = m.clock().now();
    let leaf = svid.chain.first().map(Vec::as_slice).unwrap_or_default();
    let is_tainted = signed_by_tainted(&svid.chain, tainted);
    if !is_tainted && renewal_due_at(svid.not_before, svid.not_after, jitter_for(leaf)) > now {
        return Ok(());
    }
    if is_tainted {
        tracing::info!("the agent SVID was signed by a tainted authority: renewing it now");
    }
    if m.reattestable() {
        // The server refuses RenewAgent for reattestable agents: attest
        // again with fresh evidence instead.
        m.reattest()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        crate::metrics::metrics().agent_svid_rotations.inc();
        return Ok(());
    }
    let (key, csr) = key_and_csr().map_err(|e| Status::internal(e.to_string()))?;
    let response = AgentClient::new(m.channel())
        .renew_agent(RenewAgentRequest {
            params: Some(AgentX509svidParams { csr }),
        })
        .await?
        .into_inner();
    let chain = response.svid.map(|s| s.cert_chain).unwrap_or_default();
    let (not_before, not_after) = chain
        .first()
        .and_then(|c| validity(c))
        .ok_or_else(|| Status::internal("the server returned an unreadable agent SVID"))?;
    m.set_agent_svid(AgentSvid {
        chain,
        key,
        not_before,
        not_after,
    })
    .map_err(|e| Status::internal(e.to_string()))?;
    crate::metrics::metrics().agent_svid_rotations.inc();
    tracing::info!(expires = ?not_after, "renewed the agent SVID");
    Ok(())
}

pub(crate) async fn sync_once(m: &Arc<Manager>) -> Result<(), Status> {
    let bundle = BundleClient::new(m.channel())
        .get_bundle(GetBundleRequest::default())
        .await?
        .into_inner();
    let tainted = tainted_authorities(&bundle);
    drop_tainted_jwts(m, &bundle);
    renew_agent_if_due(m, &tainted).await?;
    let bundle = to_trust_bundle(m.trust_domain(), &bundle);
    if !bundle.x509_authorities.is_empty() {
        m.set_roots(bundle.x509_authorities.clone())
            .map_err(|e| Status::internal(e.to_string()))?;
    }
    let snapshot = m.cache().snapshot();
    let entries = authorized_entries(m, &snapshot).await?;

    let federated = federated_bundles(m, &entries, &snapshot.federated).await;
    let now = m.clock().now();
    // Checking every SVID's issuer costs a signature check each: only when
    // the roots moved.
    let same_roots = snapshot.bundle.x509_authorities == bundle.x509_authorities;
    let roots_moved = !same_roots && !bundle.x509_authorities.is_empty();
    let needs_svid = |e: &CachedEntry| match snapshot.identities.get(&e.id) {
        None => true,
        Some(i) => {
            i.entry != *e
                || i.svid.not_after <= now
                || signed_by_tainted(&i.svid.chain, &tainted)
                || (roots_moved && !issued_by_any(&i.svid.chain, &bundle.x509_authorities))
                || renewal_due_at(
                    i.svid.not_before,
                    i.svid.not_after,
                    jitter_for(i.svid.chain.first().map(Vec::as_slice).unwrap_or_default()),
                ) <= now
        }
    };
    let wanted: Vec<CachedEntry> = entries.iter().filter(|e| needs_svid(e)).cloned().collect();
    for e in &wanted {
        // SPIRE's messages and fields (its test suites grep the agent log
        // for the SPIFFE ID); debug, not info: one line per SVID.
        match snapshot.identities.get(&e.id) {
            None => {
                tracing::debug!(spiffe_id = %e.spiffe_id, entry_id = %e.id, "Creating X509-SVID")
            }
            Some(i) => {
                tracing::debug!(spiffe_id = %e.spiffe_id, entry_id = %e.id, expires_at = i.svid.not_after.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(), "Renewing X509-SVID")
            }
        }
    }

    let same_bundle = same_roots && snapshot.bundle.jwt_authorities == bundle.jwt_authorities;
    let same_federated = snapshot.federated == federated;
    let round = Round {
        m,
        snapshot: &snapshot,
        entries: &entries,
        bundle,
        federated,
        now,
    };
    let chunks = wanted.len().div_ceil(svids::CHUNK);
    let mut minted = svids::Minted::new();
    let mut done = 0;
    let mut published = false;
    let outcome = svids::mint(m.channel(), wanted, |chunk| {
        minted.extend(chunk);
        done += 1;
        // Partial progress reaches workloads during a long sync.
        if done < chunks && svids::publish_after(done, chunks) {
            round.publish(&minted);
            published = true;
        }
    })
    .await;
    if let Err(status) = outcome {
        // The SVIDs of the chunks that made it are kept.
        if !minted.is_empty() {
            round.publish(&minted);
        }
        return Err(status);
    }
    let identities = round.identities(&minted);
    let same_identities = identities.len() == snapshot.identities.len()
        && identities
            .iter()
            .zip(snapshot.identities.iter())
            .all(|((k1, v1), (k2, v2))| k1 == k2 && Arc::ptr_eq(v1, v2));
    if published || !(same_identities && same_bundle && same_federated && snapshot.ready) {
        round.publish_identities(identities);
    }
    Ok(())
}

/// What a round publishes besides the SVIDs it minted.
struct Round<'a> {
    m: &'a Manager,
    snapshot: &'a Snapshot,
    entries: &'a [CachedEntry],
    bundle: TrustBundle,
    federated: BTreeMap<TrustDomain, TrustBundle>,
    now: SystemTime,
}

impl Round<'_> {
    /// The identity of every entry: newly minted, or the cached one while
    /// it is still valid for the same entry.
    fn identities(&self, minted: &svids::Minted) -> BTreeMap<String, Arc<Identity>> {
        let mut identities = BTreeMap::new();
        for e in self.entries {
            if let Some(i) = minted.get(&e.id) {
                identities.insert(e.id.clone(), i.clone());
            } else if let Some(i) = self.snapshot.identities.get(&e.id) {
                if i.svid.not_after > self.now && i.entry == *e {
                    identities.insert(e.id.clone(), i.clone());
                }
            }
        }
        identities
    }

    fn publish(&self, minted: &svids::Minted) {
        self.publish_identities(self.identities(minted));
    }

    fn publish_identities(&self, identities: BTreeMap<String, Arc<Identity>>) {
        let count = identities.len();
        self.m.cache().publish(|_| Snapshot {
            bundle: self.bundle.clone(),
            federated: self.federated.clone(),
            identities,
            generation: 0,
            ready: true,
        });
        tracing::debug!(identities = count, "published a new cache snapshot");
    }
}
