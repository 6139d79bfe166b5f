//! What the agent keeps in `data_dir` across restarts.
//!
//! - `agent_svid.der`: the agent's X509-SVID chain, DER certificates
//!   concatenated, leaf first;
//! - `agent_svid.key`: its PKCS#8 key, mode 0600 (only with
//!   `KeyManager "disk"`; with `"memory"` a restart attests again);
//! - `bundle.der`: the last trust bundle, DER CA certificates concatenated.
//!
//! Every file is written atomically, through [`keyfile`]: in a directory no
//! other user can change (one this writer creates gets mode 0700), never
//! through a file or link another user planted. A file that does not parse
//! is an error naming it, never silently dropped.

use std::path::{Path, PathBuf};

use spinel_spiffe::keyfile;
use zeroize::Zeroizing;

/// A problem with the stored state, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StoreError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// The agent's files.
#[derive(Debug, Clone)]
pub struct Store {
    svid: PathBuf,
    key: Option<PathBuf>,
    bundle: PathBuf,
}

/// A stored agent SVID and key.
pub struct StoredSvid {
    /// Chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8.
    pub key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for StoredSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSvid")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Splits concatenated DER certificates.
pub fn split_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (next, _) = x509_parser::parse_x509_certificate(rest)
            .map_err(|e| format!("not DER certificates: {e}"))?;
        let used = rest.len() - next.len();
        out.push(rest[..used].to_vec());
        rest = next;
    }
    Ok(out)
}

impl Store {
    /// The store in `data_dir`; `key_dir` is where the key goes (`None`: not persisted).
    pub fn new(data_dir: &Path, key_dir: Option<&Path>) -> Self {
        Store {
            svid: data_dir.join("agent_svid.der"),
            key: key_dir.map(|d| d.join("agent_svid.key")),
            bundle: data_dir.join("bundle.der"),
        }
    }

    /// Removes temporary files left by a previous run killed in the middle
    /// of a write (one may hold a whole private key); `extra` names more
    /// files written the same way. Returns how many were removed.
    pub fn remove_interrupted_writes(&self, extra: &[&Path]) -> usize {
        let mut paths: Vec<&Path> = vec![&self.svid, &self.bundle];
        paths.extend(self.key.as_deref());
        paths.extend_from_slice(extra);
        paths
            .into_iter()
            .map(|p| match keyfile::remove_stale_temp_files(p) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot remove temporary files of an interrupted write");
                    0
                }
            })
            .sum()
    }

    /// The stored bundle file.
    pub fn bundle_path(&self) -> &Path {
        &self.bundle
    }

    /// The agent SVID file.
    pub fn svid_path(&self) -> &Path {
        &self.svid
    }

    /// The agent key file, when keys are persisted.
    pub fn key_path(&self) -> Option<&Path> {
        self.key.as_deref()
    }

    fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
        if let Some(dir) = path.parent() {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .map_err(|e| StoreError {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        }
        keyfile::write_atomic(path, bytes, mode).map_err(|e| StoreError {
            path: path.to_owned(),
            reason: e.source.to_string(),
        })
    }

    /// The stored bundle, if any.
    pub fn load_bundle(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Self::read(&self.bundle)?
            .map(|b| {
                split_der(&b).map_err(|reason| StoreError {
                    path: self.bundle.clone(),
                    reason,
                })
            })
            .transpose()
    }

    /// Saves the bundle.
    pub fn save_bundle(&self, roots: &[Vec<u8>]) -> Result<(), StoreError> {
        Self::write(&self.bundle, &roots.concat(), 0o644)
    }

    /// The stored SVID and key, if both are there.
    pub fn load_svid(&self) -> Result<Option<StoredSvid>, StoreError> {
        let Some(key_path) = &self.key else {
            return Ok(None);
        };
        let (Some(chain), Some(key)) = (Self::read(&self.svid)?, Self::read(key_path)?) else {
            return Ok(None);
        };
        let chain = split_der(&chain).map_err(|reason| StoreError {
            path: self.svid.clone(),
            reason,
        })?;
        if chain.is_empty() {
            return Err(StoreError {
                path: self.svid.clone(),
                reason: "empty certificate chain".into(),
            });
        }
        Ok(Some(StoredSvid {
            chain,
            key: Zeroizing::new(key),
        }))
    }

    /// Saves the SVID and (if persisted) its key: key first, so a crash
    /// between the two never pairs a new certificate with an old key.
    pub fn save_svid(&self, chain: &[Vec<u8>], key: &[u8]) -> Result<(), StoreError> {
        if let Some(key_path) = &self.key {
            Self::write(key_path, key, 0o600)?;
            Self::write(&self.svid, &chain.concat(), 0o644)?;
        }
        Ok(())
    }

    /// Removes the stored SVID (after the server refused it for good).
    pub fn forget_svid(&self) {
        let _ = std::fs::remove_file(&self.svid);
        if let Some(k) = &self.key {
            let _ = std::fs::remove_file(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_of_interrupted_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), Some(dir.path()));
        std::fs::write(dir.path().join(".agent_svid.key.tmp4242"), b"key").unwrap();
        std::fs::write(dir.path().join(".bundle.der.tmp7"), b"b").unwrap();
        std::fs::write(dir.path().join(".workload_cache.json.tmp9"), b"c").unwrap();
        std::fs::write(dir.path().join("agent_svid.key"), b"kept").unwrap();
        let cache = dir.path().join("workload_cache.json");
        assert_eq!(store.remove_interrupted_writes(&[&cache]), 3);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("agent_svid.key")]);
    }
}
