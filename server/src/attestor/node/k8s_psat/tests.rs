//! The attestor against a hand-written [`KubeApi`] fake: every refusal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use spinel_spiffe::id;

use super::attestor::{ClusterConfig, POD_NAME_KEY, POD_UID_KEY};
use super::K8sPsatAttestor;
use crate::attestor::node::{AttestError, NoChallenges, NodeAttestor};
use crate::kube::{
    KubeApi, KubeError, Node, ObjectMeta, Pod, PodSpec, PodStatus, TokenReviewStatus, UserInfo,
};

const TOKEN: &str = "header.payload-secret-token.signature";

#[derive(Debug)]
struct FakeKube {
    review: Mutex<Result<TokenReviewStatus, KubeError>>,
    pods: BTreeMap<(String, String), Pod>,
    nodes: BTreeMap<String, Node>,
    asked_audiences: Mutex<Vec<String>>,
}

#[async_trait]
impl KubeApi for FakeKube {
    async fn token_review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<TokenReviewStatus, KubeError> {
        assert_eq!(token, TOKEN);
        *self.asked_audiences.lock().unwrap() = audiences.to_vec();
        self.review.lock().unwrap().clone()
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, KubeError> {
        self.pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or(KubeError::NotFound {
                kind: "pod",
                name: format!("{namespace}/{name}"),
            })
    }

    async fn get_node(&self, name: &str) -> Result<Node, KubeError> {
        self.nodes.get(name).cloned().ok_or(KubeError::NotFound {
            kind: "node",
            name: name.to_owned(),
        })
    }
}

fn good_review() -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: true,
        user: UserInfo {
            username: "system:serviceaccount:spire:spire-agent".into(),
            uid: "sa-uid".into(),
            extra: BTreeMap::from([
                (POD_NAME_KEY.to_owned(), vec!["spire-agent-x1".to_owned()]),
                (POD_UID_KEY.to_owned(), vec!["pod-uid-1".to_owned()]),
            ]),
        },
        audiences: vec!["spire-server".into()],
        error: String::new(),
    }
}

fn fake() -> FakeKube {
    let pod = Pod {
        metadata: ObjectMeta {
            name: "spire-agent-x1".into(),
            namespace: "spire".into(),
            uid: "pod-uid-1".into(),
            labels: BTreeMap::from([
                ("app".to_owned(), "spire-agent".to_owned()),
                ("secret".to_owned(), "no".to_owned()),
            ]),
        },
        spec: PodSpec {
            node_name: "node-a".into(),
        },
        status: PodStatus {
            host_ip: "10.0.0.7".into(),
        },
    };
    let node = Node {
        metadata: ObjectMeta {
            name: "node-a".into(),
            namespace: String::new(),
            uid: "node-uid-a".into(),
            labels: BTreeMap::from([
                ("zone".to_owned(), "eu-1".to_owned()),
                ("hidden".to_owned(), "x".to_owned()),
            ]),
        },
    };
    FakeKube {
        review: Mutex::new(Ok(good_review())),
        pods: BTreeMap::from([(("spire".to_owned(), "spire-agent-x1".to_owned()), pod)]),
        nodes: BTreeMap::from([("node-a".to_owned(), node)]),
        asked_audiences: Mutex::new(Vec::new()),
    }
}

fn config() -> ClusterConfig {
    ClusterConfig {
        service_account_allow_list: ["spire:spire-agent".to_owned()].into(),
        audience: vec!["spire-server".into()],
        allowed_node_label_keys: ["zone".to_owned()].into(),
        allowed_pod_label_keys: ["app".to_owned()].into(),
    }
}

fn attestor(kube: FakeKube) -> (K8sPsatAttestor, Arc<FakeKube>) {
    let kube = Arc::new(kube);
    let td = id::parse_trust_domain("example.org").unwrap();
    let a = K8sPsatAttestor::new(td).with_cluster("demo", config(), kube.clone());
    (a, kube)
}

fn payload(cluster: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"cluster": cluster, "token": TOKEN})).unwrap()
}

async fn attest(kube: FakeKube) -> Result<crate::attestor::node::AttestationResult, AttestError> {
    let (a, _) = attestor(kube);
    a.attest(&payload("demo"), &mut NoChallenges).await
}

fn refusal(result: Result<crate::attestor::node::AttestationResult, AttestError>) -> String {
    let e = result.unwrap_err();
    let text = e.to_string();
    assert!(!text.contains("secret-token"), "token leaked: {text}");
    text
}

