use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const PID: i32 = 4242;
const POD_UID: &str = "8a1f7c3e-52d4-4b9e-a6c1-3f0e9d2b7a65";
const CID: &str = "b8e4f2a6c0d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1";

/// A fake `/proc` holding one process.
struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new(cgroup: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let proc = FakeProc { dir };
        std::fs::create_dir_all(proc.pid_dir()).unwrap();
        std::fs::write(proc.pid_dir().join("cgroup"), cgroup).unwrap();
        proc.set_start_time(1000);
        proc
    }

    fn pid_dir(&self) -> PathBuf {
        self.dir.path().join(PID.to_string())
    }

    fn set_start_time(&self, t: u64) {
        let stat =
            format!("{PID} (app) S 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 {t} 1000 10 0\n");
        std::fs::write(self.pid_dir().join("stat"), stat).unwrap();
    }

    fn root(&self) -> Root {
        Root::new(self.dir.path(), self.dir.path())
    }
}

fn in_pod_cgroup() -> String {
    include_str!("testdata/containerd_systemd_v2.cgroup").to_owned()
}

fn pod(with_container: bool) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.uid = POD_UID.into();
    pod.metadata.name = "api-0".into();
    pod.metadata.namespace = "payments".into();
    pod.spec.service_account_name = "api".into();
    pod.spec.node_name = "node-1".into();
    if with_container {
        pod.status.container_statuses.push(ContainerStatus {
            name: "api".into(),
            image: "ghcr.io/acme/api:1".into(),
            image_id: "ghcr.io/acme/api@sha256:aa".into(),
            container_id: format!("containerd://{CID}"),
        });
    }
    pod
}

/// Answers the scripted lists in turn (the last one forever), counting
/// fetches; runs `during` inside each fetch.
#[derive(Default)]
struct Scripted {
    lists: Vec<PodList>,
    fetches: AtomicUsize,
    during: Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted").finish_non_exhaustive()
    }
}

#[async_trait]
impl PodSource for Scripted {
    async fn fetch(&self) -> Result<PodList, K8sError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.during.lock().unwrap().as_ref() {
            f();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(self.lists[n.min(self.lists.len() - 1)].clone())
    }
}

fn settings() -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        server_name: "127.0.0.1".into(),
        port: 10250,
        transport: Transport::Plain,
        max_poll_attempts: 5,
        poll_retry_interval: Duration::from_millis(500),
        reload_interval: Duration::from_secs(60),
        disable_container_selectors: false,
        verbose_container_locator_logs: false,
    }
}

fn list(pods: Vec<Pod>) -> PodList {
    PodList { items: pods }
}

fn attestor(proc: &FakeProc, source: Arc<Scripted>, settings: Settings) -> K8sAttestor {
    K8sAttestor::with_source(settings, source, proc.root())
}

const CALLER: Caller = Caller {
    pid: PID,
    uid: 0,
    gid: 0,
    process: None,
};

fn has(selectors: &[Selector], s: &str) -> bool {
    selectors.iter().any(|x| x.to_string() == s)
}

#[tokio::test(start_paused = true)]
async fn retries_until_the_container_is_listed() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let source = Arc::new(Scripted {
        lists: vec![list(vec![]), list(vec![pod(false)]), list(vec![pod(true)])],
        ..Default::default()
    });
    let a = attestor(&proc, source.clone(), settings());
    let start = Instant::now();
    let got = a.attest(&CALLER).await.unwrap();
    assert_eq!(source.fetches.load(Ordering::SeqCst), 3);
    // Three lists, a poll interval apart.
    assert!(Instant::now() - start >= Duration::from_millis(1000));
    assert!(has(
        &got,
        "k8s:pod-uid:8a1f7c3e-52d4-4b9e-a6c1-3f0e9d2b7a65"
    ));
    assert!(has(&got, "k8s:container-name:api"));
    assert!(has(&got, "k8s:container-image:ghcr.io/acme/api@sha256:aa"));
}

