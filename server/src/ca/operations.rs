//! The CA's manual authority operations (what the LocalAuthority API
//! calls), and the one path every change of the authorities takes.
//!
//! A change is made on a copy of the authorities, the copy's journal is
//! written to the datastore, and only then does the copy become the state
//! that signs and the bundle is published (invariant 6: nothing is
//! acknowledged before it is durable). Changes are serialised, so the
//! automatic rotation and operators never interleave. Each journal write is
//! followed by a failpoint `ca:<operation>:journal-written` (see
//! [`spinel_spiffe::failpoint`]), where kill -9 tests stop the server.

use spinel_spiffe::failpoint;

use super::{Authorities, AuthorityInfo, AuthorityKind, AuthorityState, Ca, CaConfig, CaError};
use crate::keymanager::KeyManager;

impl Ca {
    /// Applies `f` to a copy of the authorities; when it reports a change,
    /// journals the copy, installs it and publishes the bundle. The
    /// failpoint `journaled` is hit between the journal and the install.
    pub(super) async fn change<T>(
        &self,
        journaled: &'static str,
        f: impl FnOnce(&mut Authorities, &CaConfig, &dyn KeyManager) -> Result<(T, bool), CaError>,
    ) -> Result<T, CaError> {
        let held = self.changes.lock().await;
        self.change_held(&held, journaled, f).await
    }

    /// [`Ca::change`] for a caller that already holds the change lock (and
    /// proves it with the guard), to make several journaled steps one change.
    async fn change_held<T>(
        &self,
        _held: &tokio::sync::MutexGuard<'_, ()>,
        journaled: &'static str,
        f: impl FnOnce(&mut Authorities, &CaConfig, &dyn KeyManager) -> Result<(T, bool), CaError>,
    ) -> Result<T, CaError> {
        let mut next = self.read()?.clone();
        let active = (
            next.active_x509().authority_id.clone(),
            next.active_jwt().kid.clone(),
        );
        let (out, changed) = f(&mut next, &self.config, self.keys.as_ref())?;
        if changed {
            self.datastore
                .set_ca_journal(&self.config.server_id, next.journal()?)
                .await?;
            failpoint::hit(journaled);
            let metrics = crate::metrics::metrics();
            if active.0 != next.active_x509().authority_id {
                metrics.x509_ca_activations.inc();
            }
            if active.1 != next.active_jwt().kid {
                metrics.jwt_key_activations.inc();
            }
            *self
                .state
                .write()
                .map_err(|_| CaError::State("CA state lock poisoned".into()))? = next;
            self.drop_signer();
            self.publish_bundle().await?;
        }
        Ok(out)
    }

    /// The active, prepared and old authority of `kind`.
    pub fn authority_state(&self, kind: AuthorityKind) -> Result<AuthorityState, CaError> {
        Ok(self.read()?.state(kind))
    }

    /// Makes and publishes a new prepared authority of `kind` (replacing a
    /// prepared one that was never activated).
    ///
    /// The new key goes into the slot the prepared one occupies, so a
    /// prepared authority is first withdrawn and that journaled: a crash
    /// after the new key is stored must not leave a journal naming a
    /// prepared authority whose key was overwritten (the server would
    /// refuse to start). Steps, each a failpoint: `ca:prepare:previous-withdrawn`
    /// (only when one was prepared), `ca:prepare:key-stored` (new key in
    /// the key manager, journal not written), `ca:prepare:journal-written`
    /// (bundle not yet published).
    pub async fn prepare_authority(&self, kind: AuthorityKind) -> Result<AuthorityInfo, CaError> {
        let held = self.changes.lock().await;
        if self.read()?.state(kind).prepared.is_some() {
            self.change_held(&held, "ca:prepare:previous-withdrawn", |next, _, _| {
                Ok(((), next.withdraw_prepared(kind)))
            })
            .await?;
        }
        let now = self.clock.now();
        let info = self
            .change_held(&held, "ca:prepare:journal-written", |next, config, keys| {
                let info = next.prepare(kind, config, keys, now)?;
                failpoint::hit("ca:prepare:key-stored");
                Ok((info, true))
            })
            .await?;
        tracing::info!(kind = ?kind, authority_id = %info.authority_id, "prepared authority on request");
        Ok(info)
    }

    /// Activates the prepared authority `id`; the active one becomes old.
    pub async fn activate_authority(
        &self,
        kind: AuthorityKind,
        id: &str,
    ) -> Result<AuthorityInfo, CaError> {
        self.change("ca:activate:journal-written", |next, _, _| {
            Ok((next.activate(kind, id)?, true))
        })
        .await
    }

    /// Taints the old authority `id`: it stays in the bundle, flagged, and
    /// agents replace every SVID it signed.
    pub async fn taint_authority(
        &self,
        kind: AuthorityKind,
        id: &str,
    ) -> Result<AuthorityInfo, CaError> {
        if kind == AuthorityKind::X509 && self.config.upstream.is_some() {
            return Err(CaError::OutOfOrder(
                "local X.509 authorities cannot be tainted while an UpstreamAuthority is configured: the bundle holds the upstream roots, not them"
                    .into(),
            ));
        }
        self.change("ca:taint:journal-written", |next, _, _| {
            Ok((next.taint(kind, id)?, true))
        })
        .await
    }

    /// Removes the tainted old authority `id` from the bundle.
    pub async fn revoke_authority(
        &self,
        kind: AuthorityKind,
        id: &str,
    ) -> Result<AuthorityInfo, CaError> {
        self.change("ca:revoke:journal-written", |next, _, _| {
            Ok((next.revoke(kind, id)?, true))
        })
        .await
    }

    /// DER of the tainted X.509 CAs still in the bundle.
    pub fn tainted_x509_authorities(&self) -> Vec<Vec<u8>> {
        self.read().map(|s| s.tainted_x509()).unwrap_or_default()
    }

    /// Key IDs of the tainted JWT keys still in the bundle.
    pub fn tainted_jwt_authorities(&self) -> Vec<String> {
        self.read().map(|s| s.tainted_jwt()).unwrap_or_default()
    }
}
