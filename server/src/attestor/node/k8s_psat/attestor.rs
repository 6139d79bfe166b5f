//! [`K8sPsatAttestor`]: the checks of a projected service account token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use spinel_spiffe::{id, Selector, TrustDomain};

use super::NAME;
use crate::attestor::node::{AttestError, AttestationResult, ChallengeChannel, NodeAttestor};
use crate::kube::{KubeApi, KubeError};

/// `user.extra` key of the pod a projected token is bound to.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// `user.extra` key of that pod's UID.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
/// Prefix of service account usernames.
const SA_PREFIX: &str = "system:serviceaccount:";

/// The checks configured for one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `<namespace>:<service account>` pairs allowed to attest.
    pub service_account_allow_list: BTreeSet<String>,
    /// Audiences the token must be valid for (one of them at least).
    pub audience: Vec<String>,
    /// Node label keys that become `agent_node_label:` selectors.
    pub allowed_node_label_keys: BTreeSet<String>,
    /// Pod label keys that become `agent_pod_label:` selectors.
    pub allowed_pod_label_keys: BTreeSet<String>,
}

#[derive(Debug)]
struct Cluster {
    config: ClusterConfig,
    api: Arc<dyn KubeApi>,
}

/// Attests agents by their projected service account tokens.
#[derive(Debug)]
pub struct K8sPsatAttestor {
    trust_domain: TrustDomain,
    clusters: BTreeMap<String, Cluster>,
}

/// The payload the agent sends (SPIRE's shape).
#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    token: String,
}

impl K8sPsatAttestor {
    /// An attestor for `trust_domain` with no cluster yet.
    pub fn new(trust_domain: TrustDomain) -> Self {
        K8sPsatAttestor {
            trust_domain,
            clusters: BTreeMap::new(),
        }
    }

    /// Adds cluster `name`, reached through `api`.
    pub fn with_cluster(
        mut self,
        name: impl Into<String>,
        config: ClusterConfig,
        api: Arc<dyn KubeApi>,
    ) -> Self {
        self.clusters.insert(name.into(), Cluster { config, api });
        self
    }

    /// Names of the configured clusters.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }
}

fn denied(message: impl Into<String>) -> AttestError {
    AttestError::Denied(message.into())
}

/// A Kubernetes failure as an attestation error: a missing object is the
/// agent's problem, anything else the server's.
fn kube_error(context: &str, e: KubeError) -> AttestError {
    match e {
        KubeError::NotFound { .. } => denied(format!("{context}: {e}")),
        other => AttestError::Internal(format!("{context}: {other}")),
    }
}

fn selector(value: String) -> Result<Selector, AttestError> {
    Selector::new(NAME, value)
        .map_err(|e| AttestError::Internal(format!("cannot build a node selector: {e}")))
}

fn first_extra<'a>(extra: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    extra
        .get(key)
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

#[async_trait]
impl NodeAttestor for K8sPsatAttestor {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn attest(
        &self,
        payload: &[u8],
        _challenge: &mut dyn ChallengeChannel,
    ) -> Result<AttestationResult, AttestError> {
        let payload: Payload = serde_json::from_slice(payload).map_err(|_| {
            AttestError::InvalidEvidence(
                "failed to unmarshal data payload: expected JSON {\"cluster\": ..., \"token\": ...}"
                    .into(),
            )
        })?;
        if payload.cluster.is_empty() {
            return Err(AttestError::InvalidEvidence(
                "missing cluster in attestation data".into(),
            ));
        }
        if payload.token.is_empty() {
            return Err(AttestError::InvalidEvidence(
                "missing token in attestation data".into(),
            ));
        }
        let cluster_name = payload.cluster.as_str();
        let cluster = self
            .clusters
            .get(cluster_name)
            .ok_or_else(|| denied(format!("not configured for cluster {cluster_name:?}")))?;
        let config = &cluster.config;

        let review = cluster
            .api
            .token_review(&payload.token, &config.audience)
            .await
            .map_err(|e| kube_error("unable to validate token with TokenReview API", e))?;
        if !review.authenticated {
            let why = if review.error.is_empty() {
                "no reason given".to_owned()
            } else {
                review.error.clone()
            };
            return Err(denied(format!("token not authenticated: {why}")));
        }
        if !review.audiences.iter().any(|a| config.audience.contains(a)) {
            return Err(denied(format!(
                "token audiences {:?} do not include any of the configured audiences {:?}",
                review.audiences, config.audience
            )));
        }
        let username = review.user.username.as_str();
        let (namespace, service_account) = username
            .strip_prefix(SA_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
            .ok_or_else(|| {
                denied(format!(
                    "token username {username:?} is not a service account (system:serviceaccount:<namespace>:<name>)"
                ))
            })?;
        let allowed = format!("{namespace}:{service_account}");
        if !config.service_account_allow_list.contains(&allowed) {
            return Err(denied(format!(
                "{allowed:?} is not an allowed service account"
            )));
        }
        let pod_name = first_extra(&review.user.extra, POD_NAME_KEY)
            .ok_or_else(|| denied("fail to get pod name from token review status (is the token a projected service account token?)"))?;
        let pod_uid = first_extra(&review.user.extra, POD_UID_KEY)
            .ok_or_else(|| denied("fail to get pod UID from token review status (is the token a projected service account token?)"))?;

        let pod = cluster
            .api
            .get_pod(namespace, pod_name)
            .await
            .map_err(|e| kube_error("fail to get pod from k8s API server", e))?;
        if pod.metadata.uid != pod_uid {
            return Err(denied(format!(
                "pod {namespace}/{pod_name} has UID {:?}, the token is bound to {pod_uid:?}",
                pod.metadata.uid
            )));
        }
        let node_name = pod.spec.node_name.as_str();
        if node_name.is_empty() {
            return Err(denied(format!(
                "pod {namespace}/{pod_name} is not scheduled on a node"
            )));
        }
        let node = cluster
            .api
            .get_node(node_name)
            .await
            .map_err(|e| kube_error("fail to get node from k8s API server", e))?;
        let node_uid = node.metadata.uid.as_str();
        if node_uid.is_empty() {
            return Err(AttestError::Internal(format!(
                "node {node_name:?} has no UID"
            )));
        }
        let agent_id = id::agent_id(&self.trust_domain, NAME, &[cluster_name, node_uid])
            .map_err(|e| {
                AttestError::Internal(format!(
                    "cannot make an agent ID from cluster {cluster_name:?} and node UID {node_uid:?}: {e}"
                ))
            })?;

        let mut values = vec![
            format!("cluster:{cluster_name}"),
            format!("agent_ns:{namespace}"),
            format!("agent_sa:{service_account}"),
            format!("agent_pod_name:{pod_name}"),
            format!("agent_pod_uid:{pod_uid}"),
            format!("agent_node_ip:{}", pod.status.host_ip),
            format!("agent_node_name:{node_name}"),
            format!("agent_node_uid:{node_uid}"),
        ];
        for (key, value) in &node.metadata.labels {
            if config.allowed_node_label_keys.contains(key) {
                values.push(format!("agent_node_label:{key}:{value}"));
            }
        }
        for (key, value) in &pod.metadata.labels {
            if config.allowed_pod_label_keys.contains(key) {
                values.push(format!("agent_pod_label:{key}:{value}"));
            }
        }
        let selectors = values
            .into_iter()
            .map(selector)
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(
            cluster = cluster_name,
            namespace,
            service_account,
            pod = pod_name,
            node = node_name,
            "k8s_psat token verified"
        );
        Ok(AttestationResult {
            agent_id,
            selectors,
            can_reattest: true,
        })
    }
}
