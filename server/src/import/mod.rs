//! `spinel-server datastore import -from spire`: a SPIRE server's datastore
//! into Spinel's, for operators moving from SPIRE.
//!
//! [`spire`] reads SPIRE's SQL datastore (SQLite or PostgreSQL, as SPIRE
//! 1.13 writes it); [`import`] writes what it read into the datastore the
//! Spinel server is configured with, record by record:
//!
//! - registration entries keep their entry IDs, so a second run finds them;
//!   an entry of another trust domain, or one similar to (same parent, SPIFFE
//!   ID and selectors) a different Spinel entry, is skipped with the reason;
//! - attested agents keep their serial numbers, selectors and bans, so
//!   agents holding SVIDs from the SPIRE server are recognised;
//! - the SPIRE server's own bundle is merged into Spinel's (its authorities
//!   are added, none removed), so SVIDs SPIRE signed stay trusted while
//!   workloads move over; Spinel's CA adds its own at start. SPIRE's keys
//!   are never read;
//! - federated bundles, federation relationships and join tokens are
//!   created when absent; expired tokens are skipped.
//!
//! Running it again changes nothing and says so: every record is reported
//! as imported, already present, or skipped with why.

pub mod spire;

use std::collections::BTreeMap;
use std::fmt;

use spinel_spiffe::TrustDomain;

use crate::datastore::{
    AttestedAgent, DataStore, DataStoreError, EntryFilter, JoinToken, RegistrationEntry,
    StoredBundle, StoredFederationRelationship,
};

/// Everything an import takes from its source.
#[derive(Debug, Default)]
pub struct Records {
    /// SPIRE's `migrations` version, if the table has a row.
    pub schema_version: Option<i64>,
    /// This server's CA journal (from a Spinel datastore only: SPIRE's
    /// keys and journal are never taken).
    pub ca_journal: Option<(String, Vec<u8>)>,
    /// Registration entries, with selectors, DNS names and federated trust
    /// domains (names) filled in.
    pub entries: Vec<RegistrationEntry>,
    /// Attested agents with their node selectors.
    pub agents: Vec<AttestedAgent>,
    /// Bundles by trust domain name (the server's own and federated ones).
    pub bundles: Vec<StoredBundle>,
    /// Federation relationships.
    pub relationships: Vec<StoredFederationRelationship>,
    /// Join tokens: (value, expiry in Unix seconds).
    pub join_tokens: Vec<(String, i64)>,
}

/// How many entries are written per batch.
const ENTRY_BATCH: usize = 1000;

/// What the import did with each kind of record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Written now.
    pub imported: usize,
    /// Already in the Spinel datastore (an earlier run).
    pub present: usize,
    /// Left out, with why (one line each).
    pub skipped: Vec<String>,
}

/// The import's outcome, by kind of record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Registration entries.
    pub entries: Tally,
    /// Attested agents.
    pub agents: Tally,
    /// Bundles (this trust domain's merged, federated ones created).
    pub bundles: Tally,
    /// Federation relationships.
    pub relationships: Tally,
    /// Join tokens.
    pub join_tokens: Tally,
    /// This server's CA journal (from a Spinel datastore).
    pub ca_journal: Tally,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            ("entries", &self.entries),
            ("agents", &self.agents),
            ("bundles", &self.bundles),
            ("federation relationships", &self.relationships),
            ("join tokens", &self.join_tokens),
            ("CA journal", &self.ca_journal),
        ];
        for (name, t) in kinds {
            writeln!(
                f,
                "{name}: {} imported, {} already present, {} skipped",
                t.imported,
                t.present,
                t.skipped.len()
            )?;
        }
        for (name, t) in kinds {
            for why in &t.skipped {
                writeln!(f, "skipped {name}: {why}")?;
            }
        }
        Ok(())
    }
}

/// An import that could not go on (a datastore write failed). What was
/// written before stays; running the import again continues from there.
#[derive(Debug, thiserror::Error)]
#[error("writing {what} into the Spinel datastore: {source}")]
pub struct ImportError {
    /// What was being written.
    pub what: &'static str,
    /// The datastore's error.
    #[source]
    pub source: DataStoreError,
}

