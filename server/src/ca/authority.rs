//! The CA's authorities and their journal.
//!
//! At any time there is one active X.509 CA and one active JWT key, at most
//! one prepared successor of each (published in the bundle, not yet used),
//! and old ones kept in the bundle until they expire. Private keys live in
//! the key manager under two slots per kind (`x509-CA-A`/`-B`,
//! `JWT-Signer-A`/`-B`), as SPIRE does; the journal (JSON in the datastore)
//! records certificates, key IDs and which slot holds what, so a restart
//! resumes exactly where it was.
//!
//! Schedule (SPIRE's): the successor is prepared at
//! `NotAfter - min(life/2, 30d)` and activated at `NotAfter - min(life/6, 7d)`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use spinel_spiffe::bundle::JwtAuthority as BundleJwtKey;
use spinel_spiffe::clock::{from_unix_seconds, to_unix_seconds};
use spinel_spiffe::{TrustBundle, TrustDomain};

use super::{jwt, x509, CaConfig, CaError};
use crate::keymanager::{KeyManager, SigningKey};

const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// An X.509 CA certificate, with its key while it may still sign.
#[derive(Debug, Clone)]
pub struct X509Authority {
    /// Key manager slot (`A` or `B`).
    pub slot: String,
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its key (`None` for old authorities, which only verify).
    pub key: Option<Arc<SigningKey>>,
    /// NotBefore.
    pub not_before: SystemTime,
    /// NotAfter.
    pub not_after: SystemTime,
    /// The authority ID: the certificate's subject key ID, lowercase hex.
    pub authority_id: String,
    /// Tainted by an operator: SVIDs it signed must be replaced at once.
    pub tainted: bool,
    /// With an UpstreamAuthority: the certificates from the one that signed
    /// this CA up to (not including) the root; DER. Empty when self-signed.
    pub upstream_chain: Vec<Vec<u8>>,
    /// With an UpstreamAuthority: the upstream roots, which the bundle
    /// carries instead of this CA. Empty when self-signed.
    pub upstream_roots: Vec<Vec<u8>>,
    /// With an UpstreamAuthority: subject key ID (hex) of the certificate
    /// that signed this CA. Empty when self-signed.
    pub upstream_authority_id: String,
}

/// A JWT signing key.
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// Key manager slot.
    pub slot: String,
    /// The `kid`.
    pub kid: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The private key (`None` for old keys).
    pub key: Option<Arc<SigningKey>>,
    /// When it was made.
    pub not_before: SystemTime,
    /// After this no token is signed with it and it leaves the bundle.
    pub not_after: SystemTime,
    /// Tainted by an operator: JWT-SVIDs it signed must be replaced at once.
    pub tainted: bool,
}

/// Every authority the CA knows.
#[derive(Debug, Clone)]
pub struct Authorities {
    pub(super) x509_active: X509Authority,
    pub(super) x509_prepared: Option<X509Authority>,
    pub(super) x509_old: Vec<X509Authority>,
    pub(super) jwt_active: JwtKey,
    pub(super) jwt_prepared: Option<JwtKey>,
    pub(super) jwt_old: Vec<JwtKey>,
    /// What this server last put into the trust domain's stored bundle.
    pub(super) published: Published,
}

/// What one server put into the trust domain's stored bundle: its X.509
/// anchors (DER) and JWT key IDs. Kept in the journal so that an authority
/// that leaves this server's set (revoked, withdrawn, replaced) is taken
/// out of the bundle, which other servers share, even after a crash
/// between the journal write and the bundle write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// X.509 authorities (DER).
    pub x509: Vec<Vec<u8>>,
    /// JWT key IDs.
    pub jwt: Vec<String>,
}

impl Published {
    /// What `bundle` (this server's own) publishes.
    pub fn of(bundle: &TrustBundle) -> Published {
        Published {
            x509: bundle.x509_authorities.clone(),
            jwt: bundle
                .jwt_authorities
                .iter()
                .map(|k| k.key_id.clone())
                .collect(),
        }
    }

