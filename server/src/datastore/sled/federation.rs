//! Federation relationships: one JSON record per trust domain in the
//! `federation_relationships` tree, changed with sled's atomic single-key
//! operations.

use super::codec::{backend, encode};
use super::records::{get, insert_new, list, remove};
use super::{Trees, FEDERATION};
use crate::datastore::{DataStoreError, Result, StoredFederationRelationship};

const KIND: &str = "federation relationship";

impl Trees {
    pub(super) fn create_federation_relationship(
        &self,
        relationship: &StoredFederationRelationship,
    ) -> Result<()> {
        let value = encode(KIND, relationship)?;
        let key = relationship.trust_domain.as_bytes();
        if insert_new(&self.federation, FEDERATION, key, value)? {
            Ok(())
        } else {
            Err(DataStoreError::AlreadyExists {
                kind: KIND,
                id: relationship.trust_domain.clone(),
            })
        }
    }

    pub(super) fn update_federation_relationship(
        &self,
        relationship: &StoredFederationRelationship,
    ) -> Result<()> {
        let value = encode(KIND, relationship)?;
        let updated = self
            .federation
            .update_and_fetch(relationship.trust_domain.as_bytes(), |old| {
                old.map(|_| value.clone())
            })
            .map_err(|e| backend(&format!("writing {FEDERATION}"), e))?;
        updated.map(drop).ok_or_else(|| DataStoreError::NotFound {
            kind: KIND,
            id: relationship.trust_domain.clone(),
        })
    }

    pub(super) fn get_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<Option<StoredFederationRelationship>> {
        get(&self.federation, FEDERATION, trust_domain.as_bytes())
    }

    pub(super) fn delete_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<StoredFederationRelationship> {
        remove(&self.federation, FEDERATION, KIND, trust_domain)
    }

    pub(super) fn list_federation_relationships(
        &self,
    ) -> Result<Vec<StoredFederationRelationship>> {
        list(&self.federation, FEDERATION)
    }
}
