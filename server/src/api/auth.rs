//! Who may call what: one table ([`policy`], in `policy.rs`) and one check
//! ([`super::ApiState::authorize`]) every handler calls first.
//!
//! Callers, as SPIRE distinguishes them:
//! - **local**: a process on the admin Unix socket; an admin;
//! - **agent**: an mTLS client whose SVID chains to our bundle (as it is at
//!   the time of the request, not only at the handshake), whose ID is
//!   an agent ID of an attested, unbanned agent, and whose certificate is
//!   the agent's current one (or the renewed one, which then becomes
//!   current; the older one is refused from then on), unexpired;
//! - **admin**: an mTLS client whose SVID chains to our bundle (likewise)
//!   and whose ID is in `admin_ids` or is the SPIFFE ID of an entry marked
//!   `admin`;
//! - **anyone**: no checks (attestation, fetching the bundle);
//! - **agent or admin**: `GetFederatedBundle`, which agents call on every
//!   sync for the trust domains their entries federate with.
//!
//! Refusals are `PermissionDenied`, logged at info with the caller and the
//! method (never a token or key). Refusals of an agent's standing also name
//! their reason in the status metadata ([`AgentRefusal`], key
//! `spinel-agent-refusal`) and, as SPIRE does, in the status details
//! (`PermissionDeniedDetails`, which SPIRE's agent acts on), beside
//! SPIRE's message text:
//!
//! | message | reason |
//! | --- | --- |
//! | `agent "<id>" SVID is expired` | `expired` |
//! | `agent "<id>" is not attested` (evicted, deleted) | `evicted` |
//! | `agent "<id>" is banned` | `banned` |
//! | `agent "<id>" expected to have serial number ...` | `superseded` |
//!
//! Open `WatchChanges` streams are checked again with
//! [`ApiState::authorize_peer`] whenever the change marks move, so a ban or
//! an eviction also ends them (see `watch.rs`).

use std::collections::BTreeSet;

use spinel_proto::refusal::AgentRefusal;
use spinel_spiffe::{id, SpiffeId};
use tonic::Extensions;
use x509_parser::prelude::parse_x509_certificate;

use super::error::{ApiError, ApiResult};
pub use super::policy::{method, policy, Policy};
use super::transport::PeerInfo;
use super::ApiState;
use crate::datastore::{AttestedAgent, DataStoreError, EntryFilter, Result as DataStoreResult};

/// The authenticated caller of a method.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin Unix socket.
    Local,
    /// An attested agent.
    Agent {
        /// Its SPIFFE ID.
        id: SpiffeId,
        /// Its record, as of this call.
        agent: AttestedAgent,
    },
    /// An mTLS admin.
    Admin {
        /// Its SPIFFE ID.
        id: SpiffeId,
    },
    /// Not authenticated (only on [`Policy::Anyone`] methods).
    Anonymous,
}

/// The X509-SVID an mTLS client presented.
#[derive(Debug, Clone)]
struct PeerSvid {
    id: SpiffeId,
    serial: String,
    not_after: i64,
}

fn peer_svid(leaf: &[u8]) -> Result<PeerSvid, String> {
    let (_, cert) =
        parse_x509_certificate(leaf).map_err(|e| format!("unparseable certificate: {e}"))?;
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                uris.push((*uri).to_owned());
            }
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(format!("certificate has {} URI SANs, not 1", uris.len()));
    };
    let id =
        id::parse_id(uri).map_err(|e| format!("certificate URI SAN is not a SPIFFE ID: {e}"))?;
    Ok(PeerSvid {
        id,
        serial: cert.tbs_certificate.serial.to_str_radix(10),
        not_after: cert.validity().not_after.timestamp(),
    })
}

impl ApiState {
    /// Authorizes the caller of `method` (a full gRPC path) by the
    /// [`policy`] table; call first in every handler.
    pub async fn authorize(
        &self,
        extensions: &Extensions,
        method: &'static str,
    ) -> ApiResult<Caller> {
        self.authorize_peer(extensions.get::<PeerInfo>(), method)
            .await
    }

