//! Agents, join tokens, bundles and the CA journal: one record per key,
//! changed with sled's atomic single-key operations.
//!
//! A call that fails changes nothing, except [`Trees::take_join_token`]: a
//! token is gone once taken, even if its record turns out to be unreadable.

use ::sled::{IVec, Tree};
use serde::de::DeserializeOwned;

use super::codec::{backend, decode, encode, REDACTED};
use super::{Trees, AGENTS, BUNDLES, CA_JOURNAL_PREFIX, LEGACY_CA_JOURNAL_KEY, META, TOKENS};
use crate::datastore::{
    AttestedAgent, BundleUpdate, DataStoreError, JoinToken, Result, StoredBundle,
};

impl Trees {
    pub(super) fn create_agent(&self, agent: &AttestedAgent) -> Result<()> {
        let value = encode("agent", agent)?;
        if insert_new(&self.agents, AGENTS, agent.spiffe_id.as_bytes(), value)? {
            Ok(())
        } else {
            Err(DataStoreError::AlreadyExists {
                kind: "agent",
                id: agent.spiffe_id.clone(),
            })
        }
    }

    /// Replaces the agent whatever its stored record holds, so an unreadable
    /// record can be repaired by writing a good one.
    pub(super) fn update_agent(&self, agent: &AttestedAgent) -> Result<()> {
        let value = encode("agent", agent)?;
        let updated = self
            .agents
            .update_and_fetch(agent.spiffe_id.as_bytes(), |old| old.map(|_| value.clone()))
            .map_err(|e| backend("writing agents", e))?;
        updated.map(drop).ok_or_else(|| DataStoreError::NotFound {
            kind: "agent",
            id: agent.spiffe_id.clone(),
        })
    }

    pub(super) fn get_agent(&self, spiffe_id: &str) -> Result<Option<AttestedAgent>> {
        get(&self.agents, AGENTS, spiffe_id.as_bytes())
    }

    pub(super) fn delete_agent(&self, spiffe_id: &str) -> Result<AttestedAgent> {
        remove(&self.agents, AGENTS, "agent", spiffe_id)
    }

    pub(super) fn list_agents(&self) -> Result<Vec<AttestedAgent>> {
        list(&self.agents, AGENTS)
    }

    pub(super) fn create_join_token(&self, token: &JoinToken) -> Result<()> {
        let value = encode("join token", token)?;
        if insert_new(&self.tokens, TOKENS, token.value.as_bytes(), value)? {
            Ok(())
        } else {
            // The value is the secret: never echo it.
            Err(DataStoreError::AlreadyExists {
                kind: "join token",
                id: String::from_utf8_lossy(REDACTED).into_owned(),
            })
        }
    }

    /// Removes the token and returns its raw record. sled's `remove` hands
    /// the old value to exactly one of any number of concurrent callers.
    pub(super) fn take_join_token(&self, value: &str) -> Result<Option<IVec>> {
        self.tokens
            .remove(value.as_bytes())
            .map_err(|e| backend("writing join_tokens", e))
    }

