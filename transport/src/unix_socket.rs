//! Unix sockets that other local users cannot open early, move or fake.
//!
//! **Binding** ([`bind`]): the socket's directory is created when missing
//! (with the mode the socket asks for, whatever the umask) and must be one
//! no other user can change ([`spinel_spiffe::trusted_dir`]: owned by this
//! process's user or root, not writable by others unless sticky). The
//! socket is bound inside a new private directory (mode 0700) next to its
//! final path, given its final mode there, and renamed into place; the
//! private directory is removed. So the socket never exists at its path
//! with a wider mode than asked, not even for an instant, and the umask of
//! this multi-threaded process is never touched. A stale socket left at the
//! path is replaced by the rename; anything else there is an error.
//!
//! | socket | mode | directory created with |
//! |---|---|---|
//! | agent Workload API ([`SocketModes::WORKLOAD_API`]) | 0777: every local process may ask (as SPIRE) | 0755 |
//! | agent admin ([`SocketModes::AGENT_ADMIN`]) | 0600: the agent's user only | 0700 |
//! | server admin ([`SocketModes::SERVER_ADMIN`]) | 0770: the server's user and group | 0700 |
//!
//! **Connecting** ([`connect`]), for the command-line clients: the socket
//! must be owned by the invoking user or root, and the process answering
//! on it must run as one of them (`SO_PEERCRED`, checked after connecting,
//! so a socket swapped between the check and the connection is caught
//! too). A socket planted by another user is refused with
//! [`UntrustedSocket`], before a byte is sent.

use std::collections::hash_map::RandomState;
use std::error::Error as StdError;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use spinel_spiffe::trusted_dir::{self, UntrustedDir};

/// How many private directory names are tried before giving up.
const NAME_ATTEMPTS: usize = 8;

/// The modes of a socket and of its directory when it must be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketModes {
    /// The socket's permission bits.
    pub socket: u32,
    /// The permission bits of directories created for it.
    pub dir: u32,
}

impl SocketModes {
    /// The agent's Workload API socket: open to every local process.
    pub const WORKLOAD_API: SocketModes = SocketModes {
        socket: 0o777,
        dir: 0o755,
    };
    /// The agent's admin socket: its owner only.
    pub const AGENT_ADMIN: SocketModes = SocketModes {
        socket: 0o600,
        dir: 0o700,
    };
    /// The server's admin socket: its owner and group.
    pub const SERVER_ADMIN: SocketModes = SocketModes {
        socket: 0o770,
        dir: 0o700,
    };
}

/// Why a socket could not be bound. Every message names the socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Its directory could not be created.
    #[error("cannot create the directory {dir} of socket {path}: {source}")]
    CreateDir {
        /// The socket path.
        path: PathBuf,
        /// The directory that could not be created.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Its directory is one another user can change.
    #[error("refusing to put socket {path} there: {source}")]
    Untrusted {
        /// The socket path.
        path: PathBuf,
        /// What is wrong with the directory.
        #[source]
        source: UntrustedDir,
    },
    /// Something other than a socket is at the path.
    #[error("socket path {path} exists and is not a socket")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// Binding, setting the mode or renaming into place failed.
    #[error("cannot bind socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Binds a listening socket at `path` with `modes` (see the module
/// documentation). Must be called inside a tokio runtime.
pub fn bind(path: &Path, modes: SocketModes) -> Result<tokio::net::UnixListener, BindError> {
    let bind_err = |source| BindError::Bind {
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        bind_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_missing_dirs(dir, modes.dir).map_err(|(missing, source)| BindError::CreateDir {
        path: path.to_owned(),
        dir: missing,
        source,
    })?;
    trusted_dir::check(dir).map_err(|source| BindError::Untrusted {
        path: path.to_owned(),
        source,
    })?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => {
            return Err(BindError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let private = create_private_dir(dir).map_err(bind_err)?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(modes.socket))?;
        std::fs::rename(&staged, dir.join(name))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let listener = bound.map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    tokio::net::UnixListener::from_std(listener).map_err(bind_err)
}

/// Creates `dir` and its missing ancestors with exactly `mode`; on failure
/// returns the directory that could not be created.
fn create_missing_dirs(dir: &Path, mode: u32) -> Result<(), (PathBuf, io::Error)> {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match std::fs::metadata(current) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(current),
            Err(e) => return Err((current.to_owned(), e)),
        }
        match current.parent() {
            Some(p) if !p.as_os_str().is_empty() => current = p,
            _ => break,
        }
    }
    for d in missing.into_iter().rev() {
        let created = match std::fs::DirBuilder::new().mode(mode).create(d) {
            Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)),
            // Created meanwhile by someone else: examined like any other.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        };
        created.map_err(|e| (d.to_owned(), e))?;
    }
    Ok(())
}

