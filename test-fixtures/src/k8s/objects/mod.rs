//! Builders for realistic Kubernetes objects, made of `k8s-openapi` types so
//! that what the fakes serve is Kubernetes' JSON, not a guess at it.
//!
//! - [`PodBuilder`]: a pod as the kubelet and the API server return it,
//!   with generated UID, container IDs (`containerd://<64 hex>`), image IDs
//!   (`docker.io/library/x@sha256:<64 hex>`), conditions and timestamps.
//! - [`NodeBuilder`]: a node with UID, labels, addresses and system info.
//! - [`pod_uid`], [`container_ids`]: read back what a built pod carries, to
//!   build `/proc/<pid>/cgroup` lines in tests.
//!
//! Fields a real cluster fills in but our parsers must ignore (managed
//! fields aside) are present on purpose: `resourceVersion`, `tolerations`,
//! `qosClass`, `terminationMessagePath` and so on.

mod image;
mod node;
mod pod;

pub use image::{image_id, normalize_image};
pub use node::NodeBuilder;
pub use pod::{container_ids, pod_uid, PodBuilder};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use spinel_spiffe::clock::Clock;

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    Clock::system().unix_seconds()
}

/// The Kubernetes timestamp `unix_secs` seconds after the epoch.
pub(crate) fn time_at(unix_secs: i64) -> Time {
    Time(Timestamp::from_second(unix_secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A random UUID, as Kubernetes writes object UIDs.
pub(crate) fn random_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}
