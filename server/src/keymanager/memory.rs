//! `KeyManager "memory"`: keys live only as long as the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{KeyError, KeyManager, KeyType, SigningKey};

/// Keys in memory; a restart makes a new CA.
#[derive(Debug, Default)]
pub struct MemoryKeyManager {
    keys: Mutex<HashMap<String, Arc<SigningKey>>>,
}

impl MemoryKeyManager {
    /// An empty key manager.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyManager for MemoryKeyManager {
    fn generate_key(&self, id: &str, key_type: KeyType) -> Result<Arc<SigningKey>, KeyError> {
        let key = Arc::new(SigningKey::generate(id, key_type)?);
        self.keys
            .lock()
            .map_err(|_| KeyError::Key {
                id: id.to_owned(),
                reason: "key store lock poisoned".into(),
            })?
            .insert(id.to_owned(), key.clone());
        Ok(key)
    }

    fn get_key(&self, id: &str) -> Result<Option<Arc<SigningKey>>, KeyError> {
        Ok(self
            .keys
            .lock()
            .map_err(|_| KeyError::Key {
                id: id.to_owned(),
                reason: "key store lock poisoned".into(),
            })?
            .get(id)
            .cloned())
    }
}
