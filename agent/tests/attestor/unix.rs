//! The `unix` workload attestor: against the real current process, and
//! against fixture `/proc` and `/etc` trees for the cases a live system
//! cannot stage (names, supplementary groups, pid reuse, size limits).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use spinel_agent::attestor::workload::{
    self, AttestError, Caller, Root, UnixAttestor, UnixConfig, WorkloadAttestor,
};
use spinel_config::ConfigFile;

/// The effective uid and gid of this process, from `/proc/self/status`.
fn own_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |key: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

fn me() -> Caller {
    let (uid, gid) = own_ids();
    Caller {
        pid: std::process::id() as i32,
        uid,
        gid,
        process: None,
    }
}

fn strings(selectors: &[spinel_spiffe::Selector]) -> Vec<String> {
    selectors.iter().map(ToString::to_string).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn attests_the_current_process() {
    let caller = me();
    let attestor = UnixAttestor::new(UnixConfig {
        discover_workload_path: true,
        workload_size_limit: 0,
    });
    let got = strings(&attestor.attest(&caller).await.unwrap());
    assert!(got.contains(&format!("unix:uid:{}", caller.uid)), "{got:?}");
    assert!(got.contains(&format!("unix:gid:{}", caller.gid)), "{got:?}");
    if caller.uid == 0 {
        assert!(got.contains(&"unix:user:root".to_owned()), "{got:?}");
    }
    let exe = std::env::current_exe().unwrap();
    assert!(
        got.contains(&format!("unix:path:{}", exe.display())),
        "{got:?}"
    );
    let digest = sha256_hex(&std::fs::read(&exe).unwrap());
    assert!(got.contains(&format!("unix:sha256:{digest}")), "{got:?}");

    // Without path discovery there are no path selectors.
    let plain = strings(
        &UnixAttestor::new(UnixConfig::default())
            .attest(&caller)
            .await
            .unwrap(),
    );
    assert!(plain
        .iter()
        .all(|s| !s.starts_with("unix:path:") && !s.starts_with("unix:sha256:")));
}

#[tokio::test]
async fn refuses_a_caller_whose_credentials_differ() {
    let mut caller = me();
    caller.uid = caller.uid.wrapping_add(4242);
    let err = UnixAttestor::new(UnixConfig::default())
        .attest(&caller)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttestError::CredentialsChanged { .. }),
        "{err}"
    );
    assert!(err.is_caller_gone());
}

/// A fixture tree with `/proc/<pid>` and `/etc`.
struct Fixture {
    dir: tempfile::TempDir,
}

const PID: i32 = 4321;

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(f.proc_dir()).unwrap();
        std::fs::create_dir_all(f.path("etc")).unwrap();
        f.write_stat(123_456);
        f.write(
            "proc/4321/status",
            "Name:\tworker (x)\nUmask:\t0022\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t101\t100\t100\nGroups:\t4 27 999 \n",
        );
        f.write(
            "etc/passwd",
            "# comment\nroot:x:0:0:root:/root:/bin/bash\nalice:x:1000:100::/home/alice:/bin/sh\nbob:x:1001:101::/home/bob:/bin/sh\nbob2:x:1001:101::/:/bin/sh\n",
        );
        f.write(
            "etc/group",
            "root:x:0:\nadm:x:4:bob\nusers:x:100:\nstaff:x:101:\nsudo:x:27:bob\n",
        );
        f.write("bin/worker", "#!/bin/true\nthe workload binary\n");
        symlink(f.path("bin/worker"), f.proc_dir().join("exe")).unwrap();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn proc_dir(&self) -> PathBuf {
        self.path(&format!("proc/{PID}"))
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn write_stat(&self, start_time: u64) {
        // The command name holds a space and a ')' to exercise the parser.
        let fields_after_name: Vec<String> = (3..=21)
            .map(|i| {
                if i == 3 {
                    "S".to_owned()
                } else {
                    i.to_string()
                }
            })
            .chain([start_time.to_string(), "0".into(), "0".into()])
            .collect();
        self.write(
            &format!("proc/{PID}/stat"),
            &format!("{PID} (wor) ker) {}\n", fields_after_name.join(" ")),
        );
    }

    fn root(&self) -> Root {
        Root::new(self.path("proc"), self.path("etc"))
    }

    fn attestor(&self, config: UnixConfig) -> UnixAttestor {
        UnixAttestor::with_root(config, self.root())
    }
}

