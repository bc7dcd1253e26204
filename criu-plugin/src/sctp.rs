//! SCTP sockets through CRIU (with `criu-patches/` applied, CRIU offers
//! inet sockets of protocols it does not know to `DUMP_EXT_FILE`):
//! - dump ([`dump`]): freeze the association (repair mode) and write its
//!   snapshot to `epcmig-sctp-<id>.img`; thawed again at the end of the
//!   dump ([`end_of_dump`]) unless the dumped tasks are killed;
//! - restore ([`restore`], `RESTORE_EXT_FILE`, inside the restored task):
//!   re-create the socket from its image, still frozen;
//! - resume ([`thaw_task`], `RESUME_DEVICES_LATE`): once the whole tree is
//!   restored and the network unlocked, thaw the task's SCTP sockets.
//!
//! An association of a task in criu's own (the host's) netns is also
//! locked out of the network from its dump to its restore, and one
//! restored into a netns a container runtime made from the start of the
//! restore to its thaw ([`netlock`]).

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sctp_repair::{Mode, Snapshot};

use crate::fault::{self, Injected};
use crate::guardian;
use crate::images;
use crate::netlock;
use crate::task::{self, Task};

/// Largest SCTP image we read back (a snapshot is a few KiB, more with
/// queued data).
const MAX_IMAGE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} (kernel-patches/ must be applied to the running kernel)")]
    NoRepairMode(sctp_repair::Error),
    #[error("{op}: {source}")]
    Repair {
        op: &'static str,
        source: sctp_repair::Error,
    },
    /// A socket of the images could not be made again: which one.
    #[error("re-creating {what}: {source}")]
    Restore {
        what: String,
        source: sctp_repair::Error,
    },
    #[error("{file}: {source}")]
    Image {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Decode {
        file: String,
        source: sctp_repair::FormatError,
    },
    #[error("{0}")]
    Injected(#[from] Injected),
    #[error("{0}")]
    Lock(#[from] netlock::Error),
    #[error("{0}")]
    Guardian(guardian::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Sockets frozen by this dump (our own dups), thawed or dropped at the
/// end of the dump.
static FROZEN: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

fn frozen() -> std::sync::MutexGuard<'static, Vec<OwnedFd>> {
    FROZEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Network lock tables this dump made (see [`netlock`]).
static LOCKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn locked() -> std::sync::MutexGuard<'static, Vec<String>> {
    LOCKED.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn is_sctp(sock: BorrowedFd<'_>) -> bool {
    sctp_repair::is_sctp(sock)
}

/// Names an SCTP socket for an error: who holds it (pid and fd, found in
/// /proc by its inode), its kind, its addresses, and for a one-to-many
/// socket how many associations it has. Best effort: what cannot be read
/// is left out.
pub fn describe(sock: BorrowedFd<'_>) -> String {
    use sctp_repair::sys::{self, getsockopt};
    let mut parts = Vec::new();
    let inode = nix::sys::stat::fstat(sock.as_raw_fd())
        .map(|st| st.st_ino)
        .ok();
    if let Some(ino) = inode {
        let owners = task::holders_of_socket(ino);
        if owners.is_empty() {
            parts.push(format!("socket inode {ino}"));
        } else {
            let list: Vec<String> = owners
                .iter()
                .map(|(pid, fd)| format!("pid {pid} fd {fd}"))
                .collect();
            parts.push(format!("{} (socket inode {ino})", list.join(", ")));
        }
    }
    let listening = getsockopt(sock, sys::AcceptConn).unwrap_or(false);
    let seqpacket = getsockopt(sock, sys::SockType).map(|t| t == libc::SOCK_SEQPACKET);
    // sctp_peeloff() gives a SOCK_SEQPACKET socket a peer address.
    let peer = sys::peer_addr(sock).ok().flatten();
    let one_to_many = matches!(seqpacket, Ok(true)) && peer.is_none();
    let kind = match seqpacket {
        Ok(true) if peer.is_some() => "peeled-off association",
        Ok(true) => "one-to-many",
        Ok(false) => "one-to-one",
        Err(_) => "unknown style",
    };
    parts.push(format!(
        "{kind}{}",
        if listening { " listener" } else { "" }
    ));
    if let Ok(Some(a)) = sys::local_addr(sock) {
        parts.push(format!("bound to {a}"));
    }
    if let Some(a) = peer {
        parts.push(format!("peer {a}"));
    }
    if one_to_many {
        if let Ok(n) = sctp_repair::association_count(sock) {
            parts.push(format!("{n} association(s)"));
        }
    }
    parts.join(", ")
}

/// Freezes `sock` (listeners too: a frozen listener drops INIT, so no
/// association lands in its accept queue after the capture has checked it
/// is empty) and writes its snapshot for CRIU file `id` into image dir
/// `dir`. On error the socket may be frozen: it is in [`FROZEN`] and
/// thawed by [`end_of_dump`].
///
/// A socket whose associations a snapshot cannot carry (a peeled-off
/// association, or a listener with associations not yet accepted) fails
/// here, so that CRIU fails the dump and the task runs on with them.
pub fn dump(dir: RawFd, sock: BorrowedFd<'_>, id: c_int) -> Result<String, Error> {
    let started = std::time::Instant::now();
    let was = sctp_repair::mode(sock).map_err(Error::NoRepairMode)?;
    if was == Mode::Off {
        // Kept before freezing: our reference to thaw it if the dump
        // fails, and the guardian's to thaw it if criu dies before the
        // end (thawing a socket that is not frozen does nothing).
        let dup = sock.try_clone_to_owned().map_err(|source| Error::Io {
            what: "dup".into(),
            source,
        })?;
        guardian::watch_socket(dup.as_fd()).map_err(Error::Guardian)?;
        frozen().push(dup);
    }
    let snap = freeze_and_capture(sock, was == Mode::Off)?;
    let mut lock_note = String::new();
    let infos = snap.assoc_infos();
    if !infos.is_empty() && netlock::in_our_netns(sock)? {
        let mut names = Vec::new();
        for info in &infos {
            fault::point("sctp-lock")?;
            let t = netlock::lock(info)?;
            locked().push(t.clone());
            guardian::watch_table(&t).map_err(Error::Guardian)?;
            names.push(t);
        }
        lock_note = format!(" (host netns: locked by nft table {})", names.join(", "));
    }
    let file = images::sctp_image_name(id);
    fault::point("sctp-write")?;
    images::write(dir, &file, &snap.encode()).map_err(|source| Error::Image {
        file: file.clone(),
        source,
    })?;
    let what = match snap.kind {
        sctp_repair::Kind::OneToMany { .. } | sctp_repair::Kind::PeeledOff => format!(
            "with association(s) {:?}",
            snap.members.iter().map(|m| m.id).collect::<Vec<_>>()
        ),
        _ => snap
            .assoc_info()
            .map(|a| format!("{}->{:?}", a.local_port, a.primary))
            .unwrap_or_default(),
    };
    Ok(format!(
        "dumped {} SCTP socket {what} to {file}{lock_note} {}",
        kind_name(&snap.kind),
        crate::took(started)
    ))
}

/// How long a socket caught busy is given to settle: a peer's handshake on
/// a one-to-many server, a partial delivery, an ASCONF or stream reset
/// waiting for its answer. Each completes once the socket runs a moment.
const BUSY_PATIENCE: Duration = Duration::from_secs(2);

/// Freezes `sock` (if `ours`: the caller did not find it frozen) and
/// captures it. Busy, it is thawed and tried again, with a growing pause,
/// for up to [`BUSY_PATIENCE`]; then busy is the error.
fn freeze_and_capture(sock: BorrowedFd<'_>, ours: bool) -> Result<Snapshot, Error> {
    let deadline = Instant::now() + BUSY_PATIENCE;
    let mut pause = Duration::from_millis(1);
    loop {
        let frozen = if ours {
            fault::point("sctp-freeze")?;
            let f = sctp_repair::freeze(sock).map_err(|source| Error::Repair {
                op: "entering repair mode",
                source,
            })?;
            Some(f)
        } else {
            None
        };
        let r = fault::point("sctp-capture")
            .map_err(Error::from)
            .and_then(|()| {
                sctp_repair::capture(sock).map_err(|source| Error::Repair {
                    op: "capturing",
                    source,
                })
            });
        match (r, frozen) {
            (
                Err(Error::Repair {
                    source: sctp_repair::Error::Busy,
                    ..
                }),
                Some(f),
            ) if Instant::now() < deadline => {
                f.thaw().map_err(|source| Error::Repair {
                    op: "thawing a busy socket",
                    source,
                })?;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            (r, f) => {
                // Frozen either way until the end of the dump, which
                // thaws it or lets the killed task close it silently.
                if let Some(f) = f {
                    f.release();
                }
                return r;
            }
        }
    }
}

/// At the end of a dump: on success the tasks are killed right after,
/// their sockets still frozen, so closing sends nothing; after a failure
/// or with `--leave-running` they run on, so thaw what we froze.
pub fn end_of_dump(thaw: bool) -> Vec<String> {
    let socks = std::mem::take(&mut *frozen());
    let tables = std::mem::take(&mut *locked());
    let mut errors = Vec::new();
    if thaw {
        for t in tables {
            if let Err(e) = netlock::unlock(&t) {
                errors.push(format!("removing the network lock after the dump: {e}"));
            }
        }
        for s in socks {
            if let Err(e) = sctp_repair::set_mode(s.as_fd(), Mode::Off) {
                errors.push(format!("thawing an SCTP socket after the dump: {e}"));
            }
        }
    }
    guardian::done();
    errors
}

/// At the start of a restore: locks every association of the images in
/// the network namespaces a container runtime handed criu
/// ([`netlock::lock_runtime_netns`]). Returns how many tables it made.
pub fn lock_for_restore(dir: RawFd) -> Result<usize, Error> {
    let mut assocs = Vec::new();
    for file in images::sctp_images(dir).map_err(|source| Error::Io {
        what: "listing the image directory".into(),
        source,
    })? {
        let snap = load(dir, &file)?;
        assocs.extend(snap.assoc_infos());
    }
    if assocs.is_empty() {
        return Ok(0);
    }
    Ok(netlock::lock_runtime_netns(&assocs)?.len())
}

fn load(dir: RawFd, file: &str) -> Result<Snapshot, Error> {
    let data = images::read(dir, file, MAX_IMAGE).map_err(|source| Error::Image {
        file: file.to_string(),
        source,
    })?;
    if data.is_empty() {
        return Err(Error::Image {
            file: file.to_string(),
            source: std::io::Error::other("the file is empty"),
        });
    }
    Snapshot::decode(&data).map_err(|source| Error::Decode {
        file: file.to_string(),
        source,
    })
}

/// Re-creates the socket of CRIU file `id` from its image; `Ok(None)` if
/// the image is not ours (another plugin may know the id).
pub fn restore(dir: RawFd, id: c_int) -> Result<Option<OwnedFd>, Error> {
    let file = images::sctp_image_name(id);
    let snap = match load(dir, &file) {
        Ok(s) => s,
        Err(Error::Image { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    fault::point("sctp-restore")?;
    // Still frozen (if established): thawed at RESUME_DEVICES_LATE.
    let restored = sctp_repair::restore(&snap).map_err(|source| {
        let addrs: Vec<String> = snap.local_addrs.iter().map(|a| a.to_string()).collect();
        Error::Restore {
            what: format!(
                "the {} SCTP socket of {file} on {} ({} association(s))",
                kind_name(&snap.kind),
                addrs.join(", "),
                snap.members.len().max(usize::from(!snap.assoc.is_empty()))
            ),
            source,
        }
    })?;
    Ok(Some(restored.release()))
}

/// How a snapshot's socket is named in errors.
fn kind_name(kind: &sctp_repair::Kind) -> &'static str {
    use sctp_repair::Kind;
    match kind {
        Kind::Established => "one-to-one",
        Kind::Listen => "listening one-to-one",
        Kind::OneToMany { listening: true } => "listening one-to-many",
        Kind::OneToMany { listening: false } => "one-to-many",
        Kind::PeeledOff => "peeled-off",
    }
}

/// Thaws the SCTP sockets of task `pid` still in repair mode; how many.
pub fn thaw_task(pid: c_int) -> Result<usize, Error> {
    let t = Task::open(pid).map_err(|source| Error::Io {
        what: format!("pidfd_open({pid})"),
        source,
    })?;
    let fds = t.socket_fds().map_err(|source| Error::Io {
        what: format!("/proc/{pid}/fd"),
        source,
    })?;
    let mut n = 0;
    for num in fds {
        let Ok(sock) = t.fd(num) else {
            continue;
        };
        if !is_sctp(sock.as_fd()) || !matches!(sctp_repair::mode(sock.as_fd()), Ok(Mode::On)) {
            continue;
        }
        fault::point("sctp-thaw")?;
        let ours = netlock::in_our_netns(sock.as_fd())?;
        if ours || netlock::restore_locked() {
            let snap = sctp_repair::capture(sock.as_fd()).map_err(|source| Error::Repair {
                op: "reading the association",
                source,
            })?;
            for info in snap.assoc_infos() {
                if ours {
                    // Restored on the host it was dumped on: lift that
                    // dump's lock.
                    netlock::unlock(&netlock::table_name(&info))?;
                } else {
                    netlock::unlock_restored(sock.as_fd(), &info)?;
                }
            }
        }
        sctp_repair::set_mode(sock.as_fd(), Mode::Off).map_err(|source| Error::Repair {
            op: "leaving repair mode",
            source,
        })?;
        n += 1;
    }
    Ok(n)
}
