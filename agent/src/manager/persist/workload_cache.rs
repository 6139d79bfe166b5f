//! The workload cache on disk, so a restarted agent serves what is still
//! valid before it reaches the server.
//!
//! One file, `workload_cache.json`, in the key directory of
//! `KeyManager "disk"` (with `"memory"` nothing is persisted: keys never
//! touch the disk). It holds the trust bundle, the federated bundles and
//! every cached identity (entry, X509-SVID chain, PKCS#8 key), and is
//! written atomically with mode 0600 through [`spinel_spiffe::keyfile`]
//! after every sync round that changed the cache
//! (`Manager::save_cache`). On load, SVIDs that have
//! expired are left out; a file that does not parse is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use spinel_spiffe::bundle::JwtAuthority;
use spinel_spiffe::{Selector, SpiffeId, TrustBundle, TrustDomain};
use zeroize::Zeroizing;

use super::store::StoreError;
use crate::cache::{CachedEntry, Identity, Snapshot, X509SvidMaterial};
use crate::manager::certs::validity;

/// The file name inside the key directory.
pub const FILE_NAME: &str = "workload_cache.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBundle {
    trust_domain: String,
    x509_authorities: Vec<String>,
    jwt_authorities: Vec<FileJwtKey>,
    sequence: u64,
    refresh_hint: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwtKey {
    key_id: String,
    public_key: String,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    entry_id: String,
    spiffe_id: String,
    selectors: Vec<String>,
    federates_with: Vec<String>,
    hint: String,
    revision_number: i64,
    /// Absent in files written before the agent kept the entry flags.
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    downstream: Option<bool>,
    cert_chain: Vec<String>,
    private_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    bundle: FileBundle,
    federated: Vec<FileBundle>,
    identities: Vec<FileIdentity>,
}

fn to_file_bundle(b: &TrustBundle) -> FileBundle {
    FileBundle {
        trust_domain: b.trust_domain.to_string(),
        x509_authorities: b.x509_authorities.iter().map(|d| B64.encode(d)).collect(),
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|k| FileJwtKey {
                key_id: k.key_id.clone(),
                public_key: B64.encode(&k.public_key),
                expires_at: k.expires_at,
            })
            .collect(),
        sequence: b.sequence,
        refresh_hint: b.refresh_hint,
    }
}

fn b64(text: &str, what: &str) -> Result<Vec<u8>, String> {
    B64.decode(text)
        .map_err(|_| format!("{what} is not base64"))
}

fn from_file_bundle(b: &FileBundle) -> Result<TrustBundle, String> {
    let td = spinel_spiffe::id::parse_trust_domain(&b.trust_domain)
        .map_err(|e| format!("trust domain {:?}: {e}", b.trust_domain))?;
    let mut bundle = TrustBundle::new(td);
    bundle.x509_authorities = b
        .x509_authorities
        .iter()
        .map(|a| b64(a, "an X.509 authority"))
        .collect::<Result<_, _>>()?;
    bundle.jwt_authorities = b
        .jwt_authorities
        .iter()
        .map(|k| {
            Ok(JwtAuthority {
                key_id: k.key_id.clone(),
                public_key: b64(&k.public_key, "a JWT authority")?,
                expires_at: k.expires_at,
            })
        })
        .collect::<Result<_, String>>()?;
    bundle.sequence = b.sequence;
    bundle.refresh_hint = b.refresh_hint;
    Ok(bundle)
}

