//! Network namespaces: work in a target netns on a dedicated thread.
//!
//! Netlink sockets (and the gtp device's kernel-created UDP sockets) belong
//! to the netns of the thread that creates them, so capture and restore run
//! on a thread that first enters the target with setns(2); the caller's own
//! threads never change namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::Error;

/// A network namespace to work in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// The calling thread's own.
    Current,
    /// A netns file: `/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount...
    Path(PathBuf),
    /// The netns of a process.
    Pid(u32),
}

impl Netns {
    /// A name without `/` means `/run/netns/NAME` (as `ip netns` does).
    pub fn named(name: &str) -> Netns {
        if name.contains('/') {
            Netns::Path(PathBuf::from(name))
        } else {
            Netns::Path(PathBuf::from("/run/netns").join(name))
        }
    }

    fn path(&self) -> Option<PathBuf> {
        match self {
            Netns::Current => None,
            Netns::Path(p) => Some(p.clone()),
            Netns::Pid(pid) => Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
        }
    }

    /// Runs `f` on a thread inside this netns and returns its result. The
    /// thread is scoped: `f` may borrow (a table of 100k contexts need not
    /// be copied to reach it).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T, Error> + Send) -> Result<T, Error> {
        let file = match self.path() {
            None => None,
            Some(p) => Some(File::open(&p).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => Error::PermissionDenied("opening the netns"),
                _ => Error::Netns {
                    path: p.display().to_string(),
                    source: e,
                },
            })?),
        };
        let desc = self
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "current".into());
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("gtp-state-netns".into())
                .spawn_scoped(scope, move || {
                    if let Some(file) = file {
                        // SAFETY: setns(2) on an fd we own; it changes only this
                        // thread's network namespace.
                        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                        if rc != 0 {
                            let e = std::io::Error::last_os_error();
                            return Err(match e.raw_os_error() {
                                Some(libc::EPERM) => Error::PermissionDenied("entering the netns"),
                                _ => Error::Netns {
                                    path: desc,
                                    source: e,
                                },
                            });
                        }
                    }
                    f()
                })
                .map_err(|e| Error::Io {
                    op: "spawning the netns thread",
                    source: e,
                })?
                .join()
                .map_err(|_| Error::Protocol("netns worker thread panicked".into()))?
        })
    }
}
