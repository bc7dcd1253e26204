//! The network lock for SCTP associations where CRIU's own does not
//! reach: a process in criu's own network namespace (the host's), and, at
//! restore, a netns a container runtime made.
//!
//! For a task in its own netns CRIU locks the whole namespace. For one in
//! the host's netns it only locks each TCP connection, with firewall rules
//! on the connection's addresses and ports. An SCTP association needs the
//! same: once the dumped socket is closed, the host would answer the
//! peer's next packet (a retransmission, a HEARTBEAT) as out of the blue,
//! with an ABORT, and the association would be lost before its restore.
//!
//! So at dump every association frozen in the host's netns gets an nft
//! table that drops its packets both ways, matched on ports and
//! verification tag (which every packet of the association but INIT
//! carries, whatever path it takes). It is removed again if the dump fails
//! or the tasks keep running; after a successful dump it stays, like
//! CRIU's TCP lock, until a restore of the association on this host
//! removes it, just before the association is thawed.
//!
//! At restore into a netns CRIU made, the firewall rules CRIU restores
//! with it keep it locked. A netns a runtime made (runc hands it to CRIU
//! as external) holds the container's address before CRIU runs and CRIU
//! locks nothing there: [`lock_runtime_netns`] drops each association's
//! packets from the plugin's start on, until just before it is thawed.
//!
//! A restore that fails after CRIU has lifted its own lock (in
//! RESUME_DEVICES_LATE) leaves a netns on the wire whose tasks are about
//! to be killed: [`seal_netns_of`] drops all its traffic first, so that
//! none of the peers of the associations that die with it gets an answer
//! from it.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use sctp_repair::AssocInfo;

/// `SIOCGSKNS` (linux/sockios.h): an fd of the socket's network namespace.
const SIOCGSKNS: libc::c_ulong = 0x894C;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the socket's network namespace: {0}")]
    Netns(std::io::Error),
    #[error("running nft (needed to lock SCTP associations of a process in the host's network namespace): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the lock table {table}: {stderr}")]
    Nft { table: String, stderr: String },
}

/// Whether `sock` lives in the network namespace of this (criu) process.
pub fn in_our_netns(sock: BorrowedFd<'_>) -> Result<bool, Error> {
    let ns = socket_netns(sock)?;
    let theirs = std::fs::File::from(ns).metadata().map_err(Error::Netns)?;
    let ours = std::fs::metadata("/proc/self/ns/net").map_err(Error::Netns)?;
    Ok(theirs.ino() == ours.ino() && theirs.dev() == ours.dev())
}

/// The lock table's name for an association: ports and our verification
/// tag, so the restore finds it from the snapshot alone.
pub fn table_name(a: &AssocInfo) -> String {
    format!(
        "epcmig_lock_{}_{}_{:08x}",
        a.local_port, a.peer_port, a.my_vtag
    )
}

/// Runs `nft -f -` with `script`, in netns `netns` if given.
fn nft_in(script: &str, table: &str, netns: Option<&OwnedFd>) -> Result<(), Error> {
    nft_run(&["-f", "-"], Some(script), netns)
        .map(|_| ())
        .map_err(|e| match e {
            Error::Nft { stderr, .. } => Error::Nft {
                table: table.to_string(),
                stderr,
            },
            e => e,
        })
}

/// Runs nft with `args` (and `stdin`), in netns `netns` if given; its
/// standard output.
pub(crate) fn nft_run(
    args: &[&str],
    stdin: Option<&str>,
    netns: Option<&OwnedFd>,
) -> Result<String, Error> {
    let out = tool_run("nft", args, stdin, netns).map_err(Error::Spawn)?;
    if !out.success {
        return Err(Error::Nft {
            table: String::new(),
            stderr: out.stderr,
        });
    }
    Ok(out.stdout)
}

/// What a command run by [`tool_run`] printed, and whether it succeeded.
pub(crate) struct ToolOutput {
    pub success: bool,
    pub stdout: String,
    /// Trimmed.
    pub stderr: String,
}

