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
//!
//! Each operation is written once, over a private `Authority` trait that
//! holds what differs between an X.509 CA and a JWT key (the ID, the key
//! it generates, the log line of an activation); `Authorities` only picks
//! the kind's slots.

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

/// What differs between an X.509 CA and a JWT key, so that each manual
/// operation is written once for both.
trait Authority: Sized {
    /// Its ID: the X.509 CA's subject key ID, the JWT key's `kid`.
    fn id(&self) -> &str;
    /// As the LocalAuthority API reports it.
    fn info(&self) -> AuthorityInfo;
    /// Its key manager slot.
    fn slot(&self) -> &str;
    /// Whether an operator tainted it.
    fn tainted(&self) -> bool;
    /// Marks it tainted.
    fn taint(&mut self);
    /// Drops its private key: it no longer signs.
    fn retire(&mut self);
    /// A new one in key manager slot `slot`.
    fn generate(
        config: &CaConfig,
        keys: &dyn KeyManager,
        slot: &str,
        now: SystemTime,
    ) -> Result<Self, CaError>;
    /// Logs that it became the active one.
    fn log_activated(&self);
}

impl Authority for X509Authority {
    fn id(&self) -> &str {
        &self.authority_id
    }

    fn info(&self) -> AuthorityInfo {
        AuthorityInfo {
            authority_id: self.authority_id.clone(),
            expires_at: self.not_after,
            upstream_authority_subject_key_id: self.upstream_authority_id.clone(),
            tainted: self.tainted,
        }
    }

    fn slot(&self) -> &str {
        &self.slot
    }

    fn tainted(&self) -> bool {
        self.tainted
    }

    fn taint(&mut self) {
        self.tainted = true;
    }

    fn retire(&mut self) {
        self.key = None;
    }

    fn generate(
        config: &CaConfig,
        keys: &dyn KeyManager,
        slot: &str,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        new_x509(config, keys, slot, now)
    }

    fn log_activated(&self) {
        tracing::info!(authority_id = %self.authority_id, "activated the next X.509 CA");
    }
}

impl Authority for JwtKey {
    fn id(&self) -> &str {
        &self.kid
    }

    fn info(&self) -> AuthorityInfo {
        AuthorityInfo {
            authority_id: self.kid.clone(),
            expires_at: self.not_after,
            upstream_authority_subject_key_id: String::new(),
            tainted: self.tainted,
        }
    }

    fn slot(&self) -> &str {
        &self.slot
    }

    fn tainted(&self) -> bool {
        self.tainted
    }

    fn taint(&mut self) {
        self.tainted = true;
    }

    fn retire(&mut self) {
        self.key = None;
    }

    fn generate(
        config: &CaConfig,
        keys: &dyn KeyManager,
        slot: &str,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        new_jwt(config, keys, slot, now)
    }

    fn log_activated(&self) {
        tracing::info!(kid = %self.kid, "activated the next JWT key");
    }
}

/// The state of one kind of authority.
fn state_of<A: Authority>(active: &A, prepared: Option<&A>, old: &[A]) -> AuthorityState {
    AuthorityState {
        active: active.info(),
        prepared: prepared.map(A::info),
        old: old.last().map(A::info),
    }
}

/// One kind's authorities, borrowed from [`Authorities`]: the operations,
/// written once for both kinds.
struct Slots<'a, A> {
    active: &'a mut A,
    prepared: &'a mut Option<A>,
    old: &'a mut Vec<A>,
}