/// A new, empty directory of mode 0700 in `dir`.
fn create_private_dir(dir: &Path) -> io::Result<PathBuf> {
    for _ in 0..NAME_ATTEMPTS {
        // Not a secret: a name nobody else can have created already is
        // enough, as mkdir never reuses an existing directory.
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let private = dir.join(format!(".bind-{:08x}", h.finish() as u32));
        match std::fs::DirBuilder::new().mode(0o700).create(&private) {
            Ok(()) => return Ok(private),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every private directory name tried already exists",
    ))
}

/// Why a command-line client refuses to talk to a socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UntrustedSocket {
    /// The socket file belongs to another user.
    #[error(
        "refusing to talk to {path}: the socket is owned by uid {owner}, not by you (uid {me}) \
         or root, so another user may have put it there (if uid {owner} runs the server or \
         agent, run this command as that user or as root)"
    )]
    Owner {
        /// The socket path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The invoking user's effective uid.
        me: u32,
    },
    /// The process answering on it runs as another user.
    #[error(
        "refusing to talk to {path}: the process serving it runs as uid {uid}, not as you \
         (uid {me}) or root, so another user may have put it there"
    )]
    Peer {
        /// The socket path.
        path: PathBuf,
        /// The peer's uid (`SO_PEERCRED`).
        uid: u32,
        /// The invoking user's effective uid.
        me: u32,
    },
}

fn trusted_uid(uid: u32, me: u32) -> bool {
    uid == me || uid == 0
}

/// Checks that the socket `path`, whose metadata (links followed) is
/// `meta`, belongs to the invoking user or root.
pub fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), UntrustedSocket> {
    let (me, _) = trusted_dir::effective_ids();
    if trusted_uid(meta.uid(), me) {
        return Ok(());
    }
    Err(UntrustedSocket::Owner {
        path: path.to_owned(),
        owner: meta.uid(),
        me,
    })
}

/// Connects to the socket at `path` after checking its owner, then checks
/// the peer's credentials. A refusal is an `io::Error` of kind
/// `PermissionDenied` carrying an [`UntrustedSocket`] (find it with
/// [`untrusted`]).
pub async fn connect(path: &Path) -> io::Result<tokio::net::UnixStream> {
    let refuse = |e: UntrustedSocket| io::Error::new(io::ErrorKind::PermissionDenied, e);
    let meta = std::fs::metadata(path)?;
    if meta.file_type().is_socket() {
        check_owner(path, &meta).map_err(refuse)?;
    }
    let stream = tokio::net::UnixStream::connect(path).await?;
    let (me, _) = trusted_dir::effective_ids();
    let uid = stream.peer_cred()?.uid();
    if !trusted_uid(uid, me) {
        return Err(refuse(UntrustedSocket::Peer {
            path: path.to_owned(),
            uid,
            me,
        }));
    }
    Ok(stream)
}

/// The [`UntrustedSocket`] refusal in `err` or its sources, if any (also
/// inside an `io::Error`).
pub fn untrusted<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a UntrustedSocket> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<UntrustedSocket>() {
            return Some(found);
        }
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<UntrustedSocket>());
        if inner.is_some() {
            return inner;
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests;