fn from_file_identity(i: &FileIdentity) -> Result<Identity, String> {
    let bad = |what: String| format!("identity of entry {:?}: {what}", i.entry_id);
    let spiffe_id = SpiffeId::new(i.spiffe_id.clone()).map_err(|e| bad(e.to_string()))?;
    let selectors = i
        .selectors
        .iter()
        .map(|s| Selector::parse(s).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let federates_with = i
        .federates_with
        .iter()
        .map(|td| spinel_spiffe::id::parse_trust_domain(td).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let chain = i
        .cert_chain
        .iter()
        .map(|c| b64(c, "a certificate").map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let (not_before, not_after) = chain
        .first()
        .and_then(|c| validity(c))
        .ok_or_else(|| bad("the leaf certificate does not parse".into()))?;
    let private_key = Zeroizing::new(b64(&i.private_key, "the private key").map_err(bad)?);
    // A file from before the flags were kept: the entry counts as admin
    // and downstream (withheld from delegates) and its revision as
    // unknown, so the next sync downloads it again with its flags.
    let (admin, downstream, revision_number) = match (i.admin, i.downstream) {
        (Some(admin), Some(downstream)) => (admin, downstream, i.revision_number),
        _ => (true, true, -1),
    };
    Ok(Identity {
        entry: CachedEntry {
            id: i.entry_id.clone(),
            spiffe_id,
            selectors,
            federates_with,
            hint: i.hint.clone(),
            revision_number,
            admin,
            downstream,
        },
        svid: X509SvidMaterial {
            chain,
            private_key,
            not_before,
            not_after,
        },
    })
}

/// What was loaded from disk.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The agent's trust domain bundle.
    pub bundle: TrustBundle,
    /// Federated bundles.
    pub federated: BTreeMap<TrustDomain, TrustBundle>,
    /// Unexpired identities by entry ID.
    pub identities: BTreeMap<String, Arc<Identity>>,
    /// How many stored SVIDs had expired and were left out.
    pub expired: usize,
}

/// The workload cache file of a key directory.
#[derive(Debug, Clone)]
pub(crate) struct CacheFile {
    path: PathBuf,
}

impl CacheFile {
    /// The file in `key_dir`.
    pub fn new(key_dir: &Path) -> Self {
        CacheFile {
            path: key_dir.join(FILE_NAME),
        }
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: String) -> StoreError {
        StoreError {
            path: self.path.clone(),
            reason,
        }
    }

    /// Writes `snapshot` (atomically, mode 0600).
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let file = FileCache {
            bundle: to_file_bundle(&snapshot.bundle),
            federated: snapshot.federated.values().map(to_file_bundle).collect(),
            identities: snapshot
                .identities
                .values()
                .map(|i| FileIdentity {
                    entry_id: i.entry.id.clone(),
                    spiffe_id: i.entry.spiffe_id.to_string(),
                    selectors: i.entry.selectors.iter().map(|s| s.to_string()).collect(),
                    federates_with: i
                        .entry
                        .federates_with
                        .iter()
                        .map(|t| t.to_string())
                        .collect(),
                    hint: i.entry.hint.clone(),
                    revision_number: i.entry.revision_number,
                    admin: Some(i.entry.admin),
                    downstream: Some(i.entry.downstream),
                    cert_chain: i.svid.chain.iter().map(|c| B64.encode(c)).collect(),
                    private_key: B64.encode(&*i.svid.private_key),
                })
                .collect(),
        };
        let text = Zeroizing::new(
            serde_json::to_vec(&file).map_err(|e| self.error(format!("cannot encode: {e}")))?,
        );
        spinel_spiffe::keyfile::write_atomic(&self.path, &text, 0o600)
            .map_err(|e| self.error(e.source.to_string()))
    }

    /// Reads the file: `None` when there is none; an error naming the file
    /// when it does not parse. Expired SVIDs are left out.
    pub fn load(&self, now: SystemTime) -> Result<Option<Loaded>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e.to_string())),
        };
        let file: FileCache = serde_json::from_slice(&bytes).map_err(|e| {
            self.error(format!(
                "not a Spinel workload cache (truncated or corrupt?): {e}"
            ))
        })?;
        let bundle = from_file_bundle(&file.bundle).map_err(|e| self.error(e))?;
        let mut federated = BTreeMap::new();
        for b in &file.federated {
            let b = from_file_bundle(b).map_err(|e| self.error(e))?;
            federated.insert(b.trust_domain.clone(), b);
        }
        let mut identities = BTreeMap::new();
        let mut expired = 0;
        for i in &file.identities {
            let identity = from_file_identity(i).map_err(|e| self.error(e))?;
            if identity.svid.not_after > now {
                identities.insert(identity.entry.id.clone(), Arc::new(identity));
            } else {
                expired += 1;
            }
        }
        Ok(Some(Loaded {
            bundle,
            federated,
            identities,
            expired,
        }))
    }

    /// Removes the file (the agent was banned, or is rebootstrapping).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    fn snapshot() -> Snapshot {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["web".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let (not_before, not_after) = validity(&der).unwrap();
        let td = spinel_spiffe::id::parse_trust_domain("example.org").unwrap();
        let mut bundle = TrustBundle::new(td.clone());
        bundle.x509_authorities = vec![der.clone()];
        let entry = CachedEntry {
            id: "e1".into(),
            spiffe_id: SpiffeId::new("spiffe://example.org/web").unwrap(),
            selectors: vec![Selector::parse("unix:uid:1000").unwrap()],
            federates_with: vec![],
            hint: "h".into(),
            revision_number: 3,
            admin: false,
            downstream: false,
        };
        let identity = Identity {
            entry,
            svid: X509SvidMaterial {
                chain: vec![der],
                private_key: Zeroizing::new(key.serialize_der()),
                not_before,
                not_after,
            },
        };
        Snapshot {
            bundle,
            federated: BTreeMap::new(),
            identities: [("e1".to_owned(), Arc::new(identity))].into(),
            generation: 1,
            ready: true,
        }
    }

    #[test]
    fn round_trip_0600_and_expired_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = CacheFile::new(dir.path());
        assert!(file.load(UNIX_EPOCH).unwrap().is_none());
        let snap = snapshot();
        file.save(&snap).unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let now = snap.identities["e1"].svid.not_before + Duration::from_secs(1);
        let loaded = file.load(now).unwrap().unwrap();
        let back = &loaded.identities["e1"];
        assert_eq!(back.entry, snap.identities["e1"].entry);
        assert_eq!(back.svid.chain, snap.identities["e1"].svid.chain);
        assert_eq!(
            *back.svid.private_key,
            *snap.identities["e1"].svid.private_key
        );
        assert_eq!(loaded.bundle.x509_authorities, snap.bundle.x509_authorities);
        let later = snap.identities["e1"].svid.not_after + Duration::from_secs(1);
        let loaded = file.load(later).unwrap().unwrap();
        assert!(loaded.identities.is_empty());
        assert_eq!(loaded.expired, 1);
    }

    /// A file written before the entry flags were kept: its entries are
    /// withheld from delegates and downloaded again at the next sync.
    #[test]
    fn a_file_without_entry_flags_is_treated_as_restricted_and_stale() {
        let dir = tempfile::tempdir().unwrap();
        let file = CacheFile::new(dir.path());
        let snap = snapshot();
        file.save(&snap).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        let identity = json["identities"][0].as_object_mut().unwrap();
        identity.remove("admin");
        identity.remove("downstream");
        std::fs::write(file.path(), serde_json::to_vec(&json).unwrap()).unwrap();
        let now = snap.identities["e1"].svid.not_before + Duration::from_secs(1);
        let loaded = file.load(now).unwrap().unwrap();
        let entry = &loaded.identities["e1"].entry;
        assert!(entry.admin && entry.downstream);
        assert_eq!(entry.revision_number, -1);
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = CacheFile::new(dir.path());
        file.save(&snapshot()).unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        std::fs::write(file.path(), &bytes[..bytes.len() / 2]).unwrap();
        let err = file.load(UNIX_EPOCH).unwrap_err().to_string();
        assert!(
            err.contains(FILE_NAME) && err.contains("truncated"),
            "{err}"
        );
    }
}
