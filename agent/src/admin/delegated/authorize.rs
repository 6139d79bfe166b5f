//! Who may use the Delegated Identity API, and for whom.
//!
//! [`Delegates`] is `agent.authorized_delegates`: a caller is authorized
//! when one of the entries its own attested selectors match has one of
//! those SPIFFE IDs (SPIRE's rule). [`Target`] is the workload a request
//! names: selectors the delegate vouches for, or a pid the agent attests.
//! [`servable`] says which of a workload's identities a delegate may be
//! given at all.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use spinel_proto::spire::api::types;
use spinel_spiffe::{Selector, SpiffeId};
use tonic::Status;

use crate::cache::Identity;

/// The message of every refusal of an unauthorized caller.
pub(crate) const NOT_A_DELEGATE: &str = "caller not configured as an authorized delegate";

/// The SPIFFE IDs allowed to use the API (`agent.authorized_delegates`).
#[derive(Debug, Clone, Default)]
pub struct Delegates {
    ids: HashSet<SpiffeId>,
}

impl Delegates {
    /// The delegates of the agent config.
    pub fn new(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Delegates {
            ids: ids.into_iter().collect(),
        }
    }

    /// True when nobody may use the API.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The delegate ID that authorizes a caller holding `identities` (the
    /// entries its attested selectors match), or `PermissionDenied`: "no
    /// identity issued" when it holds none, [`NOT_A_DELEGATE`] when none
    /// of them is listed.
    pub(crate) fn authorize<'a>(
        &self,
        identities: &'a [Arc<Identity>],
    ) -> Result<&'a SpiffeId, Status> {
        if identities.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        identities
            .iter()
            .map(|i| &i.entry.spiffe_id)
            .find(|id| self.ids.contains(*id))
            .ok_or_else(|| Status::permission_denied(NOT_A_DELEGATE))
    }
}

/// The workload a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Selectors the delegate attested itself; taken as they are.
    Selectors(BTreeSet<Selector>),
    /// A process the agent attests with its workload attestors.
    Pid(i32),
}

