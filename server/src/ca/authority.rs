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
}

/// Every authority the CA knows.
#[derive(Debug, Clone)]
pub struct Authorities {
    x509_active: X509Authority,
    x509_prepared: Option<X509Authority>,
    x509_old: Vec<X509Authority>,
    jwt_active: JwtKey,
    jwt_prepared: Option<JwtKey>,
    jwt_old: Vec<JwtKey>,
}

#[derive(Serialize, Deserialize)]
struct Journal {
    x509: Vec<X509Record>,
    jwt: Vec<JwtRecord>,
}

#[derive(Serialize, Deserialize)]
struct X509Record {
    status: Status,
    slot: String,
    cert: String,
}

#[derive(Serialize, Deserialize)]
struct JwtRecord {
    status: Status,
    slot: String,
    kid: String,
    public_key: String,
    not_before: i64,
    not_after: i64,
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

fn other(slot: &str) -> &'static str {
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

fn new_x509(
    config: &CaConfig,
    keys: &dyn KeyManager,
    slot: &str,
    now: SystemTime,
) -> Result<X509Authority, CaError> {
    let key = keys.generate_key(&x509_key_id(slot), config.ca_key_type)?;
    let (cert_der, not_before, not_after) = x509::make_ca_cert(config, &key, now)?;
    Ok(X509Authority {
        slot: slot.to_owned(),
        cert_der,
        key: Some(key),
        not_before,
        not_after,
    })
}

fn new_jwt(
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
    })
}

impl Authorities {
    /// A new CA and JWT key in slot A.
    pub fn create(
        config: &CaConfig,
        keys: &dyn KeyManager,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        Ok(Authorities {
            x509_active: new_x509(config, keys, "A", now)?,
            x509_prepared: None,
            x509_old: Vec::new(),
            jwt_active: new_jwt(config, keys, "A", now)?,
            jwt_prepared: None,
            jwt_old: Vec::new(),
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
            let auth = X509Authority {
                slot: rec.slot,
                cert_der: cert_der.clone(),
                key,
                not_before,
                not_after,
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
        })
    }

    /// The journal as stored in the datastore.
    pub fn journal(&self) -> Result<Vec<u8>, CaError> {
        let x509 = |status, a: &X509Authority| X509Record {
            status,
            slot: a.slot.clone(),
            cert: STANDARD.encode(&a.cert_der),
        };
        let jwt = |status, k: &JwtKey| JwtRecord {
            status,
            slot: k.slot.clone(),
            kid: k.kid.clone(),
            public_key: STANDARD.encode(&k.public_key),
            not_before: to_unix_seconds(k.not_before),
            not_after: to_unix_seconds(k.not_after),
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
        bundle.x509_authorities = std::iter::once(&self.x509_active)
            .chain(self.x509_prepared.iter())
            .chain(self.x509_old.iter())
            .filter(|a| a.not_after > now)
            .map(|a| a.cert_der.clone())
            .collect();
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
            if let Some(next) = self.x509_prepared.take() {
                let mut old = std::mem::replace(&mut self.x509_active, next);
                old.key = None;
                tracing::info!(slot = %self.x509_active.slot, "activated the next X.509 CA");
                self.x509_old.push(old);
                changed = true;
            }
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
            if let Some(next) = self.jwt_prepared.take() {
                let mut old = std::mem::replace(&mut self.jwt_active, next);
                old.key = None;
                tracing::info!(kid = %self.jwt_active.kid, "activated the next JWT key");
                self.jwt_old.push(old);
                changed = true;
            }
        }
        Ok(changed)
    }
}
