//! The xDS state of one `StreamSecrets` stream: versions, nonces, ACKs
//! and NACKs, as SPIRE's handler keeps them.
//!
//! - Every response carries a new nonce (a counter: nonces only have to
//!   differ within a stream). A request whose `response_nonce` is not the
//!   last one sent is stale and ignored; before the first response any
//!   nonce is accepted.
//! - `version_info` names the resources sent: it moves (`"1"`, `"2"`, ...)
//!   whenever they change, and not otherwise. A request with the last
//!   nonce and that version is an ACK; with another version (or an
//!   `error_detail`) a NACK, which is logged. Neither is answered.
//! - A response is sent for the first request, when the set of names
//!   changes, and when what the names select changes (rotation, a new
//!   entry, a new bundle); never twice for the same resources unless the
//!   names changed.
//! - The node's `disable_spiffe_cert_validation` metadata and build
//!   version are taken from the last request that carries a node.

use std::sync::Arc;

use prost_types::value::Kind;
use spinel_proto::envoy::config::core::v3::{node, Node};
use spinel_proto::envoy::service::discovery::v3::DiscoveryRequest;

use super::config::SdsConfig;
use super::resources::Resources;
use super::select::normalize;

/// The node metadata key that overrides `disable_spiffe_cert_validation`.
const DISABLE_KEY: &str = "disable_spiffe_cert_validation";

/// What a request asks of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Send the resources the names select now.
    Respond,
    /// Nothing to send (an ACK, a NACK, a stale or repeated request).
    Nothing,
}

/// The version and nonce of a response about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// `version_info`.
    pub version: String,
    /// `nonce`.
    pub nonce: String,
}

/// One stream's state.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The names asked for (normalized); `None` before the first request.
    names: Option<Vec<String>>,
    /// Whether validation contexts use the SPIFFE validator (from the
    /// config and the last node seen); `None` before any node.
    spiffe_validation: Option<bool>,
    /// The version of the last resources sent (0: none yet).
    version: u64,
    /// The nonce of the last response sent (0: none yet).
    nonce: u64,
    /// The last resources sent.
    sent: Option<Arc<Resources>>,
}

impl Session {
    /// Takes one request; `pid` is for the logs.
    pub(crate) fn on_request(
        &mut self,
        request: &DiscoveryRequest,
        config: &SdsConfig,
        pid: i32,
    ) -> Reply {
        let names = normalize(&request.resource_names);
        if let Some(error) = &request.error_detail {
            tracing::warn!(
                pid,
                resource_names = ?names,
                error = %error.message,
                "the SDS client reported errors applying secrets"
            );
        }
        if self.nonce != 0 {
            if request.response_nonce != self.nonce.to_string() {
                tracing::debug!(
                    pid,
                    nonce = %request.response_nonce,
                    expected = self.nonce,
                    "ignoring an SDS request with a stale nonce"
                );
                return Reply::Nothing;
            }
            if request.version_info != self.version.to_string() {
                tracing::warn!(
                    pid,
                    version = %request.version_info,
                    expected = self.version,
                    "the SDS client rejected the last version and rolled back"
                );
            }
        }
        if let Some(node) = &request.node {
            self.spiffe_validation = Some(spiffe_validation(node, config));
        }
        if self.names.as_ref() == Some(&names) {
            return Reply::Nothing;
        }
        self.names = Some(names);
        Reply::Respond
    }

    /// The names asked for, once a request came.
    pub(crate) fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// Whether validation contexts use the SPIFFE validator.
    pub(crate) fn spiffe_validation(&self, config: &SdsConfig) -> bool {
        self.spiffe_validation
            .unwrap_or(!config.disable_spiffe_cert_validation)
    }

    /// True when `resources` differ from the last sent.
    pub(crate) fn changes(&self, resources: &Arc<Resources>) -> bool {
        self.sent
            .as_ref()
            .is_none_or(|sent| !Arc::ptr_eq(sent, resources) && **sent != **resources)
    }

    /// Records that `resources` are being sent and returns their stamp:
    /// a new version when they changed, a new nonce always.
    pub(crate) fn send(&mut self, resources: Arc<Resources>) -> Stamp {
        if self.changes(&resources) {
            self.version += 1;
        }
        self.sent = Some(resources);
        self.nonce += 1;
        Stamp {
            version: self.version.to_string(),
            nonce: self.nonce.to_string(),
        }
    }
}

