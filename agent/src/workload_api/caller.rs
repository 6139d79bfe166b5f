//! Who is calling, and what they may have.
//!
//! Every method starts here: the security header, the caller's peer
//! credentials, the cache snapshot's readiness, attestation, and the
//! matching identities. Denials are logged with the reason.

use std::collections::BTreeSet;

use spinel_spiffe::Selector;
use spinel_transport::UnixPeer;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::attestor::workload::{AttestError, Caller};
use crate::cache::Snapshot;

use super::explain::{explain, SelectorLog};

/// The metadata key every Workload API call must carry with the value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Refuses a call without exactly one `workload.spiffe.io: true`.
pub(crate) fn check_security_header(metadata: &MetadataMap) -> Result<(), Status> {
    let mut values = metadata.get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if v == "true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The caller's credentials from the Unix socket.
pub(crate) fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    let peer = request
        .extensions()
        .get::<UnixPeer>()
        .ok_or_else(|| Status::internal("the caller's credentials are unavailable"))?;
    let pid = peer
        .pid
        .filter(|p| *p > 0)
        .ok_or_else(|| Status::internal("the caller's process ID is unavailable"))?;
    Ok(Caller {
        pid,
        uid: peer.uid,
        gid: peer.gid,
        process: peer.process.clone(),
    })
}

/// The header check and the caller, in one step.
pub(crate) fn start<T>(request: &Request<T>) -> Result<Caller, Status> {
    check_security_header(request.metadata())?;
    caller_of(request)
}

/// The status for a caller without identity.
pub(crate) fn no_identity() -> Status {
    Status::permission_denied("no identity issued")
}

pub(crate) fn attest_failure(caller: &Caller, error: &AttestError) -> Status {
    if error.is_caller_gone() {
        tracing::info!(
            pid = caller.pid,
            uid = caller.uid,
            gid = caller.gid,
            reason = %error,
            "no identity issued: the caller could not be attested"
        );
        return no_identity();
    }
    tracing::warn!(
        pid = caller.pid,
        uid = caller.uid,
        gid = caller.gid,
        error = %error,
        "workload attestation failed"
    );
    // The workload learns only whether retrying may help; the log says why.
    Status::new(failure_code(error), "workload attestation failed")
}

/// The status code of a failed attestation, as SPIRE answers: the kubelet
/// out of reach is `Unavailable` (retry), a pod or container the kubelet
/// never listed within the poll attempts is `DeadlineExceeded`, anything
/// else `Internal`.
fn failure_code(error: &AttestError) -> tonic::Code {
    use crate::attestor::workload::k8s::K8sError;
    match error {
        AttestError::K8s(
            K8sError::Connect { .. }
            | K8sError::Tls { .. }
            | K8sError::Http { .. }
            | K8sError::Timeout { .. }
            | K8sError::Status { .. },
        ) => tonic::Code::Unavailable,
        AttestError::K8s(K8sError::PodNotFound { .. } | K8sError::ContainerNotFound { .. }) => {
            tonic::Code::DeadlineExceeded
        }
        _ => tonic::Code::Internal,
    }
}

/// Logs why `caller` got nothing: its selectors and, for the entries that
/// come closest, the selectors it lacks, values shown as `log` allows.
pub(crate) fn log_denial(
    caller: &Caller,
    method: &str,
    selectors: &BTreeSet<Selector>,
    snapshot: &Snapshot,
    log: &SelectorLog,
) {
    let explanation = explain(selectors, snapshot);
    tracing::info!(
        method,
        pid = caller.pid,
        uid = caller.uid,
        gid = caller.gid,
        selectors = %log.join(selectors),
        closest = %explanation.closest_line(log),
        "no identity issued"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::SystemTime;

    use spinel_spiffe::{SpiffeId, TrustBundle, TrustDomain};
    use tonic::metadata::MetadataValue;
    use zeroize::Zeroizing;

    use super::*;
    use crate::cache::{CachedEntry, Identity, X509SvidMaterial};

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn identity(id: &str, selectors: &[&str]) -> (String, Arc<Identity>) {
        let entry = CachedEntry {
            id: id.into(),
            spiffe_id: SpiffeId::new(format!("spiffe://example.org/{id}")).unwrap(),
            selectors: selectors.iter().map(|s| sel(s)).collect(),
            federates_with: vec![],
            hint: String::new(),
            revision_number: 0,
            admin: false,
            downstream: false,
        };
        let svid = X509SvidMaterial {
            chain: vec![],
            private_key: Zeroizing::new(vec![]),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
        };
        (id.into(), Arc::new(Identity { entry, svid }))
    }

    fn snapshot(identities: Vec<(String, Arc<Identity>)>) -> Snapshot {
        Snapshot {
            bundle: TrustBundle::new(TrustDomain::new("example.org").unwrap()),
            federated: BTreeMap::new(),
            identities: identities.into_iter().collect(),
            generation: 1,
            ready: true,
        }
    }

    #[test]
    fn closest_entries_name_what_is_missing() {
        let snap = snapshot(vec![
            identity("db", &["unix:uid:1000", "unix:gid:50"]),
            identity("web", &["unix:uid:33"]),
            identity("far", &["unix:uid:1", "unix:gid:1", "unix:user:x"]),
        ]);
        let attested: BTreeSet<_> = [sel("unix:uid:1000"), sel("unix:gid:1000")].into();
        let explanation = explain(&attested, &snap);
        assert!(explanation.identities.is_empty());
        assert_eq!(
            explanation.closest_line(&SelectorLog::default()),
            "spiffe://example.org/db (entry db) lacks [unix:gid:50]; \
             spiffe://example.org/web (entry web) lacks [unix:uid:33]"
        );
        assert_eq!(
            explanation.closest_line(&SelectorLog::none()),
            "spiffe://example.org/db (entry db) lacks [unix:gid:<redacted>]; \
             spiffe://example.org/web (entry web) lacks [unix:uid:<redacted>]"
        );
        assert_eq!(
            explain(&attested, &snapshot(vec![])).closest_line(&SelectorLog::default()),
            "the agent holds no entries"
        );
        let matched = explain(&[sel("unix:uid:33")].into(), &snap);
        assert_eq!(matched.identities.len(), 1);
        assert!(matched.closest.is_empty());
    }

    #[test]
    fn kubelet_trouble_is_retryable_for_the_workload() {
        use crate::attestor::workload::k8s::K8sError;
        let down = AttestError::K8s(K8sError::Connect {
            addr: "127.0.0.1:10250".into(),
            source: std::sync::Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        });
        assert_eq!(failure_code(&down), tonic::Code::Unavailable);
        let missing = AttestError::K8s(K8sError::ContainerNotFound {
            pid: 1,
            pod_uid: "u".into(),
            container_id: "c".into(),
            attempts: 60,
        });
        assert_eq!(failure_code(&missing), tonic::Code::DeadlineExceeded);
        assert_eq!(
            failure_code(&AttestError::Internal("x".into())),
            tonic::Code::Internal
        );
    }

    #[test]
    fn security_header_exactly_once() {
        let mut md = MetadataMap::new();
        assert!(check_security_header(&md).is_err());
        md.insert(SECURITY_HEADER, MetadataValue::from_static("true"));
        assert!(check_security_header(&md).is_ok());
        md.append(SECURITY_HEADER, MetadataValue::from_static("true"));
        assert!(check_security_header(&md).is_err());
        let mut md = MetadataMap::new();
        md.insert(SECURITY_HEADER, MetadataValue::from_static("TRUE"));
        assert!(check_security_header(&md).is_err());
    }
}
