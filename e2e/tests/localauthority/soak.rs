//! Rotation soak: a CA that lives one minute, SVIDs that live seconds, and
//! a workload fetching continuously through two whole CA lifetimes (the
//! next CA prepared, published, activated, the old one expiring) with zero
//! failures. Every SVID received must be valid at that moment and chain to
//! the bundle received with it.
//!
//! Real processes on the real clock; about two and a half minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

const ALIAS: &str = "spiffe://example.org/node";
const ID: &str = "spiffe://example.org/soak";
const CA_TTL_SECS: u64 = 60;
const RUN: Duration = Duration::from_secs(2 * CA_TTL_SECS + 15);

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Whether `leaf` was signed by one of `cas` and both are valid at `now`.
fn chains_and_valid(leaf: &X509Certificate<'_>, cas: &[X509Certificate<'_>], now: i64) -> bool {
    let valid = |c: &X509Certificate<'_>| {
        c.validity().not_before.timestamp() <= now && now < c.validity().not_after.timestamp()
    };
    valid(leaf)
        && cas.iter().any(|ca| {
            valid(ca)
                && leaf.issuer() == ca.subject()
                && leaf.verify_signature(Some(ca.public_key())).is_ok()
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_never_fail_across_ca_and_svid_rotation() {
    let server = ServerHandle::start(ServerOptions {
        server_extra: format!(
            "    ca_ttl = \"{CA_TTL_SECS}s\"\n    default_x509_svid_ttl = \"10s\"\n    default_jwt_svid_ttl = \"10s\""
        ),
        ..Default::default()
    })
    .unwrap();
    let token = server.generate_token(Some(ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let uid = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            ALIAS,
            "-spiffeID",
            ID,
            "-selector",
            &uid,
            "-x509SVIDTTL",
            "5",
            "-jwtSVIDTTL",
            "5",
        ])
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let ready_by = Instant::now() + Duration::from_secs(30);
    while client.fetch_x509_svid().await.is_err() {
        assert!(Instant::now() < ready_by, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    let (mut fetches, mut leaves, mut cas) = (0u64, BTreeSet::new(), BTreeSet::new());
    while started.elapsed() < RUN {
        // One X509 context: SVID and bundle from the same response.
        let context = client
            .fetch_x509_context()
            .await
            .unwrap_or_else(|e| panic!("fetch failed after {:?}: {e}", started.elapsed()));
        let now = now_unix();
        let svid = context.default_svid().expect("an SVID");
        assert_eq!(svid.spiffe_id().to_string(), ID);
        let leaf_der = svid.leaf().as_bytes().to_vec();
        let bundle = context
            .bundle_set()
            .get(svid.spiffe_id().trust_domain())
            .expect("the bundle of our trust domain");
        let ca_ders: Vec<Vec<u8>> = bundle
            .authorities()
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        let parsed: Vec<X509Certificate<'_>> = ca_ders
            .iter()
            .map(|d| parse_x509_certificate(d).unwrap().1)
            .collect();
        assert!(
            chains_and_valid(&leaf, &parsed, now),
            "after {:?}: SVID {} (valid {} .. {}) does not chain to a valid CA of the bundle \
             served with it (now {now})",
            started.elapsed(),
            leaf.raw_serial_as_string(),
            leaf.validity().not_before.timestamp(),
            leaf.validity().not_after.timestamp(),
        );
        // JWT-SVIDs keep working too.
        let jwt = client.fetch_jwt_svid(["soak"], None).await.unwrap();
        assert_eq!(jwt.spiffe_id().to_string(), ID);
        fetches += 1;
        leaves.insert(leaf_der);
        for d in ca_ders {
            cas.insert(d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Two CA lifetimes: at least the first CA and two successors were seen,
    // and the SVID rotated many times.
    assert!(cas.len() >= 3, "saw {} CAs in {fetches} fetches", cas.len());
    assert!(leaves.len() >= 10, "saw {} SVIDs", leaves.len());
    drop(server);
}