fn caller() -> Caller {
    Caller {
        pid: PID,
        uid: 1001,
        gid: 101,
        process: None,
    }
}

#[test]
fn fixture_selectors_with_names_and_path() {
    let f = Fixture::new();
    let got = f
        .attestor(UnixConfig {
            discover_workload_path: true,
            workload_size_limit: 1024,
        })
        .attest_blocking(&caller())
        .unwrap();
    let digest = sha256_hex(b"#!/bin/true\nthe workload binary\n");
    assert_eq!(
        strings(&got),
        [
            "unix:uid:1001".to_owned(),
            "unix:user:bob".into(),
            "unix:gid:101".into(),
            "unix:group:staff".into(),
            "unix:supplementary_gid:4".into(),
            "unix:supplementary_group:adm".into(),
            "unix:supplementary_gid:27".into(),
            "unix:supplementary_group:sudo".into(),
            "unix:supplementary_gid:999".into(),
            format!("unix:path:{}", f.path("bin/worker").display()),
            format!("unix:sha256:{digest}"),
        ]
    );
}

#[test]
fn size_limit_and_disabled_hash() {
    let f = Fixture::new();
    let err = f
        .attestor(UnixConfig {
            discover_workload_path: true,
            workload_size_limit: 5,
        })
        .attest_blocking(&caller())
        .unwrap_err();
    assert!(
        matches!(err, AttestError::ExecutableTooLarge { limit: 5, .. }),
        "{err}"
    );

    let got = strings(
        &f.attestor(UnixConfig {
            discover_workload_path: true,
            workload_size_limit: -1,
        })
        .attest_blocking(&caller())
        .unwrap(),
    );
    assert!(got.iter().any(|s| s.starts_with("unix:path:")));
    assert!(
        got.iter().all(|s| !s.starts_with("unix:sha256:")),
        "{got:?}"
    );
}

#[test]
fn missing_names_and_missing_etc_give_ids_only() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("etc/passwd")).unwrap();
    std::fs::remove_file(f.path("etc/group")).unwrap();
    let got = strings(
        &f.attestor(UnixConfig::default())
            .attest_blocking(&caller())
            .unwrap(),
    );
    assert_eq!(
        got,
        [
            "unix:uid:1001",
            "unix:gid:101",
            "unix:supplementary_gid:4",
            "unix:supplementary_gid:27",
            "unix:supplementary_gid:999"
        ]
    );
}

#[test]
fn a_vanished_process_is_not_attested() {
    let f = Fixture::new();
    std::fs::remove_dir_all(f.proc_dir()).unwrap();
    let err = f
        .attestor(UnixConfig::default())
        .attest_blocking(&caller())
        .unwrap_err();
    assert!(
        matches!(err, AttestError::ProcessGone { pid: PID }),
        "{err}"
    );
    assert!(err.is_caller_gone());
    let err = f
        .attestor(UnixConfig::default())
        .attest_blocking(&Caller { pid: 0, ..caller() })
        .unwrap_err();
    assert!(matches!(err, AttestError::NoPid), "{err}");
}