    /// What this holds and `bundle` no longer does.
    pub fn withdrawn_from(&self, bundle: &TrustBundle) -> Published {
        Published {
            x509: self
                .x509
                .iter()
                .filter(|der| !bundle.x509_authorities.contains(der))
                .cloned()
                .collect(),
            jwt: self
                .jwt
                .iter()
                .filter(|kid| !bundle.jwt_authorities.iter().any(|k| &k.key_id == *kid))
                .cloned()
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Journal {
    x509: Vec<X509Record>,
    jwt: Vec<JwtRecord>,
    #[serde(default, skip_serializing_if = "PublishedRecord::is_empty")]
    published: PublishedRecord,
}

#[derive(Serialize, Deserialize, Default)]
struct PublishedRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    x509: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    jwt: Vec<String>,
}

impl PublishedRecord {
    fn is_empty(&self) -> bool {
        self.x509.is_empty() && self.jwt.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
struct X509Record {
    status: Status,
    slot: String,
    cert: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    tainted: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    upstream_chain: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    upstream_roots: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct JwtRecord {
    status: Status,
    slot: String,
    kid: String,
    public_key: String,
    not_before: i64,
    not_after: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    tainted: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Status {
    Active,
    Prepared,
    Old,
}

fn x509_key_id(slot: &str) -> String {
    format!("x509-CA-{slot}")
}

fn jwt_key_id(slot: &str) -> String {
    format!("JWT-Signer-{slot}")
}

pub(super) fn other(slot: &str) -> &'static str {
    if slot == "A" {
        "B"
    } else {
        "A"
    }
}

fn prepare_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_after - (life / 2).min(MONTH)
}

fn activate_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_after - (life / 6).min(WEEK)
}

pub(super) fn new_x509(
    config: &CaConfig,
    keys: &dyn KeyManager,
    slot: &str,
    now: SystemTime,
) -> Result<X509Authority, CaError> {
    let key = keys.generate_key(&x509_key_id(slot), config.ca_key_type)?;
    let (cert_der, not_before, not_after) = x509::make_ca_cert(config, &key, now)?;
    let upstream = config.upstream.as_ref();
    Ok(X509Authority {
        slot: slot.to_owned(),
        authority_id: super::key_id::subject_key_id(&cert_der)?,
        cert_der,
        key: Some(key),
        not_before,
        not_after,
        tainted: false,
        upstream_chain: upstream.map(|u| u.chain().to_vec()).unwrap_or_default(),
        upstream_roots: upstream.map(|u| u.roots().to_vec()).unwrap_or_default(),
        upstream_authority_id: upstream
            .map(|u| u.authority_id().to_owned())
            .unwrap_or_default(),
    })
}

pub(super) fn new_jwt(
    config: &CaConfig,
    keys: &dyn KeyManager,
    slot: &str,
    now: SystemTime,
) -> Result<JwtKey, CaError> {
    let key = keys.generate_key(&jwt_key_id(slot), config.jwt_key_type)?;
    Ok(JwtKey {
        slot: slot.to_owned(),
        kid: jwt::new_key_id(),
        public_key: key.public_key_der().to_vec(),
        key: Some(key),
        not_before: now,
        not_after: now + config.ca_ttl,
        tainted: false,
    })
}

impl Authorities {
    /// A new CA and JWT key in slot A. Nothing is journaled yet: a crash
    /// before the journal is written makes the next start create them again
    /// (failpoints `ca:create:x509-key-stored`, `ca:create:keys-stored`).
    pub fn create(
        config: &CaConfig,
        keys: &dyn KeyManager,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let x509_active = new_x509(config, keys, "A", now)?;
        spinel_spiffe::failpoint::hit("ca:create:x509-key-stored");
        let jwt_active = new_jwt(config, keys, "A", now)?;
        spinel_spiffe::failpoint::hit("ca:create:keys-stored");
        Ok(Authorities {
            x509_active,
            x509_prepared: None,
            x509_old: Vec::new(),
            jwt_active,
            jwt_prepared: None,
            jwt_old: Vec::new(),
            published: Published::default(),
        })
    }

    /// Rebuilds the authorities from the journal and the key manager.
    pub fn load(journal: &[u8], keys: &dyn KeyManager) -> Result<Self, CaError> {
        let journal: Journal = serde_json::from_slice(journal).map_err(|e| {
            CaError::State(format!("CA journal in the datastore does not parse: {e}"))
        })?;
        let (mut x509_active, mut x509_prepared, mut x509_old) = (None, None, Vec::new());
        for rec in journal.x509 {
            let cert_der = STANDARD.decode(rec.cert.as_bytes()).map_err(|_| {
                CaError::State("CA journal holds a certificate that is not base64".into())
            })?;
            let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| {
                CaError::State(format!("CA journal holds an unreadable certificate: {e}"))
            })?;
            let not_before = from_unix_seconds(cert.validity().not_before.timestamp());
            let not_after = from_unix_seconds(cert.validity().not_after.timestamp());
            let key = if rec.status == Status::Old {
                None
            } else {
                let id = x509_key_id(&rec.slot);
                let key = keys.get_key(&id)?.ok_or_else(|| {
                    CaError::State(format!(
                        "the key manager has no key {id:?} for the CA recorded in the datastore; \
                         refusing to make a new CA silently (restore the key file, or start with a fresh data_dir)"
                    ))
                })?;
                if key.public_key_der() != cert.public_key().raw {
                    return Err(CaError::State(format!(
                        "key {id:?} in the key manager does not match the CA certificate recorded in the datastore"
                    )));
                }
                Some(key)
            };
            let decode_all = |certs: &[String]| -> Result<Vec<Vec<u8>>, CaError> {
                certs
                    .iter()
                    .map(|c| {
                        STANDARD.decode(c.as_bytes()).map_err(|_| {
                            CaError::State(
                                "CA journal holds an upstream certificate that is not base64"
                                    .into(),
                            )
                        })
                    })
                    .collect()
            };
            let upstream_chain = decode_all(&rec.upstream_chain)?;
            let upstream_authority_id = if rec.upstream_roots.is_empty() {
                String::new()
            } else {
                super::key_id::upstream_signer_id(&cert)
            };
            let auth = X509Authority {
                slot: rec.slot,
                authority_id: super::key_id::subject_key_id(&cert_der)?,
                cert_der: cert_der.clone(),
                key,
                not_before,
                not_after,
                tainted: rec.tainted,
                upstream_chain,
                upstream_roots: decode_all(&rec.upstream_roots)?,
                upstream_authority_id,
            };
            match rec.status {
                Status::Active => x509_active = Some(auth),
                Status::Prepared => x509_prepared = Some(auth),
                Status::Old => x509_old.push(auth),
            }
        }
        let (mut jwt_active, mut jwt_prepared, mut jwt_old) = (None, None, Vec::new());
        for rec in journal.jwt {
            let public_key = STANDARD.decode(rec.public_key.as_bytes()).map_err(|_| {
                CaError::State("CA journal holds a JWT key that is not base64".into())
            })?;
            let key = if rec.status == Status::Old {
                None
            } else {
                let id = jwt_key_id(&rec.slot);
                let key = keys.get_key(&id)?.ok_or_else(|| {
                    CaError::State(format!("the key manager has no key {id:?} for the JWT key recorded in the datastore"))
                })?;
                if key.public_key_der() != public_key.as_slice() {
                    return Err(CaError::State(format!(
                        "key {id:?} in the key manager does not match the JWT key recorded in the datastore"
                    )));
                }
                Some(key)
            };
            let auth = JwtKey {
                slot: rec.slot,
                kid: rec.kid,
                public_key,
                key,
                not_before: from_unix_seconds(rec.not_before),
                not_after: from_unix_seconds(rec.not_after),
                tainted: rec.tainted,
            };
            match rec.status {
                Status::Active => jwt_active = Some(auth),
                Status::Prepared => jwt_prepared = Some(auth),
                Status::Old => jwt_old.push(auth),
            }
        }
        Ok(Authorities {
            x509_active: x509_active
                .ok_or_else(|| CaError::State("CA journal has no active X.509 CA".into()))?,
            x509_prepared,
            x509_old,
            jwt_active: jwt_active
                .ok_or_else(|| CaError::State("CA journal has no active JWT key".into()))?,
            jwt_prepared,
            jwt_old,
            published: Published {
                x509: journal
                    .published
                    .x509
                    .iter()
                    .map(|c| STANDARD.decode(c.as_bytes()))
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        CaError::State(
                            "CA journal lists a published certificate that is not base64".into(),
                        )
                    })?,
                jwt: journal.published.jwt,
            },
        })
    }