fn failed(what: &'static str) -> impl Fn(DataStoreError) -> ImportError {
    move |source| ImportError { what, source }
}

/// The trust domain of a `spiffe://` ID, if it has one.
fn trust_domain_of(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Writes `data` into `target`, the datastore of trust domain `own`.
/// `now` (Unix seconds) decides which join tokens have expired.
pub async fn import(
    data: Records,
    target: &dyn DataStore,
    own: &TrustDomain,
    now: i64,
) -> Result<Report, ImportError> {
    let mut report = Report::default();
    import_entries(data.entries, target, own, &mut report.entries).await?;
    for agent in data.agents {
        if trust_domain_of(&agent.spiffe_id) != Some(own.as_str()) {
            report
                .agents
                .skipped
                .push(format!("{}: not in trust domain {own}", agent.spiffe_id));
            continue;
        }
        match target.create_agent(agent).await {
            Ok(()) => report.agents.imported += 1,
            Err(DataStoreError::AlreadyExists { .. }) => report.agents.present += 1,
            Err(e) => return Err(failed("an attested agent")(e)),
        }
    }
    for bundle in data.bundles {
        if bundle.trust_domain == own.as_str() {
            merge_own_bundle(bundle, target, &mut report.bundles).await?;
            continue;
        }
        let td = bundle.trust_domain.clone();
        match target
            .get_bundle(&td)
            .await
            .map_err(failed("a federated bundle"))?
        {
            None => {
                target
                    .set_bundle(bundle)
                    .await
                    .map_err(failed("a federated bundle"))?;
                report.bundles.imported += 1;
            }
            Some(stored)
                if stored.x509_authorities == bundle.x509_authorities
                    && stored.jwt_authorities == bundle.jwt_authorities =>
            {
                report.bundles.present += 1;
            }
            Some(_) => report.bundles.skipped.push(format!(
                "{td}: Spinel already holds a different bundle for it (kept; the bundle endpoint refreshes it)"
            )),
        }
    }
    for relationship in data.relationships {
        match target.create_federation_relationship(relationship).await {
            Ok(()) => report.relationships.imported += 1,
            Err(DataStoreError::AlreadyExists { .. }) => report.relationships.present += 1,
            Err(e) => return Err(failed("a federation relationship")(e)),
        }
    }
    for (value, expires_at) in data.join_tokens {
        if expires_at <= now {
            // Never print a token: a prefix is enough to tell them apart.
            let shown: String = value.chars().take(4).collect();
            report
                .join_tokens
                .skipped
                .push(format!("{shown}...: expired"));
            continue;
        }
        match target
            .create_join_token(JoinToken { value, expires_at })
            .await
        {
            Ok(()) => report.join_tokens.imported += 1,
            Err(DataStoreError::AlreadyExists { .. }) => report.join_tokens.present += 1,
            Err(e) => return Err(failed("a join token")(e)),
        }
    }
    if let Some((server_id, journal)) = data.ca_journal {
        match target
            .get_ca_journal(&server_id)
            .await
            .map_err(failed("the CA journal"))?
        {
            Some(existing) if existing == journal => report.ca_journal.present += 1,
            Some(_) => report.ca_journal.skipped.push(format!(
                "server {server_id}: the target already holds a different CA journal for this server (kept)"
            )),
            None => {
                target
                    .set_ca_journal(&server_id, journal)
                    .await
                    .map_err(failed("the CA journal"))?;
                report.ca_journal.imported += 1;
            }
        }
    }
    Ok(report)
}

/// Reads everything a copy from another Spinel datastore (sled to SQL)
/// takes, and this server's CA journal (the server keeps its CA: its keys
/// stay in its key manager). Join tokens are not listed by the datastore
/// and not copied: they are short-lived; make new ones.
pub async fn read_datastore(
    source: &dyn DataStore,
    server_id: &str,
) -> Result<Records, DataStoreError> {
    Ok(Records {
        schema_version: None,
        ca_journal: source
            .get_ca_journal(server_id)
            .await?
            .map(|journal| (server_id.to_owned(), journal)),
        entries: source.list_entries(&EntryFilter::default()).await?,
        agents: source.list_agents().await?,
        bundles: source.list_bundles().await?,
        relationships: source.list_federation_relationships().await?,
        join_tokens: Vec::new(),
    })
}

async fn import_entries(
    entries: Vec<RegistrationEntry>,
    target: &dyn DataStore,
    own: &TrustDomain,
    tally: &mut Tally,
) -> Result<(), ImportError> {
    let mut wanted = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.id.is_empty() {
            tally
                .skipped
                .push(format!("{}: no entry ID", entry.spiffe_id));
        } else if trust_domain_of(&entry.spiffe_id) != Some(own.as_str()) {
            tally.skipped.push(format!(
                "{} ({}): not in trust domain {own}",
                entry.id, entry.spiffe_id
            ));
        } else {
            wanted.push(entry);
        }
    }
    let mut ids: BTreeMap<String, ()> = BTreeMap::new();
    for chunk in wanted.chunks(ENTRY_BATCH) {
        let mut fresh = Vec::with_capacity(chunk.len());
        for entry in chunk {
            if ids.insert(entry.id.clone(), ()).is_some() {
                continue;
            }
            match target
                .get_entry(&entry.id)
                .await
                .map_err(failed("an entry"))?
            {
                Some(_) => tally.present += 1,
                None => fresh.push(entry.clone()),
            }
        }
        let outcomes = target
            .create_entries(fresh.clone())
            .await
            .map_err(failed("entries"))?;
        for (entry, outcome) in fresh.iter().zip(outcomes) {
            match outcome {
                Ok(_) => tally.imported += 1,
                Err(DataStoreError::AlreadyExists { id, .. }) => tally.skipped.push(format!(
                    "{} ({}): Spinel entry {id} has the same parent, SPIFFE ID and selectors",
                    entry.id, entry.spiffe_id
                )),
                Err(e) => tally
                    .skipped
                    .push(format!("{} ({}): {e}", entry.id, entry.spiffe_id)),
            }
        }
    }
    Ok(())
}

