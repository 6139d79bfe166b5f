//! Manual operations on the authorities (SPIRE's LocalAuthority API):
//! prepare, activate, taint and revoke, for X.509 CAs and JWT keys.
//!
//! The order is fixed: an authority is prepared (published, not used),
//! activated (signs; the previous active one becomes old), then the old one
//! may be tainted (still published, flagged so that agents replace every
//! SVID it signed at once) and finally revoked (removed from the bundle).
//! Anything out of order is refused with [`CaError::InvalidAuthority`]
//! (the request names the wrong authority) or [`CaError::OutOfOrder`] (the
//! state does not allow it). These functions only change the in-memory
//! [`Authorities`]; [`super::Ca`] persists the journal before answering.

use std::time::SystemTime;

use super::authority::{new_jwt, new_x509, other, Authorities, JwtKey, X509Authority};
use super::{CaConfig, CaError};
use crate::keymanager::KeyManager;

/// One authority as the LocalAuthority API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    /// X.509: the CA's subject key ID (lowercase hex); JWT: the `kid`.
    pub authority_id: String,
    /// When it expires.
    pub expires_at: SystemTime,
    /// X.509 with an upstream authority: subject key ID of the upstream
    /// certificate that signed it; empty otherwise.
    pub upstream_authority_subject_key_id: String,
    /// Whether an operator tainted it.
    pub tainted: bool,
}

/// The active, prepared and old authority of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityState {
    /// The one that signs now.
    pub active: AuthorityInfo,
    /// Its published successor, if one was prepared.
    pub prepared: Option<AuthorityInfo>,
    /// The most recently replaced one still in the bundle, if any.
    pub old: Option<AuthorityInfo>,
}

/// Which kind of authority an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityKind {
    /// X.509 CAs.
    X509,
    /// JWT signing keys.
    Jwt,
}

fn x509_info(a: &X509Authority) -> AuthorityInfo {
    AuthorityInfo {
        authority_id: a.authority_id.clone(),
        expires_at: a.not_after,
        upstream_authority_subject_key_id: a.upstream_authority_id.clone(),
        tainted: a.tainted,
    }
}

fn jwt_info(k: &JwtKey) -> AuthorityInfo {
    AuthorityInfo {
        authority_id: k.kid.clone(),
        expires_at: k.not_after,
        upstream_authority_subject_key_id: String::new(),
        tainted: k.tainted,
    }
}

fn require_id(id: &str) -> Result<(), CaError> {
    if id.is_empty() {
        return Err(CaError::InvalidAuthority("no authority ID provided".into()));
    }
    Ok(())
}

/// The reason an authority named for taint or revoke is not an old one.
fn not_old(id: &str, active: &str, prepared: Option<&str>) -> CaError {
    if id == active {
        CaError::InvalidAuthority(format!(
            "authority {id:?} is the active authority; only an old authority can be tainted or revoked"
        ))
    } else if prepared == Some(id) {
        CaError::InvalidAuthority(format!(
            "authority {id:?} is the prepared authority; only an old authority can be tainted or revoked"
        ))
    } else {
        CaError::InvalidAuthority(format!("no old authority found with ID {id:?}"))
    }
}

impl Authorities {
    /// The state of one kind of authority.
    pub fn state(&self, kind: AuthorityKind) -> AuthorityState {
        match kind {
            AuthorityKind::X509 => AuthorityState {
                active: x509_info(&self.x509_active),
                prepared: self.x509_prepared.as_ref().map(x509_info),
                old: self.x509_old.last().map(x509_info),
            },
            AuthorityKind::Jwt => AuthorityState {
                active: jwt_info(&self.jwt_active),
                prepared: self.jwt_prepared.as_ref().map(jwt_info),
                old: self.jwt_old.last().map(jwt_info),
            },
        }
    }

    /// Makes a new prepared authority (replacing any prepared one).
    pub fn prepare(
        &mut self,
        kind: AuthorityKind,
        config: &CaConfig,
        keys: &dyn KeyManager,
        now: SystemTime,
    ) -> Result<AuthorityInfo, CaError> {
        match kind {
            AuthorityKind::X509 => {
                let slot = other(&self.x509_active.slot);
                let next = new_x509(config, keys, slot, now)?;
                let info = x509_info(&next);
                self.x509_prepared = Some(next);
                Ok(info)
            }
            AuthorityKind::Jwt => {
                let slot = other(&self.jwt_active.slot);
                let next = new_jwt(config, keys, slot, now)?;
                let info = jwt_info(&next);
                self.jwt_prepared = Some(next);
                Ok(info)
            }
        }
    }

    /// Drops the prepared authority of `kind` (it never signed anything);
    /// false if there was none.
    pub fn withdraw_prepared(&mut self, kind: AuthorityKind) -> bool {
        let withdrawn = match kind {
            AuthorityKind::X509 => self.x509_prepared.take().is_some(),
            AuthorityKind::Jwt => self.jwt_prepared.take().is_some(),
        };
        if withdrawn {
            tracing::info!(kind = ?kind, "withdrew the prepared authority before preparing another");
        }
        withdrawn
    }

