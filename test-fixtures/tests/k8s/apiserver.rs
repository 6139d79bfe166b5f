//! The fake kube-apiserver: TokenReview, pods, nodes, errors.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};
use spinel_test_fixtures::k8s::{
    ApiServerOptions, FakeApiServer, NodeBuilder, PodBuilder, ServiceAccountToken,
    TOKEN_REVIEW_PATH,
};

use crate::client::{get, send, Reply, Target};

fn target(api: &FakeApiServer) -> Target {
    Target {
        port: api.port(),
        ca_pem: Some(api.ca_pem()),
        token: Some(api.token().to_owned()),
        ..Default::default()
    }
}

async fn review(api: &FakeApiServer, token: &str, audiences: &[&str]) -> (Reply, TokenReview) {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: (!audiences.is_empty())
                .then(|| audiences.iter().map(|a| a.to_string()).collect()),
        },
        ..Default::default()
    };
    let body = serde_json::to_string(&request).unwrap();
    let reply = send(&target(api), Method::POST, TOKEN_REVIEW_PATH, Some(body))
        .await
        .unwrap();
    let parsed =
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body));
    (reply, parsed)
}

fn agent() -> (PodBuilder, NodeBuilder) {
    let node = NodeBuilder::new("node-1").internal_ip("10.0.0.11");
    let pod = PodBuilder::new("spire", "spire-agent-x2k9p")
        .service_account("spire-agent")
        .node_name("node-1")
        .owner(
            "DaemonSet",
            "spire-agent",
            "5d4c3b2a-0000-4000-8000-000000000001",
        )
        .container("spire-agent", "ghcr.io/spiffe/spire-agent:1.12.0");
    (pod, node)
}

fn status_of(reply: &Reply) -> Status {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

#[tokio::test]
async fn token_review_authenticates_a_projected_token() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let (pod, node) = agent();
    let spec = ServiceAccountToken::for_pod(&pod.build()).node("node-1", node.node_uid());
    let sa_uid = spec.service_account_uid.clone();
    let jwt = api.add_service_account_token(spec).unwrap();

    let (reply, tr) = review(&api, &jwt, &["spire-server"]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let raw = reply.json();
    assert_eq!(raw["kind"], "TokenReview");
    assert_eq!(raw["apiVersion"], "authentication.k8s.io/v1");
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.error, None);
    assert_eq!(status.audiences, Some(vec!["spire-server".to_owned()]));
    let user = status.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:spire:spire-agent")
    );
    assert_eq!(user.uid, Some(sa_uid));
    assert_eq!(
        user.groups.unwrap(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:spire",
            "system:authenticated"
        ]
    );
    let extra = user.extra.unwrap();
    let one = |k: &str| extra[&format!("authentication.kubernetes.io/{k}")].clone();
    assert_eq!(one("pod-name"), ["spire-agent-x2k9p"]);
    assert_eq!(one("pod-uid"), [pod.pod_uid()]);
    assert_eq!(one("node-name"), ["node-1"]);
    assert_eq!(one("node-uid"), [node.node_uid()]);
    assert!(one("credential-id")[0].starts_with("JTI="));
    assert_eq!(
        api.requests(),
        [format!("POST {TOKEN_REVIEW_PATH}")],
        "the request log"
    );
}

#[tokio::test]
async fn token_review_rejects_like_the_real_one() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let (pod, _) = agent();
    let jwt = api
        .add_service_account_token(ServiceAccountToken::for_pod(&pod.build()))
        .unwrap();

    let (reply, tr) = review(&api, &jwt, &["vault"]).await;
    assert_eq!(reply.status, 201);
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(false));
    let error = status.error.unwrap();
    assert!(
        error.contains(
            "token audiences [\"spire-server\"] is invalid for the target audiences [\"vault\"]"
        ),
        "{error}"
    );

    // No spec.audiences: the API server's own audience, which the token lacks.
    let (_, tr) = review(&api, &jwt, &[]).await;
    assert_eq!(tr.status.unwrap().authenticated, Some(false));

    let expired = api
        .add_service_account_token(ServiceAccountToken::for_pod(&pod.build()).expired())
        .unwrap();
    let (_, tr) = review(&api, &expired, &["spire-server"]).await;
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(false));
    assert!(status.error.unwrap().contains("expired"));

    let (_, tr) = review(&api, "not-a-jwt", &["spire-server"]).await;
    assert_eq!(tr.status.unwrap().authenticated, Some(false));
    // A well-formed token from another issuer is just as unknown.
    let other = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let foreign = other
        .add_service_account_token(ServiceAccountToken::for_pod(&pod.build()))
        .unwrap();
    let (_, tr) = review(&api, &foreign, &["spire-server"]).await;
    assert_eq!(tr.status.unwrap().authenticated, Some(false));

    assert!(api.revoke_service_account_token(&jwt));
    let (_, tr) = review(&api, &jwt, &["spire-server"]).await;
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(false));
    assert!(status.error.unwrap().contains("invalidated"));

    // An empty token is a bad request, as upstream.
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": ""},
    });
    let reply = send(
        &target(&api),
        Method::POST,
        TOKEN_REVIEW_PATH,
        Some(body.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(status_of(&reply).reason.as_deref(), Some("BadRequest"));
}

#[tokio::test]
async fn token_review_with_default_audience_and_several_audiences() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let (pod, _) = agent();
    let jwt = api
        .add_service_account_token(ServiceAccountToken::for_pod(&pod.build()).audiences([
            "https://kubernetes.default.svc.cluster.local",
            "spire-server",
        ]))
        .unwrap();
    let (_, tr) = review(&api, &jwt, &[]).await;
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(
        status.audiences.unwrap(),
        ["https://kubernetes.default.svc.cluster.local"]
    );
    let (_, tr) = review(&api, &jwt, &["other", "spire-server"]).await;
    assert_eq!(tr.status.unwrap().audiences.unwrap(), ["spire-server"]);
}

