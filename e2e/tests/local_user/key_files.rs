//! Key and SVID files are never written through what another user planted,
//! nor into a directory another user can change.
//!
//! Writers used to create `.<name>.tmp<pid>` with create+truncate: another
//! user who could write the directory planted that name as a 0666 file
//! (and read the key written into it, which then became the key file) or
//! as a symbolic link (and had a root-only file overwritten). Here the
//! planted names are made for the writer's exact pid: a shell plants them
//! and then becomes the writer (`exec` keeps the pid).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use spinel_test_fixtures::{bin_path, CliOutput, ServerHandle, ServerOptions};

use super::{chmod, mode_of, root_or_skip, trust_domain_with_my_identity, NOBODY};

const PLANT_THEN_EXEC: &str = r#"set -e
d="$1"; victim="$2"; shift 2
for n in $OPEN; do f="$d/.$n.tmp$$"; : > "$f"; chmod 666 "$f"; chown -h 65534:65534 "$f"; done
for n in $LINK; do f="$d/.$n.tmp$$"; ln -s "$victim" "$f"; chown -h 65534:65534 "$f"; done
exec "$@"
"#;

/// Runs `program args` after the other user planted, for its pid, an
/// empty 0666 file for each name of `open` and a link to `victim` for each
/// name of `link`, in `dir`.
fn run_with_planted(
    dir: &Path,
    victim: &Path,
    open: &[&str],
    link: &[&str],
    program: &Path,
    args: &[&str],
) -> CliOutput {
    let out = Command::new("sh")
        .arg("-c")
        .arg(PLANT_THEN_EXEC)
        .arg("sh")
        .arg(dir)
        .arg(victim)
        .arg(program)
        .args(args)
        .env("OPEN", open.join(" "))
        .env("LINK", link.join(" "))
        .output()
        .unwrap();
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A root-only file the other user would like overwritten.
fn victim(dir: &Path) -> std::path::PathBuf {
    let victim = dir.join("victim");
    std::fs::write(&victim, b"root only").unwrap();
    chmod(&victim, 0o600);
    victim
}

/// The planted files are as planted, the victim untouched, and every
/// written file is root's own, not a link, with `key` at mode 0600.
fn assert_nothing_went_through(
    dir: &Path,
    victim: &Path,
    planted: &[&str],
    written: &[&str],
    key: &str,
) {
    assert_eq!(std::fs::read(victim).unwrap(), b"root only");
    assert_eq!(mode_of(victim), 0o600);
    for name in planted {
        let prefix = format!(".{name}.tmp");
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .collect();
        assert_eq!(left.len(), 1, "{name}: {left:?}");
        let meta = std::fs::symlink_metadata(&left[0]).unwrap();
        assert_eq!(meta.uid(), NOBODY, "{}", left[0].display());
        if meta.is_file() {
            assert_eq!(meta.len(), 0, "{} was written", left[0].display());
        }
    }
    for name in written {
        let path = dir.join(name);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{name} is not a plain file");
        assert_eq!(meta.uid(), 0, "{name} belongs to uid {}", meta.uid());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN"));
    }
    assert_eq!(mode_of(&dir.join(key)), 0o600);
}

#[test]
fn fetch_x509_write_goes_through_nothing_another_user_planted() {
    if !root_or_skip() {
        return;
    }
    let (_server, agent) = trust_domain_with_my_identity();
    let work = tempfile::tempdir().unwrap();
    let victim = victim(work.path());
    // Shared with everyone but sticky and root's, as /tmp: accepted.
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    chmod(&out_dir, 0o1777);
    let socket = agent.socket_path.display().to_string();
    let dir_arg = out_dir.display().to_string();
    let out = run_with_planted(
        &out_dir,
        &victim,
        &["svid.0.key", "svid.0.pem"],
        &["bundle.0.pem"],
        &bin_path("spinel-agent"),
        &[
            "api",
            "fetch",
            "x509",
            "-socketPath",
            &socket,
            "-write",
            &dir_arg,
        ],
    );
    assert!(out.success(), "{out:?}");
    assert_nothing_went_through(
        &out_dir,
        &victim,
        &["svid.0.key", "svid.0.pem", "bundle.0.pem"],
        &["svid.0.key", "svid.0.pem", "bundle.0.pem"],
        "svid.0.key",
    );
}

#[test]
fn fetch_x509_write_refuses_a_directory_others_can_write() {
    if !root_or_skip() {
        return;
    }
    let (_server, agent) = trust_domain_with_my_identity();
    let work = tempfile::tempdir().unwrap();
    let shared = work.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let out = agent
        .cli(&["api", "fetch", "x509", "-write", shared.to_str().unwrap()])
        .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("directory {} (mode 0777)", shared.display()))
            && out.stderr.contains("writable by all users"),
        "{}",
        out.stderr
    );
    assert!(
        !shared.join("svid.0.key").exists(),
        "the key was written into a directory others can change"
    );
}

#[test]
fn svid_helper_goes_through_nothing_another_user_planted() {
    if !root_or_skip() {
        return;
    }
    let (_server, agent) = trust_domain_with_my_identity();
    let work = tempfile::tempdir().unwrap();
    let victim = victim(work.path());
    let certs = work.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    chmod(&certs, 0o1777);
    let conf = work.path().join("helper.conf");
    std::fs::write(
        &conf,
        format!(
            "agent_address = \"{}\"\ncert_dir = \"{}\"\ndaemon_mode = false\n",
            agent.socket_path.display(),
            certs.display()
        ),
    )
    .unwrap();
    let out = run_with_planted(
        &certs,
        &victim,
        &["svid_key.pem", "svid.pem"],
        &["bundle.pem"],
        &bin_path("spinel-agent"),
        &["svid-helper", "-config", conf.to_str().unwrap()],
    );
    assert!(out.success(), "{out:?}");
    assert_nothing_went_through(
        &certs,
        &victim,
        &["svid_key.pem", "svid.pem", "bundle.pem"],
        &["svid_key.pem", "svid.pem", "bundle.pem"],
        "svid_key.pem",
    );

    // A cert_dir others can write is refused before anything is fetched.
    chmod(&certs, 0o777);
    let out = spinel_test_fixtures::spinel::run_cli(
        &bin_path("spinel-agent"),
        &["svid-helper", "-config", conf.to_str().unwrap()],
    )
    .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("cert_dir") && out.stderr.contains("writable by all users"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_server_refuses_a_key_directory_others_can_write() {
    if !root_or_skip() {
        return;
    }
    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    let data = server.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o777);
    let err = server.start_process().unwrap_err().to_string();
    assert!(
        err.contains(&data.display().to_string()) && err.contains("writable by all users"),
        "{err}"
    );
    assert!(!data.join("keys.json").exists());
}