impl<A: Authority> Slots<'_, A> {
    fn prepare(
        self,
        config: &CaConfig,
        keys: &dyn KeyManager,
        now: SystemTime,
    ) -> Result<AuthorityInfo, CaError> {
        let slot = other(self.active.slot());
        let next = A::generate(config, keys, slot, now)?;
        let info = next.info();
        *self.prepared = Some(next);
        Ok(info)
    }

    fn activate(mut self, id: &str) -> Result<AuthorityInfo, CaError> {
        require_id(id)?;
        let Some(prepared_id) = self.prepared.as_ref().map(|a| a.id().to_owned()) else {
            return Err(CaError::OutOfOrder("no prepared authority found".into()));
        };
        if prepared_id != id {
            return Err(CaError::InvalidAuthority(format!(
                "authority {id:?} is not the prepared authority ({prepared_id:?})"
            )));
        }
        self.activate_next();
        Ok(self.active.info())
    }

    /// Swaps the prepared authority in; false if there was none.
    fn activate_next(&mut self) -> bool {
        let Some(next) = self.prepared.take() else {
            return false;
        };
        let mut old = std::mem::replace(&mut *self.active, next);
        old.retire();
        self.active.log_activated();
        self.old.push(old);
        true
    }

    fn not_old(&self, id: &str) -> CaError {
        not_old(id, self.active.id(), self.prepared.as_ref().map(A::id))
    }

    fn taint(self, id: &str) -> Result<AuthorityInfo, CaError> {
        require_id(id)?;
        let Some(i) = self.old.iter().position(|a| a.id() == id) else {
            return Err(self.not_old(id));
        };
        let a = &mut self.old[i];
        if a.tainted() {
            return Err(CaError::OutOfOrder(format!(
                "authority {id:?} is already tainted"
            )));
        }
        a.taint();
        Ok(a.info())
    }

    fn revoke(self, id: &str) -> Result<AuthorityInfo, CaError> {
        require_id(id)?;
        let Some(i) = self.old.iter().position(|a| a.id() == id) else {
            return Err(self.not_old(id));
        };
        if !self.old[i].tainted() {
            return Err(CaError::OutOfOrder(format!(
                "authority {id:?} is not tainted; only a tainted authority can be revoked"
            )));
        }
        Ok(self.old.remove(i).info())
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
    fn x509(&mut self) -> Slots<'_, X509Authority> {
        Slots {
            active: &mut self.x509_active,
            prepared: &mut self.x509_prepared,
            old: &mut self.x509_old,
        }
    }

    fn jwt(&mut self) -> Slots<'_, JwtKey> {
        Slots {
            active: &mut self.jwt_active,
            prepared: &mut self.jwt_prepared,
            old: &mut self.jwt_old,
        }
    }

    /// The state of one kind of authority.
    pub fn state(&self, kind: AuthorityKind) -> AuthorityState {
        match kind {
            AuthorityKind::X509 => state_of(
                &self.x509_active,
                self.x509_prepared.as_ref(),
                &self.x509_old,
            ),
            AuthorityKind::Jwt => {
                state_of(&self.jwt_active, self.jwt_prepared.as_ref(), &self.jwt_old)
            }
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
            AuthorityKind::X509 => self.x509().prepare(config, keys, now),
            AuthorityKind::Jwt => self.jwt().prepare(config, keys, now),
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
        match kind {
            AuthorityKind::X509 => self.x509().activate(id),
            AuthorityKind::Jwt => self.jwt().activate(id),
        }
    }

    /// Swaps the prepared X.509 CA in; false if there was none.
    pub(super) fn activate_x509(&mut self) -> bool {
        self.x509().activate_next()
    }

    /// Swaps the prepared JWT key in; false if there was none.
    pub(super) fn activate_jwt(&mut self) -> bool {
        self.jwt().activate_next()
    }

    /// Taints the old authority `id`.
    pub fn taint(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        let tainted = match kind {
            AuthorityKind::X509 => self.x509().taint(id),
            AuthorityKind::Jwt => self.jwt().taint(id),
        }?;
        tracing::warn!(kind = ?kind, authority_id = %id, "authority tainted: SVIDs it signed are being replaced");
        Ok(tainted)
    }

    /// Removes the tainted old authority `id` from the bundle.
    pub fn revoke(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        let revoked = match kind {
            AuthorityKind::X509 => self.x509().revoke(id),
            AuthorityKind::Jwt => self.jwt().revoke(id),
        }?;
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
