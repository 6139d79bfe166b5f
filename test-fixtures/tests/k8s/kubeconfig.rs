//! Kubeconfig files parse as YAML in kubectl's shape and work.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_yaml_ng::Value;
use spinel_test_fixtures::k8s::{ApiServerOptions, FakeApiServer};

use crate::client::{get, Target};

fn load(path: &std::path::Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn kubeconfig_with_inline_ca_is_usable() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    api.write_kubeconfig(&path).unwrap();
    let doc = load(&path);
    assert_eq!(doc["apiVersion"].as_str(), Some("v1"));
    assert_eq!(doc["kind"].as_str(), Some("Config"));
    let current = doc["current-context"].as_str().unwrap();
    let contexts = doc["contexts"].as_sequence().unwrap();
    let context = contexts
        .iter()
        .find(|c| c["name"].as_str() == Some(current))
        .unwrap();
    let cluster_name = context["context"]["cluster"].as_str().unwrap();
    let user_name = context["context"]["user"].as_str().unwrap();
    let cluster = doc["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(cluster_name))
        .unwrap();
    let user = doc["users"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|u| u["name"].as_str() == Some(user_name))
        .unwrap();
    let server = cluster["cluster"]["server"].as_str().unwrap();
    assert_eq!(server, api.url());
    let ca = STANDARD
        .decode(
            cluster["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(String::from_utf8(ca).unwrap(), api.ca_pem());
    let token = user["user"]["token"].as_str().unwrap();
    assert_eq!(token, api.token());

    // What it says is enough to talk to the server.
    let port = server.rsplit(':').next().unwrap().parse().unwrap();
    let t = Target {
        port,
        ca_pem: Some(api.ca_pem()),
        token: Some(token.to_owned()),
        ..Default::default()
    };
    assert_eq!(get(&t, "/api/v1/nodes/none").await.unwrap().status, 404);
}

#[test]
fn kubeconfig_with_ca_file() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let ca_path = dir.path().join("ca dir with space.crt");
    api.write_kubeconfig_with_ca_file(&path, &ca_path).unwrap();
    let doc = load(&path);
    let cluster = &doc["clusters"][0]["cluster"];
    assert!(cluster.get("certificate-authority-data").is_none());
    let file = cluster["certificate-authority"].as_str().unwrap();
    assert_eq!(std::path::Path::new(file), ca_path);
    assert_eq!(std::fs::read_to_string(file).unwrap(), api.ca_pem());
}