    /// [`ApiState::authorize`] for a connection's `peer` (kept by a
    /// long-lived stream to check its caller again later).
    pub async fn authorize_peer(
        &self,
        peer: Option<&PeerInfo>,
        method: &'static str,
    ) -> ApiResult<Caller> {
        self.check(peer, method).await.map_err(|e| {
            if e.code == tonic::Code::PermissionDenied {
                tracing::info!(caller = %describe(peer), method, reason = %e.message, "permission denied");
                e.logged()
            } else {
                e
            }
        })
    }

    async fn check(&self, peer: Option<&PeerInfo>, method: &'static str) -> ApiResult<Caller> {
        let policy = policy(method);
        let chain = match peer {
            Some(PeerInfo::Local { .. }) => {
                return match policy {
                    Policy::Agent => Err(denied(method)),
                    _ => Ok(Caller::Local),
                };
            }
            Some(PeerInfo::Tcp { chain, .. }) => chain.as_ref(),
            None => None,
        };
        match policy {
            Policy::Anyone => return Ok(Caller::Anonymous),
            Policy::Local => return Err(denied(method)),
            Policy::Agent | Policy::Admin | Policy::AgentOrAdmin => {}
        }
        let (Some(chain), Some(leaf)) = (chain, chain.and_then(|c| c.first())) else {
            return Err(denied(method));
        };
        let svid = peer_svid(leaf).map_err(|_| denied(method))?;
        // The handshake verified the chain against the bundle of its time;
        // the request is judged by the bundle of now (invariant 9).
        if !chain.trusted() {
            return Err(ApiError::denied(format!(
                "the certificate of \"{}\" does not chain to the current trust bundle",
                svid.id
            )));
        }
        if svid.not_after < self.clock.unix_seconds() {
            let agent = svid.id.is_member_of(&self.trust_domain) && id::is_agent(&svid.id);
            let who = if policy == Policy::Agent {
                "agent "
            } else {
                ""
            };
            let message = format!("{who}\"{}\" SVID is expired", svid.id);
            return Err(if agent {
                ApiError::refused(AgentRefusal::Expired, message)
            } else {
                ApiError::denied(message)
            });
        }
        match policy {
            Policy::Agent => self.check_agent(svid, method).await,
            Policy::AgentOrAdmin
                if svid.id.is_member_of(&self.trust_domain) && id::is_agent(&svid.id) =>
            {
                self.check_agent(svid, method).await
            }
            _ => self.check_admin(svid, method).await,
        }
    }

    async fn check_agent(&self, svid: PeerSvid, method: &'static str) -> ApiResult<Caller> {
        if !svid.id.is_member_of(&self.trust_domain) || !id::is_agent(&svid.id) {
            return Err(denied(method));
        }
        let key = svid.id.to_string();
        let agent = self.agent_record(&key).await?.ok_or_else(|| {
            ApiError::refused(
                AgentRefusal::Evicted,
                format!("agent \"{key}\" is not attested"),
            )
        })?;
        if agent.banned {
            return Err(ApiError::refused(
                AgentRefusal::Banned,
                format!("agent \"{key}\" is banned"),
            ));
        }
        if agent.cert_serial_number == svid.serial {
            return Ok(Caller::Agent { id: svid.id, agent });
        }
        if !agent.new_cert_serial_number.is_empty() && agent.new_cert_serial_number == svid.serial {
            // The agent switched to its renewed SVID: that one is current
            // now, and the previous one is superseded.
            let mut promoted = agent;
            promoted.cert_serial_number = std::mem::take(&mut promoted.new_cert_serial_number);
            promoted.cert_not_after = std::mem::take(&mut promoted.new_cert_not_after);
            self.update_agent(promoted.clone())
                .await
                .map_err(|e| ApiError::internal("unable to activate the new agent SVID", e))?;
            return Ok(Caller::Agent {
                id: svid.id,
                agent: promoted,
            });
        }
        Err(ApiError::refused(AgentRefusal::Superseded, format!(
            "agent \"{key}\" expected to have serial number \"{}\"; has \"{}\" (superseded or unknown SVID)",
            agent.cert_serial_number, svid.serial
        )))
    }

