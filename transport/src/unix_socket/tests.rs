//! Tests of [`super`]: modes from the start, trusted directories, stale
//! sockets, and the clients' owner and peer checks.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn is_root() -> bool {
    trusted_dir::effective_ids().0 == 0
}

/// Runs `f` on a new thread whose user, group and supplementary groups
/// are 65534 (nobody): another local user, inside this test process.
pub(crate) fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        use rustix::thread::{set_thread_gid, set_thread_groups, set_thread_uid};
        set_thread_groups(&[]).unwrap();
        set_thread_gid(rustix::process::Gid::from_raw(65534)).unwrap();
        set_thread_uid(rustix::process::Uid::from_raw(65534)).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn sockets_get_their_mode_and_directories_theirs() {
    for modes in [
        SocketModes::WORKLOAD_API,
        SocketModes::AGENT_ADMIN,
        SocketModes::SERVER_ADMIN,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/api.sock");
        let listener = bind(&path, modes).unwrap();
        assert_eq!(mode_of(&path), modes.socket, "{modes:?}");
        assert_eq!(mode_of(&dir.path().join("a")), modes.dir, "{modes:?}");
        assert_eq!(mode_of(&dir.path().join("a/b")), modes.dir, "{modes:?}");
        // Nothing else is left beside it: the private directory is gone.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["api.sock"]);
        let _client = connect(&path).await.unwrap();
        listener.accept().await.unwrap();
    }
}

#[tokio::test]
async fn a_stale_socket_is_replaced_anything_else_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let listener = bind(&path, SocketModes::AGENT_ADMIN).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    let _client = connect(&path).await.unwrap();
    listener.accept().await.unwrap();

    let file = dir.path().join("file");
    std::fs::write(&file, b"keep me").unwrap();
    let err = bind(&file, SocketModes::AGENT_ADMIN).unwrap_err();
    assert!(matches!(err, BindError::NotASocket { .. }), "{err}");
    assert!(err.to_string().contains(&file.display().to_string()));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let err = bind(&link, SocketModes::AGENT_ADMIN).unwrap_err();
    assert!(matches!(err, BindError::NotASocket { .. }), "{err}");
}

#[tokio::test]
async fn directories_other_users_can_change_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = bind(&shared.join("api.sock"), SocketModes::WORKLOAD_API).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BindError::Untrusted { .. }), "{text}");
    assert!(
        text.contains(&shared.display().to_string()) && text.contains("writable by all users"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    // Sticky and ours: accepted.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    drop(bind(&shared.join("api.sock"), SocketModes::WORKLOAD_API).unwrap());

    if !is_root() {
        eprintln!("not root: the other-owner check needs root");
        return;
    }
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let text = bind(&theirs.join("api.sock"), SocketModes::SERVER_ADMIN)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(&theirs.display().to_string()) && text.contains("owned by uid 65534"),
        "{text}"
    );
}

#[tokio::test]
async fn clients_refuse_sockets_of_other_users() {
    if !is_root() {
        eprintln!("not root: acting as another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let path = theirs.join("api.sock");
    // Another user plants a socket and listens on it.
    let planted = {
        let path = path.clone();
        as_nobody(move || {
            let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
            l
        })
    };
    let err = connect(&path).await.unwrap_err();
    let refusal = untrusted(&err).expect("an UntrustedSocket refusal");
    assert!(matches!(
        refusal,
        UntrustedSocket::Owner { owner: 65534, .. }
    ));
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("uid 65534"),
        "{text}"
    );

    // Even when the file passes for root's, the listener's credentials do not.
    std::os::unix::fs::lchown(&path, Some(0), Some(0)).unwrap();
    let err = connect(&path).await.unwrap_err();
    assert!(
        matches!(
            untrusted(&err),
            Some(UntrustedSocket::Peer { uid: 65534, .. })
        ),
        "{err}"
    );
    drop(planted);
}
