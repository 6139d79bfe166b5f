//! What the agent does when its standing is in doubt while running.
//!
//! [`after_failure`] classifies a failed sync round:
//! - *banned*: the stored SVID and the workload cache are wiped, no identity
//!   is served any more, syncing stops, health turns NOT_SERVING and the
//!   agent exits (as SPIRE's does; see `run.rs`);
//! - *evicted*, *superseded or expired SVID*: a reattestable agent
//!   (`k8s_psat`) attests again by itself; a join-token agent attests with
//!   the configured token if `rebootstrap_mode` allows, or else logs that it
//!   needs a new token (evicted: it wipes its state, stops syncing and
//!   exits like a banned agent);
//! - a server whose certificate the agent's bundle does not trust: see
//!   `rebootstrap.rs` (`rebootstrap_delay`);
//! - anything else is an outage: cached SVIDs keep being served until they
//!   expire, and the sync loop backs off.
//!
//! State found unusable at start is handled in `stored.rs`.

use std::sync::Arc;

use tonic::{Code, Status};

use super::rebootstrap;
use crate::cache::Snapshot;
use crate::config::RebootstrapMode;
use crate::manager::error::{Next, Refused};
use crate::manager::state::Manager;

/// Why the server refused this agent, from its `PermissionDenied` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Banned,
    Evicted,
    StaleSvid,
}

fn refusal(status: &Status) -> Option<Refusal> {
    if status.code() != Code::PermissionDenied {
        return None;
    }
    // A Spinel server names the reason in the `spinel-agent-refusal`
    // metadata, a SPIRE server in the status details
    // (`PermissionDeniedDetails`; its message is then often only
    // "authorization denied for method ..."): trust those first.
    if let Some(reason) = spinel_proto::refusal::AgentRefusal::from_status(status) {
        use spinel_proto::refusal::AgentRefusal;
        return Some(match reason {
            AgentRefusal::Banned => Refusal::Banned,
            AgentRefusal::Evicted => Refusal::Evicted,
            AgentRefusal::Superseded | AgentRefusal::Expired => Refusal::StaleSvid,
        });
    }
    // Without either (a server older than both), the message text is all
    // there is: SPIRE's wording.
    let msg = status.message();
    if msg.contains("is banned") {
        Some(Refusal::Banned)
    } else if msg.contains("is not attested") {
        Some(Refusal::Evicted)
    } else if msg.contains("superseded") || msg.contains("expired") {
        Some(Refusal::StaleSvid)
    } else {
        None
    }
}

/// Drops every identity and the stored agent state.
fn wipe(m: &Manager) {
    m.store.forget_svid();
    if let Some(file) = &m.cache_file {
        file.remove();
    }
    if let Ok(mut jwts) = m.jwt_cache.lock() {
        jwts.clear();
    }
    m.cache().publish(|s| Snapshot {
        bundle: s.bundle.clone(),
        federated: s.federated.clone(),
        identities: Default::default(),
        generation: 0,
        // Not ready: the health service says NOT_SERVING, so `healthcheck`
        // and liveness probes see the refused agent as unhealthy.
        ready: false,
    });
}

/// Reacts to a failed sync round.
pub(crate) async fn after_failure(m: &Arc<Manager>, status: &Status) -> Next {
    if m.trust.untrusted_since().is_some() {
        return rebootstrap::untrusted(m).await;
    }
    let now = m.clock().now();
    let lapsed = m.agent_svid().not_after <= now;
    let refusal = refusal(status);
    if refusal == Some(Refusal::Banned) {
        wipe(m);
        tracing::error!(
            error = %status.message(),
            "the server says this agent is banned: its SVID and workload SVIDs were wiped and it serves no identity. \
             To readmit the node, delete the agent on the server (`spinel-server agent delete -spiffeID <agent ID>`) and attest it again"
        );
        return Next::Stop(Refused::Banned);
    }
    if refusal.is_none() && !lapsed {
        return Next::Retry;
    }
    let why = match refusal {
        Some(Refusal::Evicted) => "the server no longer knows this agent (evicted)",
        Some(_) => "the server refused the agent SVID (superseded or expired)",
        None => "the agent SVID has expired",
    };
    let config = &m.config;
    let may_attest = m.reattestable()
        || config.node_attestor.reattests()
        || (config.join_token.is_some() && config.rebootstrap_mode == RebootstrapMode::Always)
        || (config.join_token.is_some() && lapsed && config.rebootstrap_mode.allows());
    if may_attest {
        tracing::warn!(
            reason = why,
            node_attestor = config.node_attestor.name(),
            "attesting again"
        );
        match m.reattest().await {
            Ok(()) => return Next::Resync,
            Err(e) => {
                tracing::warn!(error = %e, "attesting again failed; will retry");
            }
        }
        if config.node_attestor.reattests() {
            return Next::Retry;
        }
    }
    tracing::error!(
        reason = why,
        "this join-token agent needs a new join token: generate one with `spinel-server token generate -spiffeID <agent ID>` \
         and restart the agent with -joinToken <token> (or set agent.join_token with agent.rebootstrap_mode = \"always\" to attest with it by itself)"
    );
    if refusal == Some(Refusal::Evicted) {
        wipe(m);
        return Next::Stop(Refused::Evicted);
    }
    Next::Retry
}

/// `refusal()`: the metadata first, the message text without it.
#[cfg(test)]
mod refusal_tests {
    use spinel_proto::refusal::AgentRefusal;
    use tonic::{Code, Status};

    use super::{refusal, Refusal};

    #[test]
    fn metadata_wins_over_the_text() {
        // A message that reads as "banned", metadata saying evicted.
        let status = AgentRefusal::Evicted.status("agent \"x\" is banned");
        assert_eq!(refusal(&status), Some(Refusal::Evicted));
        for (reason, expected) in [
            (AgentRefusal::Banned, Refusal::Banned),
            (AgentRefusal::Superseded, Refusal::StaleSvid),
            (AgentRefusal::Expired, Refusal::StaleSvid),
        ] {
            assert_eq!(refusal(&reason.status("refused")), Some(expected));
        }
    }

    #[test]
    fn a_spire_server_names_the_reason_in_the_details() {
        // What SPIRE 1.13's authorization layer sends a banned agent.
        let message =
            "authorization denied for method /spire.api.server.entry.v1.Entry/SyncAuthorizedEntries";
        let details = AgentRefusal::Banned.details(message);
        let status = Status::with_details(Code::PermissionDenied, message, details.into());
        assert_eq!(refusal(&status), Some(Refusal::Banned));
        assert_eq!(refusal(&Status::new(Code::PermissionDenied, message)), None);
    }

    #[test]
    fn without_metadata_the_text_decides() {
        let text = |m: &str| refusal(&Status::new(Code::PermissionDenied, m));
        assert_eq!(text("agent \"x\" is banned"), Some(Refusal::Banned));
        assert_eq!(text("agent \"x\" is not attested"), Some(Refusal::Evicted));
        assert_eq!(
            text("agent \"x\" SVID is expired"),
            Some(Refusal::StaleSvid)
        );
        assert_eq!(text("authorization denied for method /m"), None);
        assert_eq!(refusal(&Status::unavailable("agent is banned")), None);
    }
}