#[test]
fn a_reused_pid_is_not_attested() {
    // The executable is a FIFO: hashing it blocks until a writer shows up,
    // and that writer replaces the process (new start time) meanwhile.
    let f = Fixture::new();
    let fifo = f.path("bin/fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(f.proc_dir().join("exe")).unwrap();
    symlink(&fifo, f.proc_dir().join("exe")).unwrap();
    let attestor = f.attestor(UnixConfig {
        discover_workload_path: true,
        workload_size_limit: 0,
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            f.write_stat(999_999);
            std::io::Write::write_all(&mut w, b"another binary").unwrap();
        });
        let err = attestor.attest_blocking(&caller()).unwrap_err();
        assert!(
            matches!(err, AttestError::ProcessChanged { pid: PID }),
            "{err}"
        );
    });
}

#[test]
fn a_pinned_caller_is_checked_by_its_pidfd_not_its_start_time() {
    // The fixture's process stands for a child pinned by a pidfd (as the
    // Workload API socket pins every caller at connect): no `stat` file is
    // read, and the process exiting during attestation fails it.
    let f = Fixture::new();
    std::fs::remove_file(f.proc_dir().join("stat")).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pinned = Caller {
        process: spinel_transport::ProcessHandle::open(child.id() as i32),
        ..caller()
    };
    assert!(pinned.process.is_some());
    let attestor = f.attestor(UnixConfig::default());
    let got = strings(&attestor.attest_blocking(&pinned).unwrap());
    assert_eq!(got[..2], ["unix:uid:1001", "unix:user:bob"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let err = attestor.attest_blocking(&pinned).unwrap_err();
    assert!(
        matches!(err, AttestError::ProcessExited { pid: PID }),
        "{err}"
    );
    assert!(err.is_caller_gone());
    // Without a pidfd the start time is what pins it.
    let err = attestor.attest_blocking(&caller()).unwrap_err();
    assert!(
        matches!(err, AttestError::ProcessGone { pid: PID }),
        "{err}"
    );
}

#[test]
fn malformed_proc_files_are_errors() {
    let f = Fixture::new();
    f.write(&format!("proc/{PID}/stat"), "4321 (x) S 1 2\n");
    let err = f
        .attestor(UnixConfig::default())
        .attest_blocking(&caller())
        .unwrap_err();
    assert!(err.to_string().contains("fewer than 22 fields"), "{err}");
}

fn plugins(text: &str) -> Vec<spinel_config::PluginDecl> {
    ConfigFile::parse(Path::new("agent.conf"), text)
        .unwrap()
        .plugins()
        .unwrap()
}

#[tokio::test]
async fn build_from_config() {
    let ok = plugins(
        "plugins {\n  KeyManager \"memory\" {\n    plugin_data {}\n  }\n  WorkloadAttestor \"unix\" {\n    plugin_data {\n      discover_workload_path = true\n      workload_size_limit = -1\n    }\n  }\n}\n",
    );
    let attestor = workload::build(&ok).unwrap();
    let got = strings(&attestor.attest(&me()).await.unwrap());
    assert!(got.iter().any(|s| s.starts_with("unix:path:")), "{got:?}");

    let unknown =
        plugins("plugins {\n  WorkloadAttestor \"docker\" {\n    plugin_data {}\n  }\n}\n");
    let err = workload::build(&unknown).unwrap_err().to_string();
    assert!(
        err.contains("docker") && err.contains("agent.conf:2"),
        "{err}"
    );

    let bad_key = plugins(
        "plugins {\n  WorkloadAttestor \"unix\" {\n    plugin_data {\n      discover_path = true\n    }\n  }\n}\n",
    );
    let err = workload::build(&bad_key).unwrap_err().to_string();
    assert!(
        err.contains("discover_path") && err.contains("agent.conf:4"),
        "{err}"
    );

    let none = plugins("plugins {\n  KeyManager \"memory\" {\n    plugin_data {}\n  }\n}\n");
    assert!(matches!(workload::build(&none), Err(AttestError::NoPlugin)));

    let disabled = plugins(
        "plugins {\n  WorkloadAttestor \"docker\" {\n    enabled = false\n  }\n  WorkloadAttestor \"unix\" {}\n}\n",
    );
    assert!(workload::build(&disabled).is_ok());
}
