//! `KeyManager "disk"`: keys in one JSON file (`keys_path`).
//!
//! The file maps key IDs to `{ "type": "ec-p256", "pkcs8": "<base64>" }`. It
//! is rewritten whole, atomically and with mode 0600, before a new key is
//! handed out. A file that does not parse, or that other users can read, is
//! refused with an error naming it: silently replacing a CA key would break
//! the trust domain. So is a directory another user could change
//! ([`spinel_spiffe::trusted_dir`]); a missing one is created with mode
//! 0700. Temporary files left by a write that was killed before its rename
//! are deleted when the file is opened.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KeyError, KeyManager, KeyType, SigningKey};

/// Keys in a JSON file.
#[derive(Debug)]
pub struct DiskKeyManager {
    path: PathBuf,
    keys: Mutex<BTreeMap<String, Arc<SigningKey>>>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    #[serde(rename = "type")]
    key_type: String,
    pkcs8: String,
}

#[derive(Serialize, Deserialize, Default)]
struct KeyFile {
    keys: BTreeMap<String, StoredKey>,
}

impl DiskKeyManager {
    /// Opens the key file at `path` (created on the first key).
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let file_err = |reason: String| KeyError::File {
            path: path.to_owned(),
            reason,
        };
        // A server killed inside a key-file write leaves its temporary file
        // (a whole key file, mode 0600); this server is the file's only
        // writer, so such leftovers are deleted before anything is written.
        match spinel_spiffe::keyfile::remove_stale_temp_files(path) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                path = %path.display(),
                removed,
                "removed temporary key files left by an interrupted write"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not remove temporary key files left by an interrupted write"
            ),
        }
        // Every write would refuse a directory another user can change
        // (they could swap the keys); refuse it now, at start.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| d.exists()) {
            spinel_spiffe::keyfile::check_dir(dir).map_err(|e| file_err(e.to_string()))?;
        }
        let mut keys = BTreeMap::new();
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(file_err(format!(
                        "mode {:o} lets other users read private keys; set it to 0600",
                        meta.permissions().mode() & 0o777
                    )));
                }
                let text =
                    Zeroizing::new(std::fs::read(path).map_err(|e| file_err(e.to_string()))?);
                let parsed: KeyFile = serde_json::from_slice(&text).map_err(|e| {
                    file_err(format!("not a valid key file (corrupt or truncated?): {e}"))
                })?;
                for (id, stored) in parsed.keys {
                    let key_type: KeyType = stored.key_type.parse()?;
                    let der = STANDARD
                        .decode(stored.pkcs8.as_bytes())
                        .map_err(|_| file_err(format!("key {id:?} is not valid base64")))?;
                    let key = SigningKey::from_pkcs8(&id, key_type, der)?;
                    keys.insert(id, Arc::new(key));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(e.to_string())),
        }
        Ok(DiskKeyManager {
            path: path.to_owned(),
            keys: Mutex::new(keys),
        })
    }

    fn persist(&self, keys: &BTreeMap<String, Arc<SigningKey>>) -> Result<(), KeyError> {
        let file = KeyFile {
            keys: keys
                .iter()
                .map(|(id, k)| {
                    (
                        id.clone(),
                        StoredKey {
                            key_type: k.key_type().to_string(),
                            pkcs8: STANDARD.encode(k.pkcs8_der()),
                        },
                    )
                })
                .collect(),
        };
        let bytes =
            Zeroizing::new(
                serde_json::to_vec_pretty(&file).map_err(|e| KeyError::File {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?,
            );
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| KeyError::File {
                    path: self.path.clone(),
                    reason: format!("creating {}: {e}", dir.display()),
                })?;
        }
        spinel_spiffe::keyfile::write_private(&self.path, &bytes).map_err(|e| KeyError::File {
            path: self.path.clone(),
            reason: e.source.to_string(),
        })
    }
}

impl KeyManager for DiskKeyManager {
    fn generate_key(&self, id: &str, key_type: KeyType) -> Result<Arc<SigningKey>, KeyError> {
        let key = Arc::new(SigningKey::generate(id, key_type)?);
        let mut keys = self.keys.lock().map_err(|_| KeyError::Key {
            id: id.to_owned(),
            reason: "key store lock poisoned".into(),
        })?;
        let mut next = keys.clone();
        next.insert(id.to_owned(), key.clone());
        self.persist(&next)?;
        *keys = next;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopen_and_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let km = DiskKeyManager::open(&path).unwrap();
        let key = km.generate_key("x509-CA-A", KeyType::EcP256).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = DiskKeyManager::open(&path).unwrap();
        let loaded = again.get_key("x509-CA-A").unwrap().unwrap();
        assert_eq!(loaded.public_key_der(), key.public_key_der());
        assert!(!format!("{loaded:?}").contains(&STANDARD.encode(key.pkcs8_der())));
    }

    #[test]
    fn temp_files_of_an_interrupted_write_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let km = DiskKeyManager::open(&path).unwrap();
        km.generate_key("x509-CA-A", KeyType::EcP256).unwrap();
        let stale = dir.path().join(".keys.json.tmp999999");
        std::fs::copy(&path, &stale).unwrap();
        let again = DiskKeyManager::open(&path).unwrap();
        assert!(again.get_key("x509-CA-A").unwrap().is_some());
        assert!(!stale.exists());
    }

    #[test]
    fn corrupt_or_readable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, b"{\"keys\": {").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = DiskKeyManager::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("keys.json") && err.contains("corrupt"),
            "{err}"
        );
        std::fs::write(&path, b"{\"keys\": {}}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = DiskKeyManager::open(&path).unwrap_err().to_string();
        assert!(err.contains("0600"), "{err}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = DiskKeyManager::open(&shared.join("keys.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("keys.json") && err.contains("writable by all users"),
            "{err}"
        );
        // A missing directory is created, closed to others.
        let fresh = dir.path().join("new/keys");
        let km = DiskKeyManager::open(&fresh.join("keys.json")).unwrap();
        km.generate_key("x509-CA-A", KeyType::EcP256).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn jws_signatures_have_fixed_size() {
        let p256 = SigningKey::generate("t", KeyType::EcP256).unwrap();
        assert_eq!(p256.sign_jws(b"msg").unwrap().len(), 64);
        let p384 = SigningKey::generate("t", KeyType::EcP384).unwrap();
        assert_eq!(p384.sign_jws(b"msg").unwrap().len(), 96);
    }
}
