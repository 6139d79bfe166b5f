use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../testdata/", $name))
    };
}

fn found(pod: Option<&str>, container: &str) -> Option<ContainerRef> {
    Some(ContainerRef {
        pod_uid: pod.map(str::to_owned),
        container_id: container.to_owned(),
    })
}

fn cgroup(text: &str) -> Option<ContainerRef> {
    from_cgroup_file(text).unwrap()
}

#[test]
fn containerd_cgroupfs_v1() {
    assert_eq!(
        cgroup(fixture!("containerd_cgroupfs_v1.cgroup")),
        found(
            Some("2c48913c-b29f-41e7-9350-020968147796"),
            "3f9a1c0e5d7b24681357ace02468bdf13579ace02468bdf13579ace02468bd0a"
        )
    );
}

#[test]
fn containerd_systemd_v2_underscores_become_dashes() {
    assert_eq!(
        cgroup(fixture!("containerd_systemd_v2.cgroup")),
        found(
            Some("8a1f7c3e-52d4-4b9e-a6c1-3f0e9d2b7a65"),
            "b8e4f2a6c0d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1"
        )
    );
}

#[test]
fn crio_systemd_v2() {
    assert_eq!(
        cgroup(fixture!("crio_systemd_v2.cgroup")),
        found(
            Some("d41f0e6a-7c2b-49a8-b3e5-6f1a2c9d8e70"),
            "9d2c4e6f8a0b1c3d5e7f9a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
        )
    );
}

#[test]
fn docker_cgroupfs_v1() {
    assert_eq!(
        cgroup(fixture!("docker_cgroupfs_v1.cgroup")),
        found(
            Some("7e3b9a15-4c6d-4f80-9b2a-1d5e8c7f3a06"),
            "0c5e8f1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5d6e7f8091a2b3c4d5e"
        )
    );
}

#[test]
fn kind_nested_prefers_the_line_naming_a_pod() {
    // The `0::` line names the kind node's own container (no pod): the pod
    // lines win, whatever their order.
    let want = found(
        Some("1b9e5d3c-0a7f-4e2d-8c6b-5a4f3e2d1c0b"),
        "e7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f",
    );
    let text = fixture!("kind_nested_cgroupfs_v1.cgroup");
    assert_eq!(cgroup(text), want);
    let reversed: Vec<&str> = text.lines().rev().collect();
    assert_eq!(cgroup(&reversed.join("\n")), want);
}

#[test]
fn kind_node_kubelet_prefix() {
    assert_eq!(
        cgroup(fixture!("kind_node_kubelet_cgroupfs_v1.cgroup")),
        found(
            Some("1b9e5d3c-0a7f-4e2d-8c6b-5a4f3e2d1c0b"),
            "e7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f"
        )
    );
}

#[test]
fn kind_relative_systemd_v2() {
    assert_eq!(
        cgroup(fixture!("kind_relative_systemd_v2.cgroup")),
        found(
            Some("f0e1d2c3-b4a5-4968-8776-5a4b3c2d1e0f"),
            "b8e4f2a6c0d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1"
        )
    );
}

#[test]
fn processes_outside_pods() {
    assert_eq!(cgroup(fixture!("host_session_not_in_pod_v1.cgroup")), None);
    assert_eq!(cgroup(fixture!("host_service_not_in_pod_v2.cgroup")), None);
    assert_eq!(
        cgroup(fixture!("cgroupns_containerd_systemd_v2.cgroup")),
        None
    );
    // A plain docker container: a container ID but no pod.
    assert_eq!(
        cgroup(fixture!("docker_container_outside_k8s_v2.cgroup")),
        found(
            None,
            "0c5e8f1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5d6e7f8091a2b3c4d5e"
        )
    );
}

#[test]
fn two_pods_are_an_error() {
    let err = from_cgroup_file(fixture!("conflicting_pods.cgroup")).unwrap_err();
    assert!(err.to_string().contains("pod UIDs"), "{err}");
}

#[test]
fn cgroupns_mountinfo() {
    assert_eq!(
        from_mountinfo(fixture!("cgroupns_containerd_systemd_v2.mountinfo")).unwrap(),
        found(
            Some("93a8b7c6-d5e4-4f3a-9b2c-1d0e9f8a7b6c"),
            "9d2c4e6f8a0b1c3d5e7f9a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
        )
    );
}

#[test]
fn mountinfo_ignores_non_cgroup_mounts() {
    assert_eq!(
        from_mountinfo(fixture!("cgroupns_bind_mount_impersonation.mountinfo")).unwrap(),
        None
    );
}

