//! [`ProcessHandle`]: the process at the other end of a Unix-socket
//! connection, pinned when it connected.
//!
//! A PID alone names whichever process has it now: after the caller exits,
//! another process may get the same PID (the PID-reuse attack: connect,
//! hand the socket to a child, exit, wait until a process with a better
//! identity takes the PID, then call). A pidfd names one process for good.
//! The listener takes the connecting process's pidfd from the socket
//! (`SO_PEERPIDFD`, Linux 6.5) at accept, or, on older kernels, opens one
//! for the PID the socket reports (`pidfd_open`, Linux 5.3), which is as
//! good as long as the caller has not exited before the accept.
//!
//! A pidfd turns readable when its process exits, and while the process
//! has not exited its PID cannot be given to another. So a caller whose
//! [`ProcessHandle::is_alive`] holds *after* its attestation read
//! `/proc/<pid>` was attested as itself.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// A pidfd of the process that connected. Clones share the descriptor.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    pidfd: Arc<OwnedFd>,
}

/// How the handle was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// From the socket itself (`SO_PEERPIDFD`): the process that connected.
    AtConnect,
    /// From the PID at accept (`pidfd_open`): the process that had the
    /// socket's PID at accept.
    AtAccept,
}

impl ProcessHandle {
    /// The connecting process of `socket` (a connected Unix stream), whose
    /// PID the kernel reported as `pid`.
    pub fn of_peer(socket: &impl AsFd, pid: Option<i32>) -> Option<(ProcessHandle, Pinned)> {
        if let Ok(pidfd) =
            nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::PeerPidfd)
        {
            return Some((ProcessHandle::from(pidfd), Pinned::AtConnect));
        }
        Self::open(pid?).map(|h| (h, Pinned::AtAccept))
    }

    /// The process that has `pid` now.
    pub fn open(pid: i32) -> Option<ProcessHandle> {
        let pid = Pid::from_raw(pid)?;
        pidfd_open(pid, PidfdFlags::empty())
            .ok()
            .map(ProcessHandle::from)
    }

    /// True while the process has not exited (a zombie has exited).
    pub fn is_alive(&self) -> bool {
        let mut fds = [PollFd::new(self.pidfd.as_ref(), PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(0) => true,
            Ok(_) => !fds[0].revents().contains(PollFlags::IN),
            // Cannot tell: treat as gone, so no identity is handed out on
            // a guess.
            Err(_) => false,
        }
    }
}

impl From<OwnedFd> for ProcessHandle {
    fn from(pidfd: OwnedFd) -> Self {
        ProcessHandle {
            pidfd: Arc::new(pidfd),
        }
    }
}

impl PartialEq for ProcessHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.pidfd, &other.pidfd)
    }
}

impl Eq for ProcessHandle {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_sees_its_process_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let handle = ProcessHandle::open(child.id() as i32).unwrap();
        assert!(handle.is_alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!handle.is_alive());
    }

    #[test]
    fn the_peer_of_a_socket_is_pinned_at_connect() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (handle, pinned) = ProcessHandle::of_peer(&a, Some(std::process::id() as i32)).unwrap();
        assert!(handle.is_alive());
        // Kernels before 6.5 fall back to pidfd_open.
        assert!(matches!(pinned, Pinned::AtConnect | Pinned::AtAccept));
    }
}