#[tokio::test(start_paused = true)]
async fn pod_without_container_status_gives_up_with_a_clear_error() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let source = Arc::new(Scripted {
        lists: vec![list(vec![pod(false)])],
        ..Default::default()
    });
    let err = attestor(&proc, source.clone(), settings())
        .attest(&CALLER)
        .await
        .unwrap_err();
    assert_eq!(source.fetches.load(Ordering::SeqCst), 5);
    let text = err.to_string();
    assert!(
        text.contains(&PID.to_string()) && text.contains(POD_UID) && text.contains(CID),
        "{text}"
    );
    assert!(text.contains("no status for container"), "{text}");

    let source = Arc::new(Scripted {
        lists: vec![list(vec![])],
        ..Default::default()
    });
    let err = attestor(&proc, source, settings())
        .attest(&CALLER)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not among the kubelet's pods"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn disable_container_selectors_matches_the_pod_only() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let source = Arc::new(Scripted {
        lists: vec![list(vec![pod(false)])],
        ..Default::default()
    });
    let mut s = settings();
    s.disable_container_selectors = true;
    let got = attestor(&proc, source.clone(), s)
        .attest(&CALLER)
        .await
        .unwrap();
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    assert!(has(&got, "k8s:ns:payments") && has(&got, "k8s:sa:api"));
    assert!(!got.iter().any(|s| s.value.starts_with("container-")));
}

#[tokio::test(start_paused = true)]
async fn not_in_a_pod_gives_no_selectors() {
    let proc = FakeProc::new(include_str!("testdata/host_session_not_in_pod_v1.cgroup"));
    let source = Arc::new(Scripted {
        lists: vec![list(vec![pod(true)])],
        ..Default::default()
    });
    let got = attestor(&proc, source.clone(), settings())
        .attest(&CALLER)
        .await
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(source.fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrent_attestations_share_one_fetch() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let source = Arc::new(Scripted {
        lists: vec![list(vec![pod(true)])],
        ..Default::default()
    });
    let a = attestor(&proc, source.clone(), settings());
    let caller = CALLER;
    let results = futures::future::join_all((0..50).map(|_| a.attest(&caller))).await;
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|s| !s.is_empty())));
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pid_reused_during_the_kubelet_round_trip_gets_nothing() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let stat: PathBuf = proc.pid_dir().join("stat");
    let source = Arc::new(Scripted {
        lists: vec![list(vec![pod(true)])],
        ..Default::default()
    });
    // While the kubelet is asked, the process exits and its pid is reused.
    *source.during.lock().unwrap() = Some(Box::new(move || {
        let text = std::fs::read_to_string(&stat)
            .unwrap()
            .replace(" 1000 ", " 2000 ");
        std::fs::write(&stat, text).unwrap();
    }));
    let err = attestor(&proc, source, settings())
        .attest(&CALLER)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttestError::ProcessChanged { pid: PID }),
        "{err}"
    );
    assert!(err.is_caller_gone());
}

#[tokio::test(start_paused = true)]
async fn ephemeral_and_duplicate_containers_are_errors() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let mut debug = pod(false);
    debug
        .status
        .ephemeral_container_statuses
        .push(ContainerStatus {
            name: "debugger".into(),
            container_id: format!("containerd://{CID}"),
            ..Default::default()
        });
    let source = Arc::new(Scripted {
        lists: vec![list(vec![debug])],
        ..Default::default()
    });
    let err = attestor(&proc, source.clone(), settings())
        .attest(&CALLER)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ephemeral container \"debugger\""),
        "{err}"
    );
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);

    // Without a pod UID in the cgroup, every pod is searched; two claiming
    // the container is an error.
    let proc = FakeProc::new(&format!("0::/system.slice/docker-{CID}.scope\n"));
    let mut other = pod(true);
    other.metadata.uid = "0000".into();
    let source = Arc::new(Scripted {
        lists: vec![list(vec![pod(true), other])],
        ..Default::default()
    });
    let err = attestor(&proc, source, settings())
        .attest(&CALLER)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("two pods"), "{err}");
}

#[tokio::test]
async fn gone_process_and_missing_pid() {
    let proc = FakeProc::new(&in_pod_cgroup());
    let source = Arc::new(Scripted {
        lists: vec![list(vec![])],
        ..Default::default()
    });
    let a = attestor(&proc, source, settings());
    let gone = Caller {
        pid: PID + 1,
        ..CALLER
    };
    assert!(a.attest(&gone).await.unwrap_err().is_caller_gone());
    let none = Caller { pid: 0, ..CALLER };
    assert!(matches!(a.attest(&none).await, Err(AttestError::NoPid)));
}