/// Runs `prog` with `args` (and `stdin`), in netns `netns` if given.
pub(crate) fn tool_run(
    prog: &str,
    args: &[&str],
    stdin: Option<&str>,
    netns: Option<&OwnedFd>,
) -> std::io::Result<ToolOutput> {
    let mut cmd = Command::new(prog);
    if let Some(ns) = netns {
        let raw = ns.as_raw_fd();
        // SAFETY: only setns(2), async-signal-safe, between fork and exec;
        // the caller keeps `ns` open until the command has run.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.args(args);
    // The command may exit before we wait for it: not a parasite's death
    // to criu.
    crate::guardian::sigchld_blocked(|| tool_wait(cmd, stdin))
}

fn tool_wait(mut cmd: Command, stdin: Option<&str>) -> std::io::Result<ToolOutput> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(mut i), Some(text)) = (child.stdin.take(), stdin) {
        i.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(ToolOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Drops the association's packets in and out of this netns. Returns the
/// table's name.
pub fn lock(a: &AssocInfo) -> Result<String, Error> {
    lock_in(a, None)
}

/// [`lock`] in netns `netns` (this one if None).
fn lock_in(a: &AssocInfo, netns: Option<&OwnedFd>) -> Result<String, Error> {
    let t = table_name(a);
    // Priority -300: before conntrack, so nothing of the association is
    // tracked or answered while it is away.
    let script = format!(
        "table inet {t} {{\n\
         \x20chain in {{\n\
         \x20 type filter hook input priority -300; policy accept;\n\
         \x20 sctp sport {p} sctp dport {l} sctp vtag {mv} drop\n\
         \x20}}\n\
         \x20chain out {{\n\
         \x20 type filter hook output priority -300; policy accept;\n\
         \x20 sctp sport {l} sctp dport {p} sctp vtag {pv} drop\n\
         \x20}}\n\
         }}\n",
        p = a.peer_port,
        l = a.local_port,
        mv = a.my_vtag,
        pv = a.peer_vtag,
    );
    nft_in(&script, &t, netns)?;
    Ok(t)
}

/// Removes lock table `table` if it exists.
pub fn unlock(table: &str) -> Result<(), Error> {
    unlock_in(table, None)
}

fn unlock_in(table: &str, netns: Option<&OwnedFd>) -> Result<(), Error> {
    // "destroy" would not fail on a missing table, but nft 1.0.6 (Debian
    // bookworm) lacks it: add an empty one first, then delete.
    nft_in(
        &format!("add table inet {table}\ndelete table inet {table}\n"),
        table,
        netns,
    )
}

/// Lock tables made by [`lock_runtime_netns`] in this restore: netns
/// inode and table name.
static RESTORE_LOCKS: std::sync::Mutex<Vec<(u64, String)>> = std::sync::Mutex::new(Vec::new());

fn restore_locks() -> std::sync::MutexGuard<'static, Vec<(u64, String)>> {
    RESTORE_LOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The network namespaces criu holds open other than its own, by inode:
/// at the start of a restore, those a container runtime handed it to
/// restore into (runc passes the container's as an inherited fd, for
/// `--external net[...]`).
pub fn handed_netns() -> Vec<(u64, OwnedFd)> {
    // NS_GET_NSTYPE (linux/nsfs.h): the CLONE_NEW* type of a namespace fd.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let ours = match std::fs::metadata("/proc/self/ns/net") {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for e in dir.flatten() {
        // The link's target names a bind mount (/run/netns/NAME) as often
        // as "net:[INO]": go by the file itself. Every namespace file is
        // on the one nsfs device.
        let Ok(m) = std::fs::metadata(e.path()) else {
            continue;
        };
        if m.dev() != ours.dev() || m.ino() == ours.ino() || !seen.insert(m.ino()) {
            continue;
        }
        // Our own fd of it, which outlives criu's if criu closes that.
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        // SAFETY: ioctl on an fd we own; NS_GET_NSTYPE takes no argument.
        let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind == libc::CLONE_NEWNET {
            out.push((m.ino(), OwnedFd::from(f)));
        }
    }
    out
}

/// At the start of a restore into a netns someone else made (a container
/// runtime's, which holds the container's address before CRIU restores
/// any socket, and which CRIU does not lock): drops the packets of each
/// association in `assocs` in each such netns, so that a peer's
/// retransmission in the meantime is not answered with an ABORT. Each
/// table goes just before its association is thawed ([`unlock_restored`]).
/// Returns (netns inode, table) for each lock made.
pub fn lock_runtime_netns(assocs: &[AssocInfo]) -> Result<Vec<(u64, String)>, Error> {
    let mut made = Vec::new();
    let handed = handed_netns();
    if handed.is_empty() {
        crate::images::criu_log(
            crate::images::Level::Info,
            &format!(
            "epcmig: {} association(s) to restore; criu holds no network namespace but its own, \
             so none is a runtime's to lock",
            assocs.len()
        ),
        );
    }
    for (ino, ns) in handed {
        for a in assocs {
            let t = lock_in(a, Some(&ns))?;
            restore_locks().push((ino, t.clone()));
            made.push((ino, t));
        }
        locked_netns().push((ino, ns));
    }
    Ok(made)
}

/// The namespaces [`lock_runtime_netns`] locked in, by inode.
static LOCKED_NETNS: std::sync::Mutex<Vec<(u64, OwnedFd)>> = std::sync::Mutex::new(Vec::new());

fn locked_netns() -> std::sync::MutexGuard<'static, Vec<(u64, OwnedFd)>> {
    LOCKED_NETNS.lock().unwrap_or_else(|p| p.into_inner())
}