    /// The agent's record (`agents.rs`: from memory while current; while
    /// the database cannot be reached, the one last read). An agent never
    /// read before is refused with `UNAVAILABLE` then.
    async fn agent_record(&self, key: &str) -> ApiResult<Option<AttestedAgent>> {
        self.agents
            .get(self.datastore.as_ref(), key)
            .await
            .map_err(|e| match e {
                DataStoreError::Unavailable(_) => {
                    ApiError::datastore("unable to look up agent information", e)
                }
                e => ApiError::internal("unable to look up agent information", e),
            })
    }

    /// Stores a newly attested agent; agent writes go through these three
    /// so that the agent record cache reads the record again.
    pub(super) async fn create_agent(&self, agent: AttestedAgent) -> DataStoreResult<()> {
        let id = agent.spiffe_id.clone();
        let done = self.datastore.create_agent(agent).await;
        self.agents.written(&id);
        done
    }

    /// Replaces a stored agent (see [`ApiState::create_agent`]).
    pub(super) async fn update_agent(&self, agent: AttestedAgent) -> DataStoreResult<()> {
        let id = agent.spiffe_id.clone();
        let done = self.datastore.update_agent(agent).await;
        self.agents.written(&id);
        done
    }

    /// Deletes a stored agent (see [`ApiState::create_agent`]).
    pub(super) async fn delete_agent(&self, spiffe_id: &str) -> DataStoreResult<AttestedAgent> {
        let done = self.datastore.delete_agent(spiffe_id).await;
        self.agents.written(spiffe_id);
        done
    }

    async fn check_admin(&self, svid: PeerSvid, method: &'static str) -> ApiResult<Caller> {
        let key = svid.id.to_string();
        if self.admin_ids.contains(&key) {
            return Ok(Caller::Admin { id: svid.id });
        }
        let filter = EntryFilter {
            spiffe_id: Some(key),
            ..Default::default()
        };
        let entries = self
            .datastore
            .list_entries(&filter)
            .await
            .map_err(|e| ApiError::internal("failed to fetch caller entries", e))?;
        if entries.iter().any(|e| e.admin) {
            return Ok(Caller::Admin { id: svid.id });
        }
        Err(denied(method))
    }
}

fn denied(method: &str) -> ApiError {
    ApiError::denied(format!("authorization denied for method {method}"))
}

fn describe(peer: Option<&PeerInfo>) -> String {
    match peer {
        Some(PeerInfo::Local { uid: Some(uid) }) => format!("local uid {uid}"),
        Some(PeerInfo::Local { uid: None }) => "local".into(),
        Some(PeerInfo::Tcp { remote, chain }) => {
            let who = chain
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|leaf| peer_svid(leaf).ok())
                .map(|s| s.id.to_string())
                .unwrap_or_else(|| "anonymous".into());
            match remote {
                Some(addr) => format!("{who} from {addr}"),
                None => who,
            }
        }
        None => "unknown transport".into(),
    }
}

/// The admin IDs from the config, as strings for lookups.
pub fn admin_id_set(ids: &[SpiffeId]) -> BTreeSet<String> {
    ids.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        use method::*;
        assert_eq!(policy(LIST_ENTRIES), Policy::Admin);
        assert_eq!(policy(CREATE_JOIN_TOKEN), Policy::Admin);
        assert_eq!(policy(GET_AUTHORIZED_ENTRIES), Policy::Agent);
        assert_eq!(
            policy("/spire.api.server.agent.v1.Agent/AttestAgent"),
            Policy::Anyone
        );
        assert_eq!(
            policy("/spire.api.server.bundle.v1.Bundle/GetBundle"),
            Policy::Anyone
        );
        assert_eq!(
            policy("/spire.api.server.svid.v1.SVID/BatchNewX509SVID"),
            Policy::Agent
        );
        assert_eq!(
            policy("/spire.api.server.entry.v1.Entry/ListEntries"),
            Policy::Admin
        );
        assert_eq!(
            policy("/spire.api.server.svid.v1.SVID/MintX509SVID"),
            Policy::Admin
        );
        assert_eq!(policy("/grpc.health.v1.Health/Check"), Policy::Local);
        assert_eq!(policy(GET_FEDERATED_BUNDLE), Policy::AgentOrAdmin);
        assert_eq!(policy("/something/Else"), Policy::Admin);
    }
}

#[cfg(test)]
mod bundle_tests;
