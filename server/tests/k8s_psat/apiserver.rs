//! The k8s_psat Kubernetes client against the shared fake kube-apiserver
//! (`spinel_test_fixtures::k8s::FakeApiServer`): kubeconfigs with an inline
//! CA and a CA file, TokenReview of real ES256 projected tokens, pods and
//! nodes as `k8s-openapi` serializes them, and 401/403/404.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use spinel_server::kube::{ClusterConnection, KubeApi, KubeClient, KubeError};
use spinel_test_fixtures::k8s::{
    ApiServerOptions, FakeApiServer, NodeBuilder, PodBuilder, ServiceAccountToken,
};

const AUD: &str = "spire-server";

#[tokio::test(flavor = "multi_thread")]
async fn client_against_the_fake_apiserver() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let node = NodeBuilder::new("node-1").label("topology.kubernetes.io/zone", "z1");
    let pod = PodBuilder::new("spire", "spire-agent-x2k9p")
        .service_account("spire-agent")
        .node_name("node-1")
        .host_ip("10.0.0.7")
        .label("app", "spire-agent");
    api.add_node(node.build());
    api.add_pod(pod.build());
    let token = api
        .add_service_account_token(
            ServiceAccountToken::for_pod(&pod.build()).node("node-1", node.node_uid()),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let inline = dir.path().join("kubeconfig");
    api.write_kubeconfig(&inline).unwrap();
    let with_file = dir.path().join("kubeconfig-ca-file");
    api.write_kubeconfig_with_ca_file(&with_file, &dir.path().join("ca.crt"))
        .unwrap();

    for path in [&inline, &with_file] {
        let client = KubeClient::new(ClusterConnection::from_kubeconfig(path).unwrap()).unwrap();
        let review = client
            .token_review(&token, &[AUD.to_owned()])
            .await
            .unwrap();
        assert!(review.authenticated, "{review:?}");
        assert_eq!(
            review.user.username,
            "system:serviceaccount:spire:spire-agent"
        );
        assert!(review.audiences.contains(&AUD.to_owned()), "{review:?}");
        assert_eq!(
            review.user.extra["authentication.kubernetes.io/pod-name"],
            ["spire-agent-x2k9p"]
        );
        assert_eq!(
            review.user.extra["authentication.kubernetes.io/pod-uid"],
            [pod.pod_uid()]
        );

        let wrong = client
            .token_review(&token, &["vault".to_owned()])
            .await
            .unwrap();
        assert!(!wrong.authenticated, "{wrong:?}");

        let got = client.get_pod("spire", "spire-agent-x2k9p").await.unwrap();
        assert_eq!(got.metadata.uid, pod.pod_uid());
        assert_eq!(got.spec.node_name, "node-1");
        assert_eq!(got.status.host_ip, "10.0.0.7");
        assert_eq!(got.metadata.labels["app"], "spire-agent");
        let got = client.get_node("node-1").await.unwrap();
        assert_eq!(got.metadata.uid, node.node_uid());
        assert_eq!(got.metadata.labels["topology.kubernetes.io/zone"], "z1");

        let e = client.get_pod("spire", "missing").await.unwrap_err();
        assert!(
            matches!(e, KubeError::NotFound { kind: "pod", .. }),
            "{e:?}"
        );
        let e = client.get_node("missing").await.unwrap_err();
        assert!(
            matches!(e, KubeError::NotFound { kind: "node", .. }),
            "{e:?}"
        );
    }

    let client = KubeClient::new(ClusterConnection::from_kubeconfig(&inline).unwrap()).unwrap();
    api.set_failure(Some(StatusCode::FORBIDDEN));
    let e = client.get_node("node-1").await.unwrap_err();
    assert!(
        matches!(
            e,
            KubeError::Forbidden {
                action: "get nodes",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("RBAC"), "{e}");
    let e = client
        .token_review(&token, &[AUD.to_owned()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("create tokenreviews"), "{e}");
    assert!(!e.to_string().contains(&token));
    api.set_failure(None);

    // Credentials the API server does not accept: 401.
    let text = std::fs::read_to_string(&inline).unwrap();
    let bad = dir.path().join("kubeconfig-bad-token");
    std::fs::write(&bad, text.replace(api.token(), "not-the-token")).unwrap();
    let client = KubeClient::new(ClusterConnection::from_kubeconfig(&bad).unwrap()).unwrap();
    let e = client
        .get_pod("spire", "spire-agent-x2k9p")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            KubeError::Unauthorized {
                action: "get pods",
                ..
            }
        ),
        "{e:?}"
    );
}