#[test]
fn words_must_be_whole() {
    // 65 hex digits is no container ID; `kubepods` is no `pod<uid>`.
    let long = format!("/kubepods/pod{}/{}", "0".repeat(36), "a".repeat(65));
    assert_eq!(from_path(&long), None);
    let id = "a".repeat(64);
    let path = format!("/kubepods2c48913c-b29f-41e7-9350-020968147796/{id}");
    assert_eq!(from_path(&path), found(None, &id));
    let path = format!("/x/pod2c48913c-b29f-41e7-9350-020968147796x/{id}");
    assert_eq!(from_path(&path), found(None, &id));
}

#[test]
fn mountinfo_octal_escapes() {
    assert_eq!(unescape_octal(r"/a\040b\134c"), r"/a b\c");
    assert_eq!(unescape_octal(r"/plain\09"), r"/plain\09");
}

/// Found by the `cgroup` fuzz target: `\ooo` above `\377` overflowed a
/// byte (a panic in debug builds, a wrong byte in release builds). It is
/// no escape the kernel writes, and is kept as it is.
#[test]
fn mountinfo_octal_above_a_byte_is_kept() {
    assert_eq!(
        unescape_octal(r"/a\777b\400c\377"),
        "/a\\777b\\400c\u{fffd}"
    );
    let line = "30 20 0:26 /x\\777 /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
    assert_eq!(from_mountinfo(line).unwrap(), None);
}

#[test]
fn locate_falls_back_to_mountinfo() {
    let dir = tempfile::tempdir().unwrap();
    let pid_dir = dir.path().join("42");
    std::fs::create_dir(&pid_dir).unwrap();
    std::fs::write(
        pid_dir.join("cgroup"),
        fixture!("cgroupns_containerd_systemd_v2.cgroup"),
    )
    .unwrap();
    std::fs::write(
        pid_dir.join("mountinfo"),
        fixture!("cgroupns_containerd_systemd_v2.mountinfo"),
    )
    .unwrap();
    let got = locate(dir.path(), 42, true).unwrap().unwrap();
    assert_eq!(
        got.pod_uid.as_deref(),
        Some("93a8b7c6-d5e4-4f3a-9b2c-1d0e9f8a7b6c")
    );
    // A missing /proc/<pid> is a process that is gone.
    let err = locate(dir.path(), 43, false).unwrap_err();
    assert!(matches!(err, K8sError::ProcessGone { pid: 43 }), "{err}");
}

mod properties {
    //! Properties of the cgroup and mountinfo parsers over generated
    //! input (the fuzz targets in `fuzz/` explore further).
    use super::super::*;
    use proptest::prelude::*;

    fn hex(len: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), len)
            .prop_map(|b| String::from_utf8(b).unwrap_or_default())
    }

    fn pod_uid() -> impl Strategy<Value = String> {
        (hex(8), hex(4), hex(4), hex(4), hex(12))
            .prop_map(|(a, b, c, d, e)| format!("{a}-{b}-{c}-{d}-{e}"))
    }

    proptest! {
        /// Whatever the file says, the parser answers (never panics), and a
        /// container ID it reports is 64 hex digits taken from the input:
        /// it never invents one.
        #[test]
        fn any_cgroup_text_yields_nothing_or_an_id_from_it(text in "\\PC{0,400}") {
            if let Ok(Some(found)) = from_cgroup_file(&text) {
                prop_assert_eq!(found.container_id.len(), 64);
                prop_assert!(text.contains(&found.container_id));
            }
            if let Ok(Some(found)) = from_mountinfo(&text) {
                prop_assert_eq!(found.container_id.len(), 64);
            }
        }

        /// Lines in the shapes kubelets write (cgroupfs and systemd
        /// drivers, v1 and v2) give back exactly the pod UID and container
        /// ID they were made from.
        #[test]
        fn kubelet_shaped_lines_round_trip(
            uid in pod_uid(),
            id in hex(64),
            qos in proptest::sample::select(vec!["", "burstable/", "besteffort/"]),
            systemd in any::<bool>(),
        ) {
            let line = if systemd {
                let qos_unit = qos.trim_end_matches('/');
                let slice = if qos_unit.is_empty() {
                    String::new()
                } else {
                    format!("kubepods-{qos_unit}.slice/")
                };
                let qos_part = if qos_unit.is_empty() { String::new() } else { format!("-{qos_unit}") };
                format!(
                    "0::/kubepods.slice/{slice}kubepods{qos_part}-pod{}.slice/cri-containerd-{id}.scope\n",
                    uid.replace('-', "_")
                )
            } else {
                format!("12:pids:/kubepods/{qos}pod{uid}/{id}\n")
            };
            let found = from_cgroup_file(&line).ok().flatten();
            prop_assert_eq!(
                found,
                Some(ContainerRef { pod_uid: Some(uid.clone()), container_id: id.clone() }),
                "{}", line
            );
        }
    }
}
