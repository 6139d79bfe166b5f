//! `NodeAttestor "k8s_psat"`: a Kubernetes projected service account token.
//!
//! The agent runs in a pod whose spec projects a service account token
//! with the server's audience to `token_path`; kubelet rotates that file,
//! so it is read again for every attestation. The payload is SPIRE's:
//! `{"cluster": "<cluster>", "token": "<jwt>"}`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use spinel_proto::spire::api::types;
use zeroize::Zeroizing;

use super::AttestError;

/// The attestor's name in config files and `AttestationData.type`.
pub const NAME: &str = "k8s_psat";
/// Where the token is projected by default (SPIRE's).
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/tokens/spire-agent";

/// The agent's `k8s_psat` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sPsatConfig {
    /// The cluster name, as configured on the server.
    pub cluster: String,
    /// The projected token file.
    pub token_path: PathBuf,
}

#[derive(Serialize)]
struct Payload<'a> {
    cluster: &'a str,
    token: &'a str,
}

/// Reads the token at `path`: trimmed, and an error naming the path when
/// the file is missing, unreadable or empty.
pub fn read_token(path: &Path) -> Result<Zeroizing<String>, AttestError> {
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| {
            AttestError::Evidence(format!(
                "cannot read the service account token {}: {e}",
                path.display()
            ))
        })?;
    let token = Zeroizing::new(text.trim().to_owned());
    if token.is_empty() {
        return Err(AttestError::Evidence(format!(
            "the service account token {} is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// The attestation data with a freshly read token (a secret: never log the
/// result).
pub fn attestation_data(config: &K8sPsatConfig) -> Result<types::AttestationData, AttestError> {
    let token = read_token(&config.token_path)?;
    let payload = serde_json::to_vec(&Payload {
        cluster: &config.cluster,
        token: &token,
    })
    .map_err(|e| AttestError::Evidence(format!("cannot encode the payload: {e}")))?;
    Ok(types::AttestationData {
        r#type: NAME.into(),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_spire_shaped_and_read_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first.token.value\n").unwrap();
        let config = K8sPsatConfig {
            cluster: "demo".into(),
            token_path: path.clone(),
        };
        let data = attestation_data(&config).unwrap();
        assert_eq!(data.r#type, "k8s_psat");
        let v: serde_json::Value = serde_json::from_slice(&data.payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cluster": "demo", "token": "first.token.value"})
        );
        std::fs::write(&path, "second.token.value").unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&attestation_data(&config).unwrap().payload).unwrap();
        assert_eq!(v["token"], "second.token.value");
    }

    #[test]
    fn missing_or_empty_token_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let config = K8sPsatConfig {
            cluster: "demo".into(),
            token_path: path.clone(),
        };
        let err = attestation_data(&config).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        std::fs::write(&path, " \n").unwrap();
        let err = attestation_data(&config).unwrap_err().to_string();
        assert!(
            err.contains("is empty") && err.contains(&path.display().to_string()),
            "{err}"
        );
    }
}