/// SPIRE's rule: the SPIFFE validator unless turned off (the config, or
/// the node's `disable_spiffe_cert_validation` metadata, a bool or a Go
/// boolean string) or the client is an Envoy older than 1.18.
fn spiffe_validation(node: &Node, config: &SdsConfig) -> bool {
    let mut disabled = config.disable_spiffe_cert_validation;
    let value = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(DISABLE_KEY))
        .and_then(|v| v.kind.as_ref());
    match value {
        Some(Kind::BoolValue(b)) => disabled = *b,
        Some(Kind::StringValue(s)) => {
            if let Some(b) = go_bool(s) {
                disabled = b;
            }
        }
        _ => {}
    }
    let supported = match &node.user_agent_version_type {
        Some(node::UserAgentVersionType::UserAgentBuildVersion(build)) => {
            let v = build.version.unwrap_or_default();
            (v.major_number == 1 && v.minor_number > 17) || v.major_number > 1
        }
        _ => true,
    };
    !disabled && supported
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use spinel_proto::envoy::config::core::v3::BuildVersion;
    use spinel_proto::envoy::r#type::v3::SemanticVersion;
    use spinel_proto::google::rpc::Status;
    use spinel_spiffe::{TrustBundle, TrustDomain};

    use super::super::select::Pick;
    use super::*;

    fn request(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: version.into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn resources(name: &str) -> Arc<Resources> {
        Arc::new(Resources::encode(
            &[Pick::Bundle {
                name: name.into(),
                bundle: TrustBundle::new(TrustDomain::new("example.org").unwrap()),
            }],
            true,
        ))
    }

    #[test]
    fn first_request_then_ack_then_push() {
        let c = SdsConfig::default();
        let mut s = Session::default();
        assert_eq!(
            s.on_request(&request(&["ROOTCA"], "", ""), &c, 1),
            Reply::Respond
        );
        let r1 = resources("ROOTCA");
        assert!(s.changes(&r1));
        assert_eq!(
            s.send(r1.clone()),
            Stamp {
                version: "1".into(),
                nonce: "1".into()
            }
        );
        // The ACK is not answered.
        assert_eq!(
            s.on_request(&request(&["ROOTCA"], "1", "1"), &c, 1),
            Reply::Nothing
        );
        // Equal resources are no change, even as another Arc.
        assert!(!s.changes(&r1));
        assert!(!s.changes(&resources("ROOTCA")));
        // A rotation: version 2, nonce 2.
        let r2 = resources("other");
        assert!(s.changes(&r2));
        assert_eq!(
            s.send(r2),
            Stamp {
                version: "2".into(),
                nonce: "2".into()
            }
        );
    }

    #[test]
    fn stale_nonces_are_ignored_and_names_changes_answered() {
        let c = SdsConfig::default();
        let mut s = Session::default();
        s.on_request(&request(&["a"], "", ""), &c, 1);
        s.send(resources("a"));
        s.send(resources("b"));
        // Answers the first response, not the last: ignored, even with new names.
        assert_eq!(
            s.on_request(&request(&["c"], "1", "1"), &c, 1),
            Reply::Nothing
        );
        assert_eq!(s.names(), Some(&["a".to_string()][..]));
        // The same names in another order, duplicated: no change.
        assert_eq!(
            s.on_request(&request(&["a", "a", ""], "2", "2"), &c, 1),
            Reply::Nothing
        );
        // New names with the current nonce: answered, same version when
        // the resources do not change.
        assert_eq!(
            s.on_request(&request(&["a", "c"], "2", "2"), &c, 1),
            Reply::Respond
        );
        assert_eq!(s.send(resources("b")).version, "2");
    }

    #[test]
    fn nack_keeps_the_stream_and_is_not_answered() {
        let c = SdsConfig::default();
        let mut s = Session::default();
        s.on_request(&request(&["a"], "", ""), &c, 1);
        s.send(resources("a"));
        let mut nack = request(&["a"], "", "1");
        nack.error_detail = Some(Status {
            code: 3,
            message: "bad certificate".into(),
            details: vec![],
        });
        assert_eq!(s.on_request(&nack, &c, 1), Reply::Nothing);
        assert_eq!(s.send(resources("b")).version, "2");
    }

    fn node(disable: Option<Kind>, version: Option<(u32, u32)>) -> Node {
        Node {
            metadata: disable.map(|kind| prost_types::Struct {
                fields: [(
                    DISABLE_KEY.to_string(),
                    prost_types::Value { kind: Some(kind) },
                )]
                .into(),
            }),
            user_agent_version_type: version.map(|(major, minor)| {
                node::UserAgentVersionType::UserAgentBuildVersion(BuildVersion {
                    version: Some(SemanticVersion {
                        major_number: major,
                        minor_number: minor,
                        patch: 0,
                    }),
                    metadata: None,
                })
            }),
            ..Default::default()
        }
    }

    #[test]
    fn validator_kind_from_config_and_node() {
        let on = SdsConfig::default();
        let off = SdsConfig {
            disable_spiffe_cert_validation: true,
            ..SdsConfig::default()
        };
        assert!(spiffe_validation(&node(None, None), &on));
        assert!(!spiffe_validation(&node(None, None), &off));
        assert!(!spiffe_validation(
            &node(Some(Kind::BoolValue(true)), None),
            &on
        ));
        assert!(spiffe_validation(
            &node(Some(Kind::BoolValue(false)), None),
            &off
        ));
        assert!(!spiffe_validation(
            &node(Some(Kind::StringValue("T".into())), None),
            &on
        ));
        // A value Go cannot parse leaves the config's choice.
        assert!(spiffe_validation(
            &node(Some(Kind::StringValue("yes".into())), None),
            &on
        ));
        assert!(!spiffe_validation(&node(None, Some((1, 17))), &on));
        assert!(spiffe_validation(&node(None, Some((1, 18))), &on));
        assert!(spiffe_validation(&node(None, Some((2, 0))), &on));

        // The session keeps the last node's answer.
        let mut s = Session::default();
        assert!(s.spiffe_validation(&on));
        let mut first = request(&["a"], "", "");
        first.node = Some(node(Some(Kind::BoolValue(true)), None));
        s.on_request(&first, &on, 1);
        s.send(resources("a"));
        assert!(!s.spiffe_validation(&on));
        s.on_request(&request(&["a"], "1", "1"), &on, 1);
        assert!(!s.spiffe_validation(&on));
    }
}