impl Target {
    /// The target of a request's `selectors` and `pid`: exactly one must
    /// be given (a pid of 0 counts as none, as in SPIRE); every selector
    /// must be a valid `type:value`, or `InvalidArgument` names it.
    pub(crate) fn of_request(selectors: &[types::Selector], pid: i32) -> Result<Target, Status> {
        match (selectors.is_empty(), pid) {
            (true, 0) | (false, 1..) | (false, ..0) => Err(Status::invalid_argument(
                "must provide either selectors or non-zero PID, but not both",
            )),
            (true, ..0) => Err(Status::invalid_argument(format!(
                "pid must be a positive process ID, not {pid}"
            ))),
            (true, 1..) => Ok(Target::Pid(pid)),
            (false, 0) => selectors
                .iter()
                .map(|s| Selector::new(s.r#type.clone(), s.value.clone()))
                .collect::<Result<BTreeSet<_>, _>>()
                .map(Target::Selectors)
                .map_err(|e| {
                    Status::invalid_argument(format!("could not parse provided selectors: {e}"))
                }),
        }
    }
}

/// True when a delegate may be given `identity`'s SVIDs at `now`: never an
/// admin or downstream entry's (SPIRE's rule), never a reserved ID (the
/// server's, an agent's), and only an X509-SVID that has not expired.
pub(crate) fn servable(identity: &Identity, now: SystemTime) -> bool {
    delegable(identity) && !identity.svid.chain.is_empty() && identity.svid.not_after > now
}

/// True when a delegate may be given any SVID (X.509 or JWT) of
/// `identity`'s entry.
pub(crate) fn delegable(identity: &Identity) -> bool {
    let entry = &identity.entry;
    !entry.admin && !entry.downstream && !spinel_spiffe::id::is_reserved(&entry.spiffe_id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zeroize::Zeroizing;

    use super::*;
    use crate::cache::{CachedEntry, X509SvidMaterial};

    fn identity(path: &str, admin: bool, downstream: bool) -> Arc<Identity> {
        Arc::new(Identity {
            entry: CachedEntry {
                id: path.into(),
                spiffe_id: SpiffeId::new(format!("spiffe://example.org/{path}")).unwrap(),
                selectors: vec![Selector::parse("unix:uid:1").unwrap()],
                federates_with: vec![],
                hint: String::new(),
                revision_number: 0,
                admin,
                downstream,
            },
            svid: X509SvidMaterial {
                chain: vec![vec![1]],
                private_key: Zeroizing::new(vec![]),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            },
        })
    }

    fn id(text: &str) -> SpiffeId {
        SpiffeId::new(text).unwrap()
    }

    fn sel(kind: &str, value: &str) -> types::Selector {
        types::Selector {
            r#type: kind.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_caller_is_authorized_by_any_of_its_identities() {
        let delegates = Delegates::new([id("spiffe://example.org/mesh")]);
        let holds = [
            identity("web", false, false),
            identity("mesh", false, false),
        ];
        assert_eq!(
            delegates.authorize(&holds).unwrap().to_string(),
            "spiffe://example.org/mesh"
        );
    }

    #[test]
    fn callers_without_a_listed_identity_are_denied() {
        let delegates = Delegates::new([id("spiffe://example.org/mesh")]);
        let err = delegates
            .authorize(&[identity("web", false, false)])
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.message(), NOT_A_DELEGATE);
        let err = delegates.authorize(&[]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.message(), "no identity issued");
        // A listed ID of another trust domain is another ID.
        let other = Delegates::new([id("spiffe://other.org/mesh")]);
        assert!(other.authorize(&[identity("mesh", false, false)]).is_err());
    }

    #[test]
    fn no_delegates_means_nobody() {
        let nobody = Delegates::default();
        assert!(nobody.is_empty());
        let err = nobody
            .authorize(&[identity("mesh", false, false)])
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn exactly_one_of_selectors_and_pid() {
        let both = Target::of_request(&[sel("unix", "uid:1")], 7).unwrap_err();
        assert_eq!(both.code(), tonic::Code::InvalidArgument);
        assert!(both.message().contains("not both"), "{}", both.message());
        let neither = Target::of_request(&[], 0).unwrap_err();
        assert_eq!(neither.code(), tonic::Code::InvalidArgument);
        let negative = Target::of_request(&[], -4).unwrap_err();
        assert_eq!(negative.code(), tonic::Code::InvalidArgument);
        assert!(negative.message().contains("-4"), "{}", negative.message());
        assert_eq!(Target::of_request(&[], 42).unwrap(), Target::Pid(42));
        let Target::Selectors(parsed) = Target::of_request(
            &[
                sel("unix", "uid:1"),
                sel("k8s", "ns:a"),
                sel("unix", "uid:1"),
            ],
            0,
        )
        .unwrap() else {
            panic!("selectors expected")
        };
        let parsed: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(parsed, ["k8s:ns:a", "unix:uid:1"]);
    }

    #[test]
    fn a_bad_selector_is_named() {
        for (bad, named) in [
            (sel("", "uid:1"), ":uid:1"),
            (sel("unix", ""), "unix:"),
            (sel("un:ix", "uid:1"), "un:ix:uid:1"),
            (sel("unix", "uid:\n1"), "unix:uid:\\n1"),
        ] {
            let err = Target::of_request(&[sel("k8s", "ns:a"), bad], 0).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message()
                    .starts_with("could not parse provided selectors")
                    && err.message().contains(named),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn admin_downstream_reserved_and_expired_svids_are_not_delegated() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        assert!(servable(&identity("web", false, false), now));
        assert!(!servable(&identity("web", true, false), now));
        assert!(!servable(&identity("web", false, true), now));
        assert!(!delegable(&identity(
            "spire/agent/join_token/x",
            false,
            false
        )));
        assert!(!delegable(&identity("spire/server", false, false)));
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert!(!servable(&identity("web", false, false), later));
        assert!(delegable(&identity("web", false, false)));
    }
}