#[tokio::test]
async fn attests_with_id_selectors_and_reattest() {
    let (a, kube) = attestor(fake());
    let result = a.attest(&payload("demo"), &mut NoChallenges).await.unwrap();
    assert_eq!(
        result.agent_id.to_string(),
        "spiffe://example.org/spire/agent/k8s_psat/demo/node-uid-a"
    );
    assert!(result.can_reattest);
    let got: Vec<String> = result.selectors.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        got,
        [
            "k8s_psat:cluster:demo",
            "k8s_psat:agent_ns:spire",
            "k8s_psat:agent_sa:spire-agent",
            "k8s_psat:agent_pod_name:spire-agent-x1",
            "k8s_psat:agent_pod_uid:pod-uid-1",
            "k8s_psat:agent_node_ip:10.0.0.7",
            "k8s_psat:agent_node_name:node-a",
            "k8s_psat:agent_node_uid:node-uid-a",
            "k8s_psat:agent_node_label:zone:eu-1",
            "k8s_psat:agent_pod_label:app:spire-agent",
        ]
    );
    assert_eq!(*kube.asked_audiences.lock().unwrap(), ["spire-server"]);
}

#[tokio::test]
async fn malformed_payloads_are_invalid_evidence() {
    let (a, _) = attestor(fake());
    for bad in [
        b"not json".to_vec(),
        br#"{"cluster":"","token":"t"}"#.to_vec(),
        br#"{"cluster":"demo","token":""}"#.to_vec(),
    ] {
        let e = a.attest(&bad, &mut NoChallenges).await.unwrap_err();
        assert!(matches!(e, AttestError::InvalidEvidence(_)), "{e:?}");
    }
}

#[tokio::test]
async fn unknown_cluster_is_denied_by_name() {
    let (a, _) = attestor(fake());
    let e = a.attest(&payload("other"), &mut NoChallenges).await;
    let text = refusal(e);
    assert!(text.contains("\"other\""), "{text}");
}

#[tokio::test]
async fn unauthenticated_token_is_denied_with_the_review_error() {
    let kube = fake();
    *kube.review.lock().unwrap() = Ok(TokenReviewStatus {
        authenticated: false,
        error: "token has expired".into(),
        ..TokenReviewStatus::default()
    });
    let text = refusal(attest(kube).await);
    assert!(
        text.contains("token not authenticated: token has expired"),
        "{text}"
    );
}

#[tokio::test]
async fn audience_mismatch_is_denied() {
    let kube = fake();
    let mut review = good_review();
    review.audiences = vec!["other".into()];
    *kube.review.lock().unwrap() = Ok(review);
    let text = refusal(attest(kube).await);
    assert!(text.contains("audiences"), "{text}");
}

#[tokio::test]
async fn non_service_account_user_is_denied() {
    for user in [
        "alice",
        "system:serviceaccount:spire",
        "system:serviceaccount::x",
    ] {
        let kube = fake();
        let mut review = good_review();
        review.user.username = user.into();
        *kube.review.lock().unwrap() = Ok(review);
        let text = refusal(attest(kube).await);
        assert!(text.contains("not a service account"), "{user}: {text}");
    }
}

#[tokio::test]
async fn service_account_outside_the_allow_list_is_denied() {
    let kube = fake();
    let mut review = good_review();
    review.user.username = "system:serviceaccount:default:default".into();
    *kube.review.lock().unwrap() = Ok(review);
    let text = refusal(attest(kube).await);
    assert!(
        text.contains("\"default:default\" is not an allowed service account"),
        "{text}"
    );
}

#[tokio::test]
async fn missing_pod_name_or_uid_is_denied() {
    for key in [POD_NAME_KEY, POD_UID_KEY] {
        let kube = fake();
        let mut review = good_review();
        review.user.extra.remove(key);
        *kube.review.lock().unwrap() = Ok(review);
        let text = refusal(attest(kube).await);
        assert!(text.contains("from token review status"), "{key}: {text}");
    }
}

#[tokio::test]
async fn missing_pod_is_denied() {
    let mut kube = fake();
    kube.pods.clear();
    let text = refusal(attest(kube).await);
    assert!(
        text.contains("pod \"spire/spire-agent-x1\" not found"),
        "{text}"
    );
}

#[tokio::test]
async fn pod_uid_mismatch_is_denied() {
    let mut kube = fake();
    for pod in kube.pods.values_mut() {
        pod.metadata.uid = "another-pod".into();
    }
    let text = refusal(attest(kube).await);
    assert!(text.contains("the token is bound to"), "{text}");
}

#[tokio::test]
async fn unscheduled_pod_and_missing_node_are_denied() {
    let mut kube = fake();
    for pod in kube.pods.values_mut() {
        pod.spec.node_name.clear();
    }
    let text = refusal(attest(kube).await);
    assert!(text.contains("not scheduled"), "{text}");

    let mut kube = fake();
    kube.nodes.clear();
    let text = refusal(attest(kube).await);
    assert!(text.contains("node \"node-a\" not found"), "{text}");
}

#[tokio::test]
async fn api_failures_are_internal_and_name_the_permission() {
    let kube = fake();
    *kube.review.lock().unwrap() = Err(KubeError::Forbidden {
        server: "https://k8s:6443".into(),
        action: "create tokenreviews",
    });
    let e = attest(kube).await.unwrap_err();
    assert!(matches!(e, AttestError::Internal(_)), "{e:?}");
    assert!(e.to_string().contains("create tokenreviews"), "{e}");
}