    /// The journal as stored in the datastore.
    pub fn journal(&self) -> Result<Vec<u8>, CaError> {
        let x509 = |status, a: &X509Authority| X509Record {
            status,
            slot: a.slot.clone(),
            cert: STANDARD.encode(&a.cert_der),
            tainted: a.tainted,
            upstream_chain: a
                .upstream_chain
                .iter()
                .map(|c| STANDARD.encode(c))
                .collect(),
            upstream_roots: a
                .upstream_roots
                .iter()
                .map(|c| STANDARD.encode(c))
                .collect(),
        };
        let jwt = |status, k: &JwtKey| JwtRecord {
            status,
            slot: k.slot.clone(),
            kid: k.kid.clone(),
            public_key: STANDARD.encode(&k.public_key),
            not_before: to_unix_seconds(k.not_before),
            not_after: to_unix_seconds(k.not_after),
            tainted: k.tainted,
        };
        let journal = Journal {
            x509: std::iter::once(x509(Status::Active, &self.x509_active))
                .chain(self.x509_prepared.iter().map(|a| x509(Status::Prepared, a)))
                .chain(self.x509_old.iter().map(|a| x509(Status::Old, a)))
                .collect(),
            jwt: std::iter::once(jwt(Status::Active, &self.jwt_active))
                .chain(self.jwt_prepared.iter().map(|k| jwt(Status::Prepared, k)))
                .chain(self.jwt_old.iter().map(|k| jwt(Status::Old, k)))
                .collect(),
            published: PublishedRecord {
                x509: self
                    .published
                    .x509
                    .iter()
                    .map(|c| STANDARD.encode(c))
                    .collect(),
                jwt: self.published.jwt.clone(),
            },
        };
        serde_json::to_vec(&journal).map_err(|e| CaError::State(e.to_string()))
    }

