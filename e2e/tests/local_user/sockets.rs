//! Sockets: directories another user owns or can write are refused by
//! both binaries; the CLIs refuse a socket another user planted, before
//! sending it anything; the admin socket cannot be slipped into the
//! Workload API socket's directory with `..`.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use spinel_test_fixtures::{bin_path, AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{chmod, give_to_nobody, mode_of, root_or_skip};

#[test]
fn the_agent_refuses_a_socket_directory_another_user_can_change() {
    if !root_or_skip() {
        return;
    }
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(None).unwrap();
    let mut agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let public = agent.socket_path.parent().unwrap().to_owned();
    assert_eq!(mode_of(&agent.socket_path), 0o777);
    agent.stop().unwrap();

    // Another user's directory: they could move the socket away and put
    // theirs in its place.
    give_to_nobody(&public);
    let err = agent.start_process().unwrap_err().to_string();
    assert!(
        err.contains(&public.display().to_string()) && err.contains("owned by uid 65534"),
        "{err}"
    );
    // Root's, but anyone may write it.
    std::os::unix::fs::chown(&public, Some(0), Some(0)).unwrap();
    chmod(&public, 0o777);
    let err = agent.start_process().unwrap_err().to_string();
    assert!(
        err.contains(&public.display().to_string()) && err.contains("writable by all users"),
        "{err}"
    );
    chmod(&public, 0o755);
    agent.start_process().unwrap();
}

#[test]
fn the_server_refuses_an_admin_socket_directory_of_another_user() {
    if !root_or_skip() {
        return;
    }
    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    // The other user made the directory first (SPIRE's default is in /tmp).
    let private = server.socket_path.parent().unwrap().to_owned();
    std::fs::create_dir(&private).unwrap();
    give_to_nobody(&private);
    let err = server.start_process().unwrap_err().to_string();
    assert!(
        err.contains(&private.display().to_string()) && err.contains("owned by uid 65534"),
        "{err}"
    );
    assert!(!server.socket_path.exists());
    std::os::unix::fs::chown(&private, Some(0), Some(0)).unwrap();
    server.start_process().unwrap();
    assert_eq!(mode_of(&server.socket_path), 0o770);
}

/// Runs a CLI with a deadline (a client that did connect to a fake socket
/// must not hang the test).
fn run_cli(program: &str, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("30")
        .arg(bin_path(program))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_clis_refuse_a_socket_another_user_planted() {
    if !root_or_skip() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o755);
    let theirs = work.path().join("spinel-server");
    std::fs::create_dir(&theirs).unwrap();
    give_to_nobody(&theirs);
    let socket = theirs.join("api.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    chmod(&socket, 0o777);
    give_to_nobody(&socket);
    // Whatever connects is counted and hung up on.
    let connections = Arc::new(AtomicUsize::new(0));
    {
        let connections = connections.clone();
        let listener = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                connections.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
    }
    let path = socket.to_str().unwrap();
    let pid = std::process::id().to_string();
    let runs: [(&str, Vec<&str>); 6] = [
        ("spinel-server", vec!["entry", "show", "-socketPath", path]),
        ("spinel-server", vec!["healthcheck", "-socketPath", path]),
        (
            "spinel-agent",
            vec!["api", "fetch", "x509", "-socketPath", path],
        ),
        (
            "spinel-agent",
            vec!["api", "fetch", "jwt", "-audience", "a", "-socketPath", path],
        ),
        ("spinel-agent", vec!["healthcheck", "-socketPath", path]),
        (
            "spinel-agent",
            vec!["debug", "explain", "-pid", &pid, "-adminSocketPath", path],
        ),
    ];
    for (program, args) in runs {
        let out = run_cli(program, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{program} {args:?}: {stderr}");
        assert!(
            stderr.contains(path) && stderr.contains("owned by uid 65534"),
            "{program} {args:?}: {stderr}"
        );
        assert_eq!(
            connections.load(Ordering::SeqCst),
            0,
            "{program} {args:?} connected to the planted socket"
        );
    }
}

#[test]
fn an_admin_socket_path_through_dot_dot_into_the_public_directory_is_refused() {
    if !root_or_skip() {
        return;
    }
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(None).unwrap();
    let mut agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    agent.stop().unwrap();
    let root = agent.dir.path().to_owned();
    let sneaky = root.join("private/../public/admin.sock");
    set_admin_socket_path(&agent.config_path, &sneaky);
    let err = agent.start_process().unwrap_err().to_string();
    assert!(
        err.contains("agent.admin_socket_path") && err.contains("outside"),
        "{err}"
    );
    assert!(!root.join("public/admin.sock").exists());

    // Outside it, the admin socket is its owner's alone.
    let admin = root.join("private/admin.sock");
    set_admin_socket_path(&agent.config_path, &admin);
    agent.start_process().unwrap();
    assert_eq!(mode_of(&admin), 0o600);
    assert_eq!(mode_of(admin.parent().unwrap()), 0o700);
}

/// Puts `admin_socket_path = <path>` in the `agent {}` block of `config`,
/// replacing an earlier one.
fn set_admin_socket_path(config: &Path, path: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("admin_socket_path"))
        .collect();
    let text = kept.join("\n").replacen(
        "agent {",
        &format!("agent {{\n    admin_socket_path = \"{}\"", path.display()),
        1,
    );
    std::fs::write(config, text + "\n").unwrap();
}