    /// Removes the tokens that expired before `unix_seconds`. A token taken
    /// meanwhile is left to its taker and not counted.
    pub(super) fn prune_join_tokens(&self, unix_seconds: i64) -> Result<u64> {
        let mut pruned = 0;
        for item in self.tokens.iter() {
            let (key, bytes) = item.map_err(|e| backend("reading join_tokens", e))?;
            let token: JoinToken = decode(TOKENS, REDACTED, &bytes)?;
            if token.expires_at >= unix_seconds {
                continue;
            }
            let swapped = self
                .tokens
                .compare_and_swap(&key, Some(&bytes), None::<&[u8]>)
                .map_err(|e| backend("writing join_tokens", e))?;
            if swapped.is_ok() {
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    pub(super) fn get_bundle(&self, trust_domain: &str) -> Result<Option<StoredBundle>> {
        get(&self.bundles, BUNDLES, trust_domain.as_bytes())
    }

    pub(super) fn set_bundle(&self, bundle: &StoredBundle) -> Result<()> {
        let value = encode("bundle", bundle)?;
        self.bundles
            .insert(bundle.trust_domain.as_bytes(), value)
            .map(drop)
            .map_err(|e| backend("writing bundles", e))
    }

    pub(super) fn delete_bundle(&self, trust_domain: &str) -> Result<StoredBundle> {
        remove(&self.bundles, BUNDLES, "bundle", trust_domain)
    }

    pub(super) fn list_bundles(&self) -> Result<Vec<StoredBundle>> {
        list(&self.bundles, BUNDLES)
    }

    /// Compare-and-swap on the stored bytes, so a concurrent writer's
    /// change is never overwritten: `update` runs again on it.
    pub(super) fn update_bundle(
        &self,
        trust_domain: &str,
        update: &BundleUpdate<'_>,
    ) -> Result<(Option<StoredBundle>, bool)> {
        let key = trust_domain.as_bytes();
        loop {
            let old = self
                .bundles
                .get(key)
                .map_err(|e| backend(&format!("reading {BUNDLES}"), e))?;
            let current: Option<StoredBundle> = match &old {
                Some(bytes) => Some(decode(BUNDLES, key, bytes)?),
                None => None,
            };
            let Some(next) = update(current.clone()) else {
                return Ok((current, false));
            };
            let value = encode("bundle", &next)?;
            let swapped = self
                .bundles
                .compare_and_swap(key, old.as_deref(), Some(value))
                .map_err(|e| backend(&format!("writing {BUNDLES}"), e))?;
            if swapped.is_ok() {
                return Ok((Some(next), true));
            }
        }
    }

    /// Server `server_id`'s journal, else the one kept before journals
    /// were per server (sled serves one server, so it is this server's).
    pub(super) fn get_ca_journal(&self, server_id: &str) -> Result<Option<Vec<u8>>> {
        let keyed = self
            .meta
            .get(ca_journal_key(server_id))
            .map_err(|e| backend(&format!("reading {META}"), e))?;
        let found = match keyed {
            Some(v) => Some(v),
            None => self
                .meta
                .get(LEGACY_CA_JOURNAL_KEY)
                .map_err(|e| backend(&format!("reading {META}"), e))?,
        };
        Ok(found.map(|v| v.to_vec()))
    }

    /// Writes server `server_id`'s journal and drops the pre-per-server
    /// one in the same batch.
    pub(super) fn set_ca_journal(&self, server_id: &str, journal: Vec<u8>) -> Result<()> {
        let mut batch = ::sled::Batch::default();
        batch.insert(ca_journal_key(server_id), journal);
        batch.remove(LEGACY_CA_JOURNAL_KEY);
        self.meta
            .apply_batch(batch)
            .map_err(|e| backend(&format!("writing {META}"), e))
    }
}

/// Stores `value` under `key` unless the key is taken; `false` if it was.
pub(super) fn insert_new(tree: &Tree, name: &str, key: &[u8], value: Vec<u8>) -> Result<bool> {
    tree.compare_and_swap(key, None::<&[u8]>, Some(value))
        .map(|swapped| swapped.is_ok())
        .map_err(|e| backend(&format!("writing {name}"), e))
}

pub(super) fn get<T: DeserializeOwned>(tree: &Tree, name: &str, key: &[u8]) -> Result<Option<T>> {
    match tree
        .get(key)
        .map_err(|e| backend(&format!("reading {name}"), e))?
    {
        Some(bytes) => decode(name, key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Removes the record under `key` and returns it. An unreadable record is
/// `Corrupt` and stays, so a failed call changes nothing.
pub(super) fn remove<T: DeserializeOwned>(
    tree: &Tree,
    name: &str,
    kind: &'static str,
    key: &str,
) -> Result<T> {
    loop {
        let Some(bytes) = tree
            .get(key.as_bytes())
            .map_err(|e| backend(&format!("reading {name}"), e))?
        else {
            return Err(DataStoreError::NotFound {
                kind,
                id: key.to_owned(),
            });
        };
        let record = decode(name, key.as_bytes(), &bytes)?;
        let swapped = tree
            .compare_and_swap(key.as_bytes(), Some(&bytes), None::<&[u8]>)
            .map_err(|e| backend(&format!("writing {name}"), e))?;
        if swapped.is_ok() {
            return Ok(record);
        }
        // Changed between the read and the swap: look again.
    }
}

/// Every record of a tree, in key order.
pub(super) fn list<T: DeserializeOwned>(tree: &Tree, name: &str) -> Result<Vec<T>> {
    tree.iter()
        .map(|item| {
            let (key, bytes) = item.map_err(|e| backend(&format!("reading {name}"), e))?;
            decode(name, &key, &bytes)
        })
        .collect()
}

/// `meta` key of server `server_id`'s CA journal.
fn ca_journal_key(server_id: &str) -> Vec<u8> {
    let mut key = CA_JOURNAL_PREFIX.to_vec();
    key.extend_from_slice(server_id.as_bytes());
    key
}
