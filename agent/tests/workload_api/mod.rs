//! The Workload API over a real Unix socket, with real certificates and
//! signed JWTs, checked with the independent `spiffe` crate and with a raw
//! tonic client. The cache is filled by hand; the attestor and the JWT
//! source are small fakes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod sds;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use spinel_agent::cli::api::{
    self, ApiCommand, CommonArgs, FetchCommand, FetchJwtArgs, FetchX509Args, Output,
    ValidateCommand, ValidateJwtArgs,
};
use spinel_agent::workload_api;
use spinel_proto::grpc::health::v1::health_client::HealthClient;
use spinel_proto::grpc::health::v1::HealthCheckRequest;
use spinel_proto::workload::{JwtsvidRequest, X509svidRequest};
use tonic::{Code, Request};

use crate::support::*;

#[tokio::test]
async fn spiffe_crate_gets_svids_and_bundles() {
    let h = Harness::start().await;
    let w1 = h.publish_default();
    let client = spiffe::WorkloadApiClient::connect_to(h.endpoint())
        .await
        .unwrap();

    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/w1");
    assert_eq!(svid.hint(), Some("internal"));
    assert_eq!(svid.cert_chain()[0].as_ref(), w1.svid.chain[0].as_slice());

    let ctx = client.fetch_x509_context().await.unwrap();
    let fed_td = spiffe::TrustDomain::new(FED_TD).unwrap();
    let own_td = spiffe::TrustDomain::new(TD).unwrap();
    assert_eq!(
        ctx.bundle_set().get(&own_td).unwrap().authorities()[0].as_ref(),
        h.ca.der.as_slice()
    );
    assert!(
        ctx.bundle_set().get(&fed_td).is_some(),
        "federated bundle delivered"
    );

    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert_eq!(bundles.len(), 2);

    let audience = ["vault", "db"];
    let jwt = client.fetch_jwt_svid(&audience, None).await.unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), "spiffe://example.org/w1");
    assert_eq!(jwt.audience(), &["vault".to_owned(), "db".to_owned()]);
    assert_eq!(jwt.hint(), Some("internal"));

    let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
    let own = jwt_bundles.get(&own_td).unwrap();
    assert!(own.find_jwt_authority("kid-example.org").is_some());
    assert!(jwt_bundles.get(&fed_td).is_some());

    let validated = client.validate_jwt_token("db", jwt.token()).await.unwrap();
    assert_eq!(validated.spiffe_id().to_string(), "spiffe://example.org/w1");

    // A token of the federated trust domain validates with its bundle.
    let foreign = h.fed.jwt(
        "spiffe://federated.test/x",
        &["db".into()],
        unix(now()) + 60,
    );
    let validated = client.validate_jwt_token("db", &foreign).await.unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://federated.test/x"
    );

    let err = client
        .validate_jwt_token("other", jwt.token())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("InvalidArgument"), "{err:?}");

    let source = spiffe::X509Source::builder()
        .endpoint(h.endpoint())
        .build()
        .await
        .unwrap();
    assert_eq!(
        source.svid().unwrap().spiffe_id().to_string(),
        "spiffe://example.org/w1"
    );
    drop(source);
    h.shutdown().await;
}

