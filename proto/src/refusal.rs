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
//! The same reason also travels the way SPIRE sends it, so that SPIRE's
//! agent understands a Spinel server and Spinel's agent a SPIRE server: a
//! `google.rpc.Status` in the `grpc-status-details-bin` trailer whose
//! details hold one `spire.api.types.PermissionDeniedDetails` (SPIRE's agent
//! shuts down on `AGENT_BANNED` and attests again on the others; without
//! them it retries forever). SPIRE's own message is then often just
//! `authorization denied for method ...`: the details are the only reliable
//! signal.
//!
//! | [`AgentRefusal`] | SPIRE's `PermissionDeniedDetails.Reason` |
//! | --- | --- |
//! | `Banned` | `AGENT_BANNED` |
//! | `Evicted` | `AGENT_NOT_ATTESTED` (and, read only, `AGENT_MUST_REATTEST`) |
//! | `Superseded` | `AGENT_NOT_ACTIVE` |
//! | `Expired` | `AGENT_EXPIRED` |
//!
//! The metadata entry is Spinel's own addition; a client reads it first,
//! then the details, and must fall back to the message text when both are
//! absent.
//!
//! ```
//! use spinel_proto::refusal::AgentRefusal;
//!
//! let status = AgentRefusal::Banned.status("agent \"spiffe://example.org/spire/agent/x\" is banned");
//! assert_eq!(status.code(), tonic::Code::PermissionDenied);
//! assert_eq!(AgentRefusal::from_status(&status), Some(AgentRefusal::Banned));
//! assert_eq!(AgentRefusal::from_details(status.details()), Some(AgentRefusal::Banned));
//! ```

use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::spire::api::types::permission_denied_details::Reason;
use crate::spire::api::types::PermissionDeniedDetails;

/// The `type_url` of SPIRE's details message inside `google.protobuf.Any`.
pub const PERMISSION_DENIED_DETAILS_TYPE_URL: &str =
    "type.googleapis.com/spire.api.types.PermissionDeniedDetails";