    /// Makes the prepared authority `id` the active one; the active one
    /// becomes old (kept in the bundle, no longer signing).
    pub fn activate(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        require_id(id)?;
        let prepared_id = match kind {
            AuthorityKind::X509 => self.x509_prepared.as_ref().map(|a| a.authority_id.clone()),
            AuthorityKind::Jwt => self.jwt_prepared.as_ref().map(|k| k.kid.clone()),
        };
        let Some(prepared_id) = prepared_id else {
            return Err(CaError::OutOfOrder("no prepared authority found".into()));
        };
        if prepared_id != id {
            return Err(CaError::InvalidAuthority(format!(
                "authority {id:?} is not the prepared authority ({prepared_id:?})"
            )));
        }
        match kind {
            AuthorityKind::X509 => self.activate_x509(),
            AuthorityKind::Jwt => self.activate_jwt(),
        };
        Ok(self.state(kind).active)
    }

    /// Swaps the prepared X.509 CA in; false if there was none.
    pub(super) fn activate_x509(&mut self) -> bool {
        let Some(next) = self.x509_prepared.take() else {
            return false;
        };
        let mut old = std::mem::replace(&mut self.x509_active, next);
        old.key = None;
        tracing::info!(authority_id = %self.x509_active.authority_id, "activated the next X.509 CA");
        self.x509_old.push(old);
        true
    }

    /// Swaps the prepared JWT key in; false if there was none.
    pub(super) fn activate_jwt(&mut self) -> bool {
        let Some(next) = self.jwt_prepared.take() else {
            return false;
        };
        let mut old = std::mem::replace(&mut self.jwt_active, next);
        old.key = None;
        tracing::info!(kid = %self.jwt_active.kid, "activated the next JWT key");
        self.jwt_old.push(old);
        true
    }

    /// Taints the old authority `id`.
    pub fn taint(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        require_id(id)?;
        let state = self.state(kind);
        let not_old = || {
            not_old(
                id,
                &state.active.authority_id,
                state.prepared.as_ref().map(|p| p.authority_id.as_str()),
            )
        };
        let tainted = match kind {
            AuthorityKind::X509 => {
                let a = self
                    .x509_old
                    .iter_mut()
                    .find(|a| a.authority_id == id)
                    .ok_or_else(not_old)?;
                if a.tainted {
                    return Err(CaError::OutOfOrder(format!(
                        "authority {id:?} is already tainted"
                    )));
                }
                a.tainted = true;
                x509_info(a)
            }
            AuthorityKind::Jwt => {
                let k = self
                    .jwt_old
                    .iter_mut()
                    .find(|k| k.kid == id)
                    .ok_or_else(not_old)?;
                if k.tainted {
                    return Err(CaError::OutOfOrder(format!(
                        "authority {id:?} is already tainted"
                    )));
                }
                k.tainted = true;
                jwt_info(k)
            }
        };
        tracing::warn!(kind = ?kind, authority_id = %id, "authority tainted: SVIDs it signed are being replaced");
        Ok(tainted)
    }

    /// Removes the tainted old authority `id` from the bundle.
    pub fn revoke(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        require_id(id)?;
        let state = self.state(kind);
        let not_old = || {
            not_old(
                id,
                &state.active.authority_id,
                state.prepared.as_ref().map(|p| p.authority_id.as_str()),
            )
        };
        let untainted = || {
            CaError::OutOfOrder(format!(
                "authority {id:?} is not tainted; only a tainted authority can be revoked"
            ))
        };
        let revoked = match kind {
            AuthorityKind::X509 => {
                let i = self
                    .x509_old
                    .iter()
                    .position(|a| a.authority_id == id)
                    .ok_or_else(not_old)?;
                if !self.x509_old[i].tainted {
                    return Err(untainted());
                }
                x509_info(&self.x509_old.remove(i))
            }
            AuthorityKind::Jwt => {
                let i = self
                    .jwt_old
                    .iter()
                    .position(|k| k.kid == id)
                    .ok_or_else(not_old)?;
                if !self.jwt_old[i].tainted {
                    return Err(untainted());
                }
                jwt_info(&self.jwt_old.remove(i))
            }
        };
        tracing::warn!(kind = ?kind, authority_id = %id, "authority revoked: removed from the bundle");
        Ok(revoked)
    }

    /// DER of every tainted X.509 CA still in the bundle.
    pub fn tainted_x509(&self) -> Vec<Vec<u8>> {
        self.x509_old
            .iter()
            .filter(|a| a.tainted)
            .map(|a| a.cert_der.clone())
            .collect()
    }

    /// Key IDs of every tainted JWT key still in the bundle.
    pub fn tainted_jwt(&self) -> Vec<String> {
        self.jwt_old
            .iter()
            .filter(|k| k.tainted)
            .map(|k| k.kid.clone())
            .collect()
    }
}