/// After a successful restore: the restore-time locks no thaw lifted,
/// in a netns criu held that none of the associations went to, are
/// removed. (After a failed one they stay: the netns has the address but
/// not the associations, and must not answer their peers.) Returns what
/// could not be removed.
pub fn end_of_restore(ok: bool) -> Vec<String> {
    let left = std::mem::take(&mut *restore_locks());
    let nss = std::mem::take(&mut *locked_netns());
    let mut errors = Vec::new();
    if !ok {
        return errors;
    }
    for (ino, t) in left {
        if let Some((_, ns)) = nss.iter().find(|(i, _)| *i == ino) {
            if let Err(e) = unlock_in(&t, Some(ns)) {
                errors.push(format!("removing lock table {t}: {e}"));
            }
        }
    }
    errors
}

/// Whether this restore made lock tables in a runtime's netns.
pub fn restore_locked() -> bool {
    !restore_locks().is_empty()
}

/// Removes the restore-time lock of association `a` in the netns of
/// `sock`, if [`lock_runtime_netns`] made one. Returns whether it did.
pub fn unlock_restored(sock: BorrowedFd<'_>, a: &AssocInfo) -> Result<bool, Error> {
    let t = table_name(a);
    let ns = socket_netns(sock)?;
    let ino = std::fs::File::from(ns.try_clone().map_err(Error::Netns)?)
        .metadata()
        .map_err(Error::Netns)?
        .ino();
    let pos = restore_locks()
        .iter()
        .position(|(i, n)| *i == ino && *n == t);
    let Some(pos) = pos else {
        return Ok(false);
    };
    unlock_in(&t, Some(&ns))?;
    restore_locks().remove(pos);
    Ok(true)
}

/// An fd of the network namespace `sock` lives in.
fn socket_netns(sock: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    // SAFETY: ioctl on a valid socket fd; SIOCGSKNS takes no argument and
    // returns a new fd, owned below.
    let fd = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return Err(Error::Netns(std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drops every packet in and out of the netns of task `pid`, unless that
/// is criu's own (the host's: never). For a failed restore, before its
/// tasks are killed. Returns whether it did.
pub fn seal_netns_of(pid: i32) -> Result<bool, Error> {
    let path = format!("/proc/{pid}/ns/net");
    let theirs = std::fs::File::open(&path).map_err(Error::Netns)?;
    let ours = std::fs::metadata("/proc/self/ns/net").map_err(Error::Netns)?;
    let meta = theirs.metadata().map_err(Error::Netns)?;
    if meta.ino() == ours.ino() && meta.dev() == ours.dev() {
        return Ok(false);
    }
    let t = "epcmig_seal";
    let script = format!(
        "table inet {t} {{\n\
         \x20chain in {{ type filter hook input priority -300; policy drop; }}\n\
         \x20chain out {{ type filter hook output priority -300; policy drop; }}\n\
         }}\n"
    );
    nft_in(&script, t, Some(&OwnedFd::from(theirs)))?;
    Ok(true)
}