/// Adds the SPIRE server's authorities to this trust domain's bundle.
async fn merge_own_bundle(
    spire: crate::datastore::StoredBundle,
    target: &dyn DataStore,
    tally: &mut Tally,
) -> Result<(), ImportError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let td = spire.trust_domain.clone();
    // The update may run more than once (another writer in between): the
    // last run decides.
    let added = AtomicBool::new(false);
    target
        .update_bundle(&td, &|current| {
            added.store(false, Ordering::Relaxed);
            let mut bundle = current.unwrap_or_else(|| crate::datastore::StoredBundle {
                x509_authorities: Vec::new(),
                jwt_authorities: Vec::new(),
                sequence_number: 0,
                ..spire.clone()
            });
            let before = (bundle.x509_authorities.len(), bundle.jwt_authorities.len());
            for der in &spire.x509_authorities {
                if !bundle.x509_authorities.contains(der) {
                    bundle.x509_authorities.push(der.clone());
                }
            }
            for key in &spire.jwt_authorities {
                if !bundle
                    .jwt_authorities
                    .iter()
                    .any(|k| k.key_id == key.key_id)
                {
                    bundle.jwt_authorities.push(key.clone());
                }
            }
            if (bundle.x509_authorities.len(), bundle.jwt_authorities.len()) == before {
                return None;
            }
            bundle.sequence_number = bundle.sequence_number.saturating_add(1);
            added.store(true, Ordering::Relaxed);
            Some(bundle)
        })
        .await
        .map_err(failed("this trust domain's bundle"))?;
    if added.load(Ordering::Relaxed) {
        tally.imported += 1;
    } else {
        tally.present += 1;
    }
    Ok(())
}
