//! Why the server refused an agent, in machine-readable form.
//!
//! The server refuses an agent's call with `PermissionDenied` and SPIRE's
//! message text (`agent "<id>" is banned`, `... is not attested`, ...).
//! Text is for people; so that an agent need not parse it, every such
//! refusal also carries the ASCII metadata entry
//! [`AGENT_REFUSAL_KEY`] (`spinel-agent-refusal`) with one of the values of
//! [`AgentRefusal::as_str`]. It travels in the response trailers (or the
//! trailers-only response), next to `grpc-status`.
//!
//! This is Spinel's own addition: a SPIRE server sends no such entry, so a
//! client must fall back to the message text when it is absent.
//!
//! ```
//! use spinel_proto::refusal::AgentRefusal;
//!
//! let status = AgentRefusal::Banned.status("agent \"spiffe://example.org/spire/agent/x\" is banned");
//! assert_eq!(status.code(), tonic::Code::PermissionDenied);
//! assert_eq!(AgentRefusal::from_status(&status), Some(AgentRefusal::Banned));
//! ```

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The metadata key (ASCII) naming why an agent was refused.
pub const AGENT_REFUSAL_KEY: &str = "spinel-agent-refusal";

/// Why the server refused an agent's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentRefusal {
    /// The agent is banned: it may neither call nor attest again until an
    /// admin deletes it.
    Banned,
    /// The server has no record of the agent (evicted or deleted, or never
    /// attested): it must attest again.
    Evicted,
    /// The presented SVID is not the agent's current one (a renewed SVID
    /// replaced it, or a re-attestation did).
    Superseded,
    /// The presented SVID has expired.
    Expired,
}

impl AgentRefusal {
    /// Every reason, in declaration order.
    pub const ALL: [AgentRefusal; 4] = [
        AgentRefusal::Banned,
        AgentRefusal::Evicted,
        AgentRefusal::Superseded,
        AgentRefusal::Expired,
    ];

    /// The metadata value: `banned`, `evicted`, `superseded` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRefusal::Banned => "banned",
            AgentRefusal::Evicted => "evicted",
            AgentRefusal::Superseded => "superseded",
            AgentRefusal::Expired => "expired",
        }
    }

    /// The reason a metadata value names, if it is one of ours.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// The reason carried by `status`: only a `PermissionDenied` status
    /// with a known [`AGENT_REFUSAL_KEY`] value has one.
    pub fn from_status(status: &Status) -> Option<Self> {
        if status.code() != Code::PermissionDenied {
            return None;
        }
        let value = status.metadata().get(AGENT_REFUSAL_KEY)?;
        Self::parse(value.to_str().ok()?)
    }

    /// Adds the reason to `status`'s metadata (replacing any earlier one).
    pub fn attach(self, status: &mut Status) {
        status
            .metadata_mut()
            .insert(AGENT_REFUSAL_KEY, MetadataValue::from_static(self.as_str()));
    }

    /// A `PermissionDenied` status with `message`, carrying the reason.
    pub fn status(self, message: impl Into<String>) -> Status {
        let mut status = Status::new(Code::PermissionDenied, message);
        self.attach(&mut status);
        status
    }
}

impl std::fmt::Display for AgentRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_a_status() {
        for reason in AgentRefusal::ALL {
            let status = reason.status("refused");
            assert_eq!(
                status.metadata().get(AGENT_REFUSAL_KEY).unwrap(),
                reason.as_str()
            );
            assert_eq!(AgentRefusal::from_status(&status), Some(reason));
            assert_eq!(AgentRefusal::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn round_trips_through_http_headers() {
        // What the client sees is rebuilt from the trailers.
        let status = AgentRefusal::Superseded.status("agent \"x\" expected serial \"1\"");
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        let seen = Status::from_header_map(&headers).unwrap();
        assert_eq!(seen.code(), Code::PermissionDenied);
        assert_eq!(
            AgentRefusal::from_status(&seen),
            Some(AgentRefusal::Superseded)
        );
    }

    #[test]
    fn absent_unknown_or_wrong_code_is_none() {
        assert_eq!(
            AgentRefusal::from_status(&Status::permission_denied("agent is banned")),
            None
        );
        let mut unknown = Status::permission_denied("x");
        unknown
            .metadata_mut()
            .insert(AGENT_REFUSAL_KEY, MetadataValue::from_static("sleepy"));
        assert_eq!(AgentRefusal::from_status(&unknown), None);
        let mut other = Status::unavailable("x");
        AgentRefusal::Banned.attach(&mut other);
        assert_eq!(AgentRefusal::from_status(&other), None);
    }
}
