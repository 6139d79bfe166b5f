//! Key managers hold the server's private keys (X.509 CA keys, JWT keys).
//!
//! `KeyManager "disk"` keeps them in one JSON file (`keys_path`), written
//! atomically with mode 0600, so a restart keeps the same CA and bundle.
//! `KeyManager "memory"` keeps them in memory only: a restart makes new keys.
//! Private key bytes never appear in `Debug` output, logs or errors
//! (invariant 5).

mod disk;
mod key;
mod memory;

pub use disk::DiskKeyManager;
pub use key::{KeyType, SigningKey};
pub use memory::MemoryKeyManager;

use std::sync::Arc;

/// What went wrong with a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {reason}")]
    File {
        /// The key file.
        path: std::path::PathBuf,
        /// What went wrong (never key material).
        reason: String,
    },
    /// Generating or loading a key failed.
    #[error("key {id:?}: {reason}")]
    Key {
        /// Key ID within the manager.
        id: String,
        /// What went wrong (never key material).
        reason: String,
    },
    /// The key type name is not one of ec-p256, ec-p384, rsa-2048, rsa-4096.
    #[error("unsupported key type {0:?} (supported: ec-p256, ec-p384, rsa-2048, rsa-4096)")]
    UnsupportedType(String),
}

/// The key manager seam.
pub trait KeyManager: Send + Sync + std::fmt::Debug + 'static {
    /// Generates a new key of `key_type` under `id`, replacing any key with
    /// that ID, and persists it before returning.
    fn generate_key(&self, id: &str, key_type: KeyType) -> Result<Arc<SigningKey>, KeyError>;
    /// The key stored under `id`, if any.
    fn get_key(&self, id: &str) -> Result<Option<Arc<SigningKey>>, KeyError>;
}