    /// The active X.509 CA.
    pub fn active_x509(&self) -> &X509Authority {
        &self.x509_active
    }

    /// The active JWT key.
    pub fn active_jwt(&self) -> &JwtKey {
        &self.jwt_active
    }

    /// The bundle: every unexpired authority, active first.
    pub fn bundle(&self, td: &TrustDomain, now: SystemTime) -> TrustBundle {
        let mut bundle = TrustBundle::new(td.clone());
        // With an UpstreamAuthority the bundle holds the upstream roots, so
        // rotating the intermediate does not change the trust anchors.
        let mut x509: Vec<Vec<u8>> = Vec::new();
        for a in std::iter::once(&self.x509_active)
            .chain(self.x509_prepared.iter())
            .chain(self.x509_old.iter())
            .filter(|a| a.not_after > now)
        {
            let anchors = if a.upstream_roots.is_empty() {
                std::slice::from_ref(&a.cert_der)
            } else {
                a.upstream_roots.as_slice()
            };
            for der in anchors {
                if !x509.contains(der) {
                    x509.push(der.clone());
                }
            }
        }
        bundle.x509_authorities = x509;
        bundle.jwt_authorities = std::iter::once(&self.jwt_active)
            .chain(self.jwt_prepared.iter())
            .chain(self.jwt_old.iter())
            .filter(|k| k.not_after > now)
            .map(|k| BundleJwtKey {
                key_id: k.kid.clone(),
                public_key: k.public_key.clone(),
                expires_at: to_unix_seconds(k.not_after),
            })
            .collect();
        bundle
    }

    /// When [`Authorities::advance`] next has something to do.
    pub fn next_event(&self) -> SystemTime {
        let x = &self.x509_active;
        let j = &self.jwt_active;
        let mut times = vec![
            if self.x509_prepared.is_some() {
                activate_at(x.not_before, x.not_after)
            } else {
                prepare_at(x.not_before, x.not_after)
            },
            if self.jwt_prepared.is_some() {
                activate_at(j.not_before, j.not_after)
            } else {
                prepare_at(j.not_before, j.not_after)
            },
        ];
        times.extend(self.x509_old.iter().map(|a| a.not_after));
        times.extend(self.jwt_old.iter().map(|k| k.not_after));
        times.into_iter().min().unwrap_or(x.not_after)
    }

    /// Prepares, activates and prunes as the schedule says at `now`.
    /// Returns whether anything changed.
    pub fn advance(
        &mut self,
        config: &CaConfig,
        keys: &dyn KeyManager,
        now: SystemTime,
    ) -> Result<bool, CaError> {
        let mut changed = false;
        let before = self.x509_old.len() + self.jwt_old.len();
        self.x509_old.retain(|a| a.not_after > now);
        self.jwt_old.retain(|k| k.not_after > now);
        changed |= before != self.x509_old.len() + self.jwt_old.len();

        let x = &self.x509_active;
        if self.x509_prepared.is_none() && now >= prepare_at(x.not_before, x.not_after) {
            let slot = other(&x.slot);
            self.x509_prepared = Some(new_x509(config, keys, slot, now)?);
            tracing::info!(slot, "prepared the next X.509 CA");
            changed = true;
        }
        let x = &self.x509_active;
        if self.x509_prepared.is_some() && now >= activate_at(x.not_before, x.not_after) {
            changed |= self.activate_x509();
        }

        let j = &self.jwt_active;
        if self.jwt_prepared.is_none() && now >= prepare_at(j.not_before, j.not_after) {
            let slot = other(&j.slot);
            self.jwt_prepared = Some(new_jwt(config, keys, slot, now)?);
            tracing::info!(slot, "prepared the next JWT key");
            changed = true;
        }
        let j = &self.jwt_active;
        if self.jwt_prepared.is_some() && now >= activate_at(j.not_before, j.not_after) {
            changed |= self.activate_jwt();
        }
        Ok(changed)
    }
}
