//! The network lock for SCTP associations of a process in criu's own
//! network namespace (the host's, not a container's).
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
    // SAFETY: ioctl on a valid socket fd; SIOCGSKNS takes no argument and
    // returns a new fd, owned below.
    let fd = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return Err(Error::Netns(std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd we own.
    let ns = unsafe { OwnedFd::from_raw_fd(fd) };
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
    let mut cmd = Command::new("nft");
    if let Some(ns) = netns {
        let raw = ns.as_raw_fd();
        // SAFETY: only setns(2), async-signal-safe, between fork and exec;
        // the caller keeps `ns` open until nft has run.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    nft_run(cmd, script, table)
}

fn nft(script: &str, table: &str) -> Result<(), Error> {
    nft_in(script, table, None)
}

fn nft_run(cmd: Command, script: &str, table: &str) -> Result<(), Error> {
    // nft may exit before we wait for it: not a parasite's death to criu.
    crate::guardian::sigchld_blocked(|| nft_wait(cmd, script, table))
}

fn nft_wait(mut cmd: Command, script: &str, table: &str) -> Result<(), Error> {
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::Spawn)?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes()).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::Nft {
            table: table.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Drops the association's packets in and out of this netns. Returns the
/// table's name.
pub fn lock(a: &AssocInfo) -> Result<String, Error> {
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
    nft(&script, &t)?;
    Ok(t)
}

/// Removes lock table `table` if it exists.
pub fn unlock(table: &str) -> Result<(), Error> {
    // "destroy" would not fail on a missing table, but nft 1.0.6 (Debian
    // bookworm) lacks it: add an empty one first, then delete.
    nft(
        &format!("add table inet {table}\ndelete table inet {table}\n"),
        table,
    )
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
