//! The container locator's parsers: `/proc/<pid>/cgroup`,
//! `/proc/<pid>/mountinfo` and single cgroup paths. Invariants: no panic;
//! a container ID found is a whole 64-hex word of the input; a pod UID is
//! 8-4-4-4-12 hex with dashes; a one-line cgroup file finds what its path
//! finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinel_agent::attestor::workload::k8s::{self, ContainerRef};

fn check(found: &ContainerRef, source: Option<&str>) {
    let id = &found.container_id;
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(source) = source {
        assert!(
            source.contains(id.as_str()),
            "the container ID comes from the input"
        );
    }
    if let Some(uid) = &found.pod_uid {
        let groups: Vec<&str> = uid.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "pod UID {uid:?}");
        assert!(groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = spinel_fuzz::text(data) else {
        return;
    };
    if let Ok(Some(found)) = k8s::from_cgroup_file(text) {
        check(&found, Some(text));
    }
    if let Ok(Some(found)) = k8s::from_mountinfo(text) {
        // Mount roots are octal-unescaped first, so the ID may be spelled
        // differently in the input.
        check(&found, None);
    }
    let by_path = k8s::from_path(text);
    if let Some(found) = &by_path {
        check(found, Some(text));
    }
    if !text.contains('\n') && !text.ends_with('\r') {
        let line = format!("0::{text}");
        assert_eq!(
            k8s::from_cgroup_file(&line).ok(),
            Some(by_path),
            "a one-line cgroup file is its path"
        );
    }
});
