//! Reaching a (restored or dumped) task's file descriptors from the criu
//! process: pidfd_open(2) + pidfd_getfd(2), which CRIU's ptrace hold on
//! the task allows.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A task, pinned by a pidfd.
pub struct Task {
    pub pid: i32,
    pidfd: OwnedFd,
}

impl Task {
    pub fn open(pid: i32) -> std::io::Result<Task> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as c_int) };
        Ok(Task { pid, pidfd })
    }

    /// A copy of the task's fd `num` in this process.
    pub fn fd(&self, num: i32) -> std::io::Result<OwnedFd> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.pidfd.as_raw_fd(), num, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own (a copy of the task's file).
        Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
    }

    /// The task's fd numbers that are sockets.
    pub fn socket_fds(&self) -> std::io::Result<Vec<i32>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.flatten() {
            let is_sock = std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false);
            if let Some(n) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                if is_sock {
                    v.push(n);
                }
            }
        }
        v.sort_unstable();
        Ok(v)
    }
}

/// The (pid, fd) pairs of the processes other than this one and the
/// guardian that hold the socket with inode `ino`, from /proc; at most 8.
pub fn holders_of_socket(ino: u64) -> Vec<(i32, i32)> {
    let want = format!("socket:[{ino}]");
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for e in fds.flatten() {
            let hit = std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == want.as_str());
            let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // The guardian holds copies of what the dump froze; the
            // socket is not its.
            if hit && !is_guardian(pid) {
                found.push((pid, fd));
                if found.len() == 8 {
                    return found;
                }
            }
        }
    }
    found
}

/// Whether process `pid` is the plugin's guardian (see `guardian.rs`).
fn is_guardian(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim_end().as_bytes() == crate::guardian::PROCESS_NAME.to_bytes())
}

/// The network namespace (its inode) task `pid` is in.
pub fn netns_of(pid: i32) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}