#[tokio::test]
async fn tokens_are_realistic_signed_jwts() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let (pod, node) = agent();
    let jwt = api
        .add_service_account_token(
            ServiceAccountToken::for_pod(&pod.build()).node("node-1", node.node_uid()),
        )
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode =
        |s: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap() };
    let header = decode(parts[0]);
    let claims = decode(parts[1]);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["sub"], "system:serviceaccount:spire:spire-agent");
    assert_eq!(claims["aud"], json!(["spire-server"]));
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    let k8s = &claims["kubernetes.io"];
    assert_eq!(k8s["namespace"], "spire");
    assert_eq!(k8s["pod"]["name"], "spire-agent-x2k9p");
    assert_eq!(k8s["pod"]["uid"], pod.pod_uid());
    assert_eq!(k8s["serviceaccount"]["name"], "spire-agent");
    assert_eq!(k8s["node"]["uid"], node.node_uid());

    // The signature verifies with the key the JWKS endpoint publishes.
    let jwks = get(&target(&api), "/openid/v1/jwks").await.unwrap().json();
    assert_eq!(jwks, api.issuer_jwks());
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], header["kid"]);
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap());
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &sig)
        .unwrap();
}

#[tokio::test]
async fn serves_pods_and_nodes_as_kubernetes_objects() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let (pod, node) = agent();
    api.add_pod(pod.build());
    api.add_node(node.build());
    let t = target(&api);

    let reply = get(&t, "/api/v1/namespaces/spire/pods/spire-agent-x2k9p")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["kind"], "Pod");
    let served: Pod = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(served, pod.build());

    let reply = get(&t, "/api/v1/nodes/node-1").await.unwrap();
    assert_eq!(reply.status, 200);
    let raw = reply.json();
    assert_eq!(raw["kind"], "Node");
    assert_eq!(
        raw["status"]["addresses"][0],
        json!({"type": "InternalIP", "address": "10.0.0.11"})
    );
    let served: Node = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(served, node.build());

    assert!(api.remove_pod("spire", "spire-agent-x2k9p"));
    let reply = get(&t, "/api/v1/namespaces/spire/pods/spire-agent-x2k9p")
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    let raw = reply.json();
    assert_eq!(raw["kind"], "Status");
    assert_eq!(raw["apiVersion"], "v1");
    let status = status_of(&reply);
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NotFound"));
    assert_eq!(status.code, Some(404));
    assert_eq!(
        status.message.as_deref(),
        Some("pods \"spire-agent-x2k9p\" not found")
    );

    assert!(api.remove_node("node-1"));
    let reply = get(&t, "/api/v1/nodes/node-1").await.unwrap();
    assert_eq!(
        status_of(&reply).message.as_deref(),
        Some("nodes \"node-1\" not found")
    );

    assert_eq!(get(&t, "/api/v1/secrets").await.unwrap().status, 404);
    assert_eq!(
        api.requests(),
        [
            "GET /api/v1/namespaces/spire/pods/spire-agent-x2k9p",
            "GET /api/v1/nodes/node-1",
            "GET /api/v1/namespaces/spire/pods/spire-agent-x2k9p",
            "GET /api/v1/nodes/node-1",
            "GET /api/v1/secrets",
        ]
    );
}

#[tokio::test]
async fn requires_its_bearer_token() {
    let api = FakeApiServer::start(ApiServerOptions {
        token: "server-credential".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(api.token(), "server-credential");
    let mut t = target(&api);
    for token in [None, Some("wrong".to_owned())] {
        t.token = token;
        let reply = get(&t, "/api/v1/nodes/node-1").await.unwrap();
        assert_eq!(reply.status, 401);
        let status = status_of(&reply);
        assert_eq!(status.reason.as_deref(), Some("Unauthorized"));
        assert_eq!(status.code, Some(401));
        let reply = send(&t, Method::POST, TOKEN_REVIEW_PATH, Some("{}".into()))
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
    }
}

#[tokio::test]
async fn injected_failures_are_v1_status() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    api.set_failure(Some(StatusCode::SERVICE_UNAVAILABLE));
    let reply = get(&target(&api), "/api/v1/nodes/node-1").await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(
        status_of(&reply).reason.as_deref(),
        Some("ServiceUnavailable")
    );
    api.set_failure(None);
    assert_eq!(
        get(&target(&api), "/api/v1/nodes/node-1")
            .await
            .unwrap()
            .status,
        404
    );
}

#[tokio::test]
async fn bound_pod_validation_when_asked() {
    let api = FakeApiServer::start(ApiServerOptions {
        validate_bound_pods: true,
        ..Default::default()
    })
    .unwrap();
    let (pod, _) = agent();
    let jwt = api
        .add_service_account_token(ServiceAccountToken::for_pod(&pod.build()))
        .unwrap();
    let (_, tr) = review(&api, &jwt, &["spire-server"]).await;
    let status = tr.status.unwrap();
    assert_eq!(status.authenticated, Some(false), "pod not added yet");
    assert!(status.error.unwrap().contains("invalidated"));

    api.add_pod(pod.build());
    let (_, tr) = review(&api, &jwt, &["spire-server"]).await;
    assert_eq!(tr.status.unwrap().authenticated, Some(true));

    // Same name, new UID: the pod was recreated, the old token is dead.
    api.add_pod(PodBuilder::new("spire", "spire-agent-x2k9p").build());
    let (_, tr) = review(&api, &jwt, &["spire-server"]).await;
    assert_eq!(tr.status.unwrap().authenticated, Some(false));
}