#[tokio::test]
async fn security_header_is_required_exactly_once() {
    let h = Harness::start().await;
    h.publish_default();
    let mut client = h.raw().await;
    let err = client
        .fetch_x509svid(Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "security header missing from request");

    let mut twice = with_header(JwtsvidRequest {
        audience: vec!["a".into()],
        spiffe_id: String::new(),
    });
    twice
        .metadata_mut()
        .append(workload_api::SECURITY_HEADER, "true".parse().unwrap());
    let err = client.fetch_jwtsvid(twice).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let mut wrong = Request::new(X509svidRequest {});
    wrong
        .metadata_mut()
        .insert(workload_api::SECURITY_HEADER, "yes".parse().unwrap());
    assert_eq!(
        client.fetch_x509svid(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    h.shutdown().await;
}

#[tokio::test]
async fn no_identity_is_permission_denied() {
    let h = Harness::start().await;
    h.publish_default();
    h.attestor.set(&["unix:uid:2000"]);
    let mut client = h.raw().await;
    let err = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
    let err = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let spiffe_client = spiffe::WorkloadApiClient::connect_to(h.endpoint())
        .await
        .unwrap();
    assert!(spiffe_client.fetch_x509_bundles().await.is_err());
    assert!(spiffe_client.fetch_jwt_bundles().await.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn jwt_requests_are_checked() {
    let h = Harness::start().await;
    h.publish_default();
    let mut client = h.raw().await;
    let err = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "audience must be specified");

    let err = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: "spiffe://example.org/other".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let ok = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: "spiffe://example.org/w1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.svids.len(), 1);
    assert_eq!(ok.svids[0].hint, "internal");

    let err = client
        .validate_jwtsvid(with_header(
            spinel_proto::workload::ValidateJwtsvidRequest {
                audience: String::new(),
                svid: ok.svids[0].svid.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .validate_jwtsvid(with_header(
            spinel_proto::workload::ValidateJwtsvidRequest {
                audience: "a".into(),
                svid: "not.a.jwt".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    h.shutdown().await;
}

#[tokio::test]
async fn not_ready_is_unavailable_and_unhealthy() {
    let h = Harness::start().await;
    let mut client = h.raw().await;
    let err = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let mut health = HealthClient::new(channel(&h.socket).await);
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 2, "NOT_SERVING before the first sync");
    h.publish_default();
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING after it");
    h.shutdown().await;
}

#[tokio::test]
async fn stream_follows_rotation_and_skips_unchanged_states() {
    let h = Harness::start().await;
    let w1 = h.publish_default();
    let mut client = h.raw().await;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids[0].x509_svid, w1.svid.chain[0]);
    assert_eq!(first.svids[0].bundle, h.ca.der);
    assert_eq!(
        first.federated_bundles["spiffe://federated.test"],
        h.fed.der
    );

    // A change that does not concern this caller sends nothing.
    let other = identity(
        &h.ca,
        entry("other", &["unix:uid:5"], "", &[]),
        in_an_hour(),
    );
    publish(
        &h.cache,
        &h.ca,
        Some(&h.fed),
        vec![w1.clone(), other.clone()],
    );
    let quiet = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
    assert!(quiet.is_err(), "no message for an unrelated change");

    // Rotation: a new SVID for w1 is pushed.
    let rotated = identity(&h.ca, w1.entry.clone(), in_an_hour());
    publish(&h.cache, &h.ca, Some(&h.fed), vec![rotated.clone(), other]);
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.svids[0].x509_svid, rotated.svid.chain[0]);
    assert_eq!(
        next.svids[0].x509_svid_key,
        rotated.svid.private_key.to_vec()
    );

    // The caller loses its identity: the stream ends with PermissionDenied.
    h.attestor.set(&["unix:uid:2000"]);
    publish(&h.cache, &h.ca, Some(&h.fed), vec![rotated]);
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied);
    h.shutdown().await;
}

#[tokio::test]
async fn expired_svids_are_never_served() {
    let h = Harness::start().await;
    let expired = identity(
        &h.ca,
        entry("old", &[UID_SELECTOR], "", &[]),
        now() - Duration::from_secs(1),
    );
    publish(&h.cache, &h.ca, None, vec![expired.clone()]);
    let mut client = h.raw().await;
    let err = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "only an expired SVID: nothing to serve"
    );

    // One SVID about to expire, one valid: after the first expires, the
    // stream sends the valid one alone.
    let soon = identity(
        &h.ca,
        entry("soon", &[UID_SELECTOR], "", &[]),
        now() + Duration::from_secs(2),
    );
    let later = identity(
        &h.ca,
        entry("later", &[UID_SELECTOR], "", &[]),
        in_an_hour(),
    );
    publish(&h.cache, &h.ca, None, vec![expired, soon, later]);
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let ids: Vec<_> = first.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(
        ids,
        ["spiffe://example.org/later", "spiffe://example.org/soon"]
    );
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ids: Vec<_> = next.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(ids, ["spiffe://example.org/later"]);
    h.shutdown().await;
}

#[tokio::test]
async fn hints_are_delivered_and_unique() {
    let h = Harness::start().await;
    let a = identity(&h.ca, entry("a", &[UID_SELECTOR], "db", &[]), in_an_hour());
    let b = identity(&h.ca, entry("b", &[UID_SELECTOR], "db", &[]), in_an_hour());
    let c = identity(&h.ca, entry("c", &[UID_SELECTOR], "web", &[]), in_an_hour());
    publish(&h.cache, &h.ca, None, vec![a, b, c]);
    let mut client = h.raw().await;
    let resp = first_x509(&mut client).await;
    let got: Vec<_> = resp
        .svids
        .iter()
        .map(|s| (s.spiffe_id.as_str(), s.hint.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("spiffe://example.org/a", "db"),
            ("spiffe://example.org/c", "web")
        ]
    );
    let jwt = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["x".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let hints: BTreeSet<_> = jwt.svids.iter().map(|s| s.hint.as_str()).collect();
    assert_eq!(hints, BTreeSet::from(["db", "web"]));
    assert_eq!(jwt.svids.len(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let h = Harness::start().await;
    h.publish_default();
    let mut client = h.raw().await;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    // Keep the directory alive until the end: the socket is in it.
    let Harness {
        dir: _dir,
        mut stop,
        task,
        socket,
        ..
    } = h;
    let _ = stop.take().unwrap().send(());
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    assert!(matches!(end, Err(s) if s.code() == Code::Unavailable));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!socket.exists());
}

#[tokio::test]
async fn bind_replaces_a_stale_socket_but_not_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let listener = workload_api::bind(&socket).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o777);
    drop(listener);

    let file = dir.path().join("file");
    std::fs::write(&file, b"keep me").unwrap();
    let err = workload_api::bind(&file).unwrap_err();
    assert!(matches!(err, workload_api::Error::NotASocket { .. }));
    assert!(err.to_string().contains(&file.display().to_string()));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn cli_fetch_x509_writes_files() {
    let h = Harness::start().await;
    h.publish_default();
    let out = tempfile::tempdir().unwrap();
    api::run(ApiCommand::Fetch(FetchCommand::X509(FetchX509Args {
        common: CommonArgs {
            socket_path: Some(h.socket.clone()),
            timeout: Duration::from_secs(5),
        },
        write: Some(out.path().to_owned()),
        silent: true,
        output: Output::Pretty,
    })))
    .await
    .unwrap();
    let svid = std::fs::read_to_string(out.path().join("svid.0.pem")).unwrap();
    assert!(svid.starts_with("-----BEGIN CERTIFICATE-----"));
    let key_path = out.path().join("svid.0.key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(out.path().join("bundle.0.pem").exists());
    assert!(out.path().join("federated_bundle.0.0.pem").exists());
    h.shutdown().await;
}

#[tokio::test]
async fn real_unix_attestor_through_the_socket() {
    use spinel_agent::attestor::workload::{UnixAttestor, UnixConfig};
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .parse()
        .unwrap();
    let attestor = Arc::new(UnixAttestor::new(UnixConfig {
        discover_workload_path: true,
        workload_size_limit: 0,
    }));
    let h = Harness::start_with(Some(attestor)).await;
    let exe = std::env::current_exe().unwrap();
    let mine = identity(
        &h.ca,
        entry(
            "me",
            &[
                &format!("unix:uid:{uid}"),
                &format!("unix:path:{}", exe.display()),
            ],
            "",
            &[],
        ),
        in_an_hour(),
    );
    let other = identity(
        &h.ca,
        entry("other-user", &[&format!("unix:uid:{}", uid + 1)], "", &[]),
        in_an_hour(),
    );
    publish(&h.cache, &h.ca, None, vec![mine, other]);
    let client = spiffe::WorkloadApiClient::connect_to(h.endpoint())
        .await
        .unwrap();
    let svids = client.fetch_all_x509_svids().await.unwrap();
    let ids: Vec<_> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(ids, ["spiffe://example.org/me"]);

    // Only another user's entry: denied.
    let other = identity(
        &h.ca,
        entry("other-user", &[&format!("unix:uid:{}", uid + 1)], "", &[]),
        in_an_hour(),
    );
    publish(&h.cache, &h.ca, None, vec![other]);
    let mut raw = h.raw().await;
    let err = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    h.shutdown().await;
}

#[tokio::test]
async fn cli_fetch_jwt_and_its_errors() {
    let h = Harness::start().await;
    h.publish_default();
    let args = |audience: Vec<String>, spiffe_id: Option<&str>| {
        ApiCommand::Fetch(FetchCommand::Jwt(FetchJwtArgs {
            common: CommonArgs {
                socket_path: Some(h.socket.clone()),
                timeout: Duration::from_secs(5),
            },
            audience,
            spiffe_id: spiffe_id.map(str::to_owned),
            output: Output::Json,
        }))
    };
    api::run(args(vec!["vault,db".into()], None)).await.unwrap();
    let err = api::run(args(vec![], None)).await.unwrap_err().to_string();
    assert_eq!(err, "audience must be specified");
    let err = api::run(args(vec!["a".into()], Some("spiffe://example.org/nope")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PermissionDenied") && err.contains("no identity issued"),
        "{err}"
    );

    let validate = |audience: &str, svid: String| {
        ApiCommand::Validate(ValidateCommand::Jwt(ValidateJwtArgs {
            common: CommonArgs {
                socket_path: Some(h.socket.clone()),
                timeout: Duration::from_secs(5),
            },
            audience: Some(audience.to_owned()),
            svid: Some(svid),
            output: Output::Pretty,
        }))
    };
    let token =
        h.ca.jwt("spiffe://example.org/w1", &["db".into()], unix(now()) + 60);
    api::run(validate("db", token.clone())).await.unwrap();
    let err = api::run(validate("other", token))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("SVID is not valid: "), "{err}");
    h.shutdown().await;
}
