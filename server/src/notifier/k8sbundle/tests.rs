//! [`publish`] against a hand-written [`ConfigMapWriter`], in paused time.

use std::sync::Mutex;

use super::*;

/// Records writes; fails the first `failures` of them with a 404.
#[derive(Default)]
struct FakeWriter {
    failures: Mutex<usize>,
    attempts: Mutex<Vec<(tokio::time::Instant, String)>>,
    written: Mutex<Vec<String>>,
}

#[async_trait]
impl ConfigMapWriter for FakeWriter {
    async fn write(&self, target: &ConfigMapTarget, value: &str) -> Result<(), KubeError> {
        self.attempts
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), value.to_owned()));
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(KubeError::NotFound {
                kind: "configmap",
                name: format!("{}/{}", target.namespace, target.config_map),
            });
        }
        self.written.lock().unwrap().push(value.to_owned());
        Ok(())
    }
}

fn target() -> ConfigMapTarget {
    ConfigMapTarget {
        namespace: "spire".into(),
        config_map: "spire-bundle".into(),
        key: "bundle.crt".into(),
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn writes_each_new_bundle_once() {
    let writer = Arc::new(FakeWriter::default());
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(publish(writer.clone(), target(), rx));
    settle().await;
    assert!(
        writer.attempts.lock().unwrap().is_empty(),
        "nothing known yet"
    );
    tx.send_replace(Some("A".into()));
    settle().await;
    tx.send_replace(Some("A".into()));
    settle().await;
    tx.send_replace(Some("B".into()));
    settle().await;
    assert_eq!(*writer.written.lock().unwrap(), ["A", "B"]);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("publish ends with its channel")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn retries_with_capped_backoff_and_writes_the_latest() {
    let writer = Arc::new(FakeWriter {
        failures: Mutex::new(8),
        ..FakeWriter::default()
    });
    let (tx, rx) = watch::channel(Some("A".into()));
    let _task = tokio::spawn(publish(writer.clone(), target(), rx));
    settle().await;
    // A newer bundle arrives while the first is being retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.send_replace(Some("B".into()));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(*writer.written.lock().unwrap(), ["B"], "only the latest");
    let attempts = writer.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 9);
    let gaps: Vec<u64> = attempts
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs())
        .collect();
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30, 30]);
    // Attempts at 0s and 1s carry A; from 3s on, B (sent at 1.5s).
    assert!(attempts[..2].iter().all(|(_, v)| v == "A"));
    assert!(attempts[2..].iter().all(|(_, v)| v == "B"));
}

/// The real client and [`publish`] against the fake kube-apiserver: a
/// missing ConfigMap is retried (never created), then patched; other keys
/// stay.
#[tokio::test(flavor = "multi_thread")]
async fn kube_client_patches_the_fake_apiserver() {
    use crate::kube::ClusterConnection;
    use spinel_test_fixtures::k8s::{ApiServerOptions, FakeApiServer};

    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let client = KubeClient::new(ClusterConnection::from_kubeconfig(&kubeconfig).unwrap()).unwrap();

    let err = client.write(&target(), "PEM-1").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"configmap "spire/spire-bundle" not found"#
    );
    assert!(api.config_map("spire", "spire-bundle").is_none(), "created");

    let (tx, rx) = watch::channel(Some("PEM-1".to_owned()));
    let task = tokio::spawn(publish(Arc::new(client), target(), rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.add_config_map(
        "spire",
        "spire-bundle",
        [("other".to_owned(), "kept".to_owned())].into(),
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while api.config_map_value("spire", "spire-bundle", "bundle.crt") != Some("PEM-1".into()) {
        assert!(tokio::time::Instant::now() < until, "{:?}", api.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.send_replace(Some("PEM-2".to_owned()));
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while api.config_map_value("spire", "spire-bundle", "bundle.crt") != Some("PEM-2".into()) {
        assert!(tokio::time::Instant::now() < until, "{:?}", api.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        api.config_map_value("spire", "spire-bundle", "other")
            .as_deref(),
        Some("kept")
    );
    assert!(api
        .requests()
        .iter()
        .all(|r| r == "PATCH /api/v1/namespaces/spire/configmaps/spire-bundle"));
    task.abort();
}