/// `google.rpc.Status`, the message gRPC carries (encoded) in the
/// `grpc-status-details-bin` trailer: field numbers of the published
/// `google/rpc/status.proto`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

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
    /// has one, named by a known [`AGENT_REFUSAL_KEY`] value or, failing
    /// that, by SPIRE's `PermissionDeniedDetails` in the status details.
    pub fn from_status(status: &Status) -> Option<Self> {
        if status.code() != Code::PermissionDenied {
            return None;
        }
        status
            .metadata()
            .get(AGENT_REFUSAL_KEY)
            .and_then(|v| Self::parse(v.to_str().ok()?))
            .or_else(|| Self::from_details(status.details()))
    }

    /// The reason named by the first `spire.api.types.PermissionDeniedDetails`
    /// in encoded `google.rpc.Status` details (`grpc-status-details-bin`),
    /// as a SPIRE server sends them. `UNKNOWN`, unknown reasons and
    /// undecodable bytes give `None`.
    pub fn from_details(details: &[u8]) -> Option<Self> {
        if details.is_empty() {
            return None;
        }
        let status = RpcStatus::decode(details).ok()?;
        let any = status
            .details
            .iter()
            .find(|a| a.type_url == PERMISSION_DENIED_DETAILS_TYPE_URL)?;
        let reason = PermissionDeniedDetails::decode(any.value.as_slice()).ok()?;
        match Reason::try_from(reason.reason).ok()? {
            Reason::AgentBanned => Some(AgentRefusal::Banned),
            Reason::AgentNotAttested | Reason::AgentMustReattest => Some(AgentRefusal::Evicted),
            Reason::AgentNotActive => Some(AgentRefusal::Superseded),
            Reason::AgentExpired => Some(AgentRefusal::Expired),
            Reason::Unknown => None,
        }
    }

    /// SPIRE's name for this reason.
    pub fn spire_reason(self) -> Reason {
        match self {
            AgentRefusal::Banned => Reason::AgentBanned,
            AgentRefusal::Evicted => Reason::AgentNotAttested,
            AgentRefusal::Superseded => Reason::AgentNotActive,
            AgentRefusal::Expired => Reason::AgentExpired,
        }
    }

    /// The encoded `google.rpc.Status` (code, `message`, one
    /// `PermissionDeniedDetails`) for the `grpc-status-details-bin` trailer.
    pub fn details(self, message: &str) -> Vec<u8> {
        let reason = PermissionDeniedDetails {
            reason: self.spire_reason() as i32,
        };
        RpcStatus {
            code: Code::PermissionDenied as i32,
            message: message.to_owned(),
            details: vec![prost_types::Any {
                type_url: PERMISSION_DENIED_DETAILS_TYPE_URL.to_owned(),
                value: reason.encode_to_vec(),
            }],
        }
        .encode_to_vec()
    }

    /// Adds the reason to `status`'s metadata (replacing any earlier one).
    pub fn attach(self, status: &mut Status) {
        status
            .metadata_mut()
            .insert(AGENT_REFUSAL_KEY, MetadataValue::from_static(self.as_str()));
    }

    /// A `PermissionDenied` status with `message`, carrying the reason both
    /// in the metadata and in SPIRE's status details.
    pub fn status(self, message: impl Into<String>) -> Status {
        let message = message.into();
        let details = self.details(&message);
        let mut status = Status::with_details(Code::PermissionDenied, message, details.into());
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

    /// `google.rpc.Status{code: 7, message, details: [Any{SPIRE's type URL,
    /// PermissionDeniedDetails{reason}}]}`, written byte by byte as
    /// protobuf's wire format lays it out (as SPIRE's Go server sends it).
    fn spire_details(message: &str, reason: u8) -> Vec<u8> {
        let inner = [0x08, reason];
        let mut any = vec![0x0a, PERMISSION_DENIED_DETAILS_TYPE_URL.len() as u8];
        any.extend_from_slice(PERMISSION_DENIED_DETAILS_TYPE_URL.as_bytes());
        any.extend_from_slice(&[0x12, inner.len() as u8]);
        any.extend_from_slice(&inner);
        let mut status = vec![0x08, 0x07, 0x12, message.len() as u8];
        status.extend_from_slice(message.as_bytes());
        status.extend_from_slice(&[0x1a, any.len() as u8]);
        status.extend_from_slice(&any);
        status
    }

    #[test]
    fn details_are_spires_bytes() {
        for (reason, spire) in [
            (AgentRefusal::Expired, 1),
            (AgentRefusal::Evicted, 2),
            (AgentRefusal::Superseded, 3),
            (AgentRefusal::Banned, 4),
        ] {
            assert_eq!(reason.details("m"), spire_details("m", spire), "{reason}");
            assert_eq!(
                reason.status("m").details(),
                spire_details("m", spire).as_slice()
            );
        }
    }

    #[test]
    fn a_spire_refusal_is_read_from_its_details() {
        // SPIRE's authorization layer says only "authorization denied";
        // the reason is in the details, and there is no Spinel metadata.
        let message = "authorization denied for method /spire.api.server.entry.v1.Entry/SyncAuthorizedEntries";
        for (spire, expected) in [
            (1, AgentRefusal::Expired),
            (2, AgentRefusal::Evicted),
            (3, AgentRefusal::Superseded),
            (4, AgentRefusal::Banned),
            (5, AgentRefusal::Evicted),
        ] {
            let sent = Status::with_details(
                Code::PermissionDenied,
                message,
                spire_details(message, spire).into(),
            );
            let mut headers = http::HeaderMap::new();
            sent.add_header(&mut headers).unwrap();
            assert!(headers.contains_key("grpc-status-details-bin"));
            let seen = Status::from_header_map(&headers).unwrap();
            assert_eq!(
                AgentRefusal::from_status(&seen),
                Some(expected),
                "reason {spire}"
            );
        }
    }

    #[test]
    fn a_spinel_refusal_without_its_metadata_still_names_the_reason() {
        for reason in AgentRefusal::ALL {
            let mut headers = http::HeaderMap::new();
            reason.status("refused").add_header(&mut headers).unwrap();
            headers.remove(AGENT_REFUSAL_KEY);
            let seen = Status::from_header_map(&headers).unwrap();
            assert_eq!(AgentRefusal::from_status(&seen), Some(reason));
        }
    }

    #[test]
    fn unknown_or_garbled_details_are_none() {
        assert_eq!(AgentRefusal::from_details(&spire_details("m", 0)), None);
        assert_eq!(AgentRefusal::from_details(&spire_details("m", 9)), None);
        assert_eq!(AgentRefusal::from_details(&[0xff, 0xff, 0xff]), None);
        let other_type = spire_details("m", 4)
            .iter()
            .map(|b| if *b == b'P' { b'Q' } else { *b })
            .collect::<Vec<_>>();
        assert_eq!(AgentRefusal::from_details(&other_type), None);
        let details_on_another_code =
            Status::with_details(Code::Unavailable, "m", spire_details("m", 4).into());
        assert_eq!(AgentRefusal::from_status(&details_on_another_code), None);
    }
}
