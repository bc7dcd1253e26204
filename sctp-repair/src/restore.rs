//! Where SCTP state is *written*: re-create a socket from a [`Snapshot`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use epcmig_sys::linux;
use epcmig_sys::sctp_repair as uapi;

use crate::capture::Replayed;
use crate::snapshot::{Kind, Snapshot};
use crate::sys::{self, SOL_SCTP};
use crate::{classify, Error, Frozen, Mode, Result};

const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = linux::SCTP_SOCKOPT_BINDX_ADD as libc::c_int;
/// A struct sctp_assoc_value.
const SCTP_AUTH_SUPPORTED: libc::c_int = linux::SCTP_AUTH_SUPPORTED as libc::c_int;

fn bind_all(sock: BorrowedFd<'_>, addrs: &[SocketAddr]) -> Result<()> {
    bind_from(sock, addrs, 0).map_err(|(_, e)| e)
}

/// Binds `sock` to `addrs[start..]`: bind() for the first address, bindx
/// for the others. On error, also how many addresses are bound.
fn bind_from(
    sock: BorrowedFd<'_>,
    addrs: &[SocketAddr],
    start: usize,
) -> std::result::Result<(), (usize, Error)> {
    if addrs.is_empty() {
        return Err((0, Error::NoAssociation));
    }
    for (i, a) in addrs.iter().enumerate().skip(start) {
        let r = bind_one(sock, a, i == 0);
        let r = match r {
            Err(Error::AddressNotAvailable(SocketAddr::V6(v6))) if ipv6_tentative(v6.ip()) => {
                bind_tentative(sock, a, i == 0)
            }
            r => r,
        };
        r.map_err(|e| (i, e))?;
    }
    Ok(())
}

/// Binds `sock` to `a`: bind() for the `first` address, bindx for others.
fn bind_one(sock: BorrowedFd<'_>, a: &SocketAddr, first: bool) -> Result<()> {
    if !first {
        let raw = crate::sockaddr::encode(a);
        return sys::set(sock, SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD, &raw)
            .map_err(|e| addr_error(*a, e, "bindx"));
    }
    sys::bind(sock, a).map_err(|e| addr_error(*a, e, "bind"))
}

/// Whether `ip` is configured in the caller's network namespace but still
/// tentative (duplicate address detection running), from
/// /proc/thread-self/net/if_inet6. An association bound to every address
/// of a wildcard listener holds the container's link-local address, which
/// the kernel makes anew, tentative, when CRIU re-creates the link: bind()
/// refuses it as not available for a second or so.
fn ipv6_tentative(ip: &std::net::Ipv6Addr) -> bool {
    let want: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
    let Ok(table) = std::fs::read_to_string("/proc/thread-self/net/if_inet6") else {
        return false;
    };
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6
            && f[0] == want
            && u32::from_str_radix(f[4], 16).is_ok_and(|flags| flags & linux::IFA_F_TENTATIVE != 0)
    })
}

/// Binds `sock` to the tentative address `a` (bind() if `first`, else
/// bindx) with IPV6_FREEBIND on for that call only: the address is the
/// socket's, the kernel only has not finished checking it.
fn bind_tentative(sock: BorrowedFd<'_>, a: &SocketAddr, first: bool) -> Result<()> {
    sys::setsockopt(sock, sys::Ipv6FreeBind, &true)
        .map_err(|e| classify("setsockopt(IPV6_FREEBIND)", e))?;
    let r = bind_one(sock, a, first);
    let off = sys::setsockopt(sock, sys::Ipv6FreeBind, &false)
        .map_err(|e| classify("setsockopt(IPV6_FREEBIND)", e));
    r.and(off)
}

/// listen(2); `addr`, the socket's first address, names a port in use.
fn listen(sock: BorrowedFd<'_>, backlog: u32, addr: SocketAddr) -> Result<()> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    sys::listen(sock, backlog).map_err(|e| addr_error(addr, e, "listen"))
}

/// Binds and starts the listener of `snap`.
///
/// The associations accepted from it share its port. When they belong to
/// other processes (a forking server) and were restored first, they hold
/// the port, and bind() or listen() refuse it, which they would not have
/// done to the listener they came from. So if the port is taken and no
/// other listener holds it, the rest is done in repair mode, which binds
/// to a port in use (kernel-patches/sctp/0008), and the listener is
/// thawed at once. A port held by another listener stays refused: that
/// is a real conflict.
fn start_listener(sock: BorrowedFd<'_>, snap: &Snapshot) -> Result<()> {
    let addrs = &snap.local_addrs;
    let first = *addrs.first().ok_or(Error::NoAssociation)?;
    let started = bind_from(sock, addrs, 0)
        .and_then(|()| listen(sock, snap.backlog, first).map_err(|e| (addrs.len(), e)));
    let (bound, busy) = match started {
        Ok(()) => return Ok(()),
        Err((at, Error::AddressInUse(a))) => (at, a),
        Err((_, e)) => return Err(e),
    };
    if crate::diag::port_has_listener(busy.port())? {
        return Err(Error::AddressInUse(busy));
    }
    crate::set_mode_of_sctp(sock, Mode::On)?;
    let r = bind_from(sock, addrs, bound)
        .map_err(|(_, e)| e)
        .and_then(|()| listen(sock, snap.backlog, first));
    // Thawed even on error: the caller closes the socket then, and a
    // listener has nothing to send either way.
    let thawed = crate::set_mode_of_sctp(sock, Mode::Off);
    r.and(thawed)
}

fn addr_error(addr: SocketAddr, e: io::Error, op: &'static str) -> Error {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => Error::AddressInUse(addr),
        Some(libc::EADDRNOTAVAIL) => Error::AddressNotAvailable(addr),
        _ => classify(op, e),
    }
}

fn set_blob(sock: BorrowedFd<'_>, name: u32, blob: &[u8], op: &'static str) -> Result<()> {
    sys::set(sock, SOL_SCTP, name as libc::c_int, blob).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRINUSE) => Error::Rejected { op, source: e },
        _ => classify(op, e),
    })
}

/// Re-creates the snapshot's socket in the caller's network namespace and
/// returns it held frozen: [`Frozen::thaw`] it once whatever it belongs
/// to is ready to run, or [`Frozen::release`] it to hand it on frozen.
/// (A listener without associations waiting comes back running; thawing
/// it changes nothing.) On error nothing is left behind: the half-made
/// socket is closed in repair mode, which sends nothing.
pub fn restore(snap: &Snapshot) -> Result<Frozen<OwnedFd>> {
    let ty = match snap.kind {
        Kind::OneToMany { .. } | Kind::PeeledOff => libc::SOCK_SEQPACKET,
        Kind::Established | Kind::Listen => libc::SOCK_STREAM,
    };
    let sock = sys::sctp_socket(i32::from(snap.family), ty)
        .map_err(|e| classify("socket(IPPROTO_SCTP)", e))?;
    restore_onto_sctp(sock.as_fd(), snap)?;
    if snap.kind != Kind::PeeledOff {
        return Ok(Frozen::restored(sock));
    }
    // The association goes to a socket of its own, in repair mode as this
    // one is; this one, left empty, closes silently.
    let id = snap
        .members
        .first()
        .map(|m| m.id)
        .ok_or(Error::NoAssociation)?;
    sys::peeloff(sock.as_fd(), id)
        .map(Frozen::restored)
        .map_err(|e| classify("getsockopt(SCTP_SOCKOPT_PEELOFF)", e))
}

/// Like [`restore`], onto a fresh SCTP socket the caller made (e.g. the fd
/// number a restored process expects). Fresh means untouched: options the
/// snapshot holds at a new socket's defaults are not written again.
///
/// Not for a peeled-off association, which [`restore`] peels off the
/// socket it makes.
pub fn restore_onto<F: AsFd>(sock: F, snap: &Snapshot) -> Result<Frozen<F>> {
    crate::ensure_sctp(sock.as_fd())?;
    if snap.kind == Kind::PeeledOff {
        return Err(classify(
            "restoring a peeled-off association onto a given socket",
            io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    restore_onto_sctp(sock.as_fd(), snap)?;
    Ok(Frozen::restored(sock))
}

/// [`restore_onto`] a socket known to be SCTP.
fn restore_onto_sctp(sock: BorrowedFd<'_>, snap: &Snapshot) -> Result<()> {
    // Buffer sizes first: the restored receive window must fit them.
    for o in snap.sockopts.iter().filter(|o| o.level == libc::SOL_SOCKET) {
        let rcv = match o.name {
            libc::SO_RCVBUF => true,
            libc::SO_SNDBUF => false,
            _ => continue,
        };
        if let Ok(b) = <[u8; 4]>::try_from(o.value.as_slice()) {
            // A size set locks it (SOCK_*BUF_LOCK), and a locked receive
            // buffer drops DATA once it is full where an unlocked one
            // takes it while memory lasts: the last fragment of a message
            // in reassembly then never comes in. So a size that is this
            // fresh socket's already is left unset, as the original
            // (most likely) left it.
            let now = if rcv {
                sys::getsockopt(sock, sys::RcvBuf)
            } else {
                sys::getsockopt(sock, sys::SndBuf)
            };
            if now.ok() == Some(i32::from_ne_bytes(b)) {
                continue;
            }
            // The kernel reports twice what was asked and doubles again.
            let v = i32::from_ne_bytes(b) / 2;
            if rcv {
                sys::setsockopt(sock, sys::RcvBufForce, &v)
            } else {
                sys::setsockopt(sock, sys::SndBufForce, &v)
            }
            .map_err(|e| classify("setsockopt(SO_*BUFFORCE)", e))?;
        }
    }
    match snap.kind {
        Kind::Listen => {
            start_listener(sock, snap)?;
            apply_sctp_sockopts(sock, snap)?;
            if snap.members.is_empty() {
                return Ok(());
            }
            // Waiting for accept() again, frozen until the caller thaws
            // the listener. Their send defaults were the listener's when
            // they were made: nothing of their own to replay.
            crate::set_mode_of_sctp(sock, Mode::On)?;
            restore_members(sock, snap, false)
        }
        Kind::Established => {
            prepare_auth(sock, snap)?;
            crate::set_mode_of_sctp(sock, Mode::On)?;
            bind_all(sock, &snap.local_addrs)?;
            write_assoc(sock, snap)?;
            apply_sctp_sockopts(sock, snap)
        }
        Kind::OneToMany { .. } | Kind::PeeledOff => {
            let listening = snap.kind == Kind::OneToMany { listening: true };
            // Frozen from the start: no peer's INIT is taken before the
            // associations are back.
            crate::set_mode_of_sctp(sock, Mode::On)?;
            bind_all(sock, &snap.local_addrs)?;
            if listening {
                let first = *snap.local_addrs.first().ok_or(Error::NoAssociation)?;
                listen(sock, snap.backlog.max(1), first)?;
            }
            // Before the associations: they take SCTP_AUTOCLOSE when made.
            apply_sctp_sockopts(sock, snap)?;
            restore_members(sock, snap, true)
        }
    }
}

/// The associations of a one-to-many socket or of a listener, each under
/// its id, with (`own_options`) the options it had of its own.
///
/// Their receive queue is the socket's. While one of them delivers a
/// message partially, only that message's pieces may follow on it, and
/// what the others (and it, whole) received since waits in the socket's
/// pd lobby; the kernel takes no new association once one is in partial
/// delivery. So every association is made first, in the order they were
/// (the order SCTP_GET_ASSOC_ID_LIST shows the application), then their
/// queues are written: first one whose message the user has begun to read
/// (nothing came before the rest of it), the one still delivering
/// partially last, and the records of the pd lobby after all of them.
fn restore_members(sock: BorrowedFd<'_>, snap: &Snapshot, own_options: bool) -> Result<()> {
    for m in &snap.members {
        crate::capture::select_assoc(sock, m.id)?;
        prepare_auth(sock, &m.snap)?;
        write_state(sock, &m.snap).map_err(|e| match e {
            Error::Os { source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
                Error::AssocIdInUse(m.id)
            }
            e => e,
        })?;
        if own_options {
            apply_member_sockopts(sock, &m.snap, m.id)?;
        }
    }
    let mut turns: Vec<&crate::Member> = snap.members.iter().collect();
    // Stable: the rest keep their order.
    turns.sort_by_key(|m| crate::queues::recv_turn(&m.snap.queues));
    for m in turns {
        if m.snap.queues.iter().any(|r| !r.in_pd_lobby()) {
            crate::capture::select_assoc(sock, m.id)?;
            crate::queues::write_some(sock, &m.snap.queues, |r| !r.in_pd_lobby())?;
        }
    }
    for m in &snap.members {
        if m.snap.queues.iter().any(|r| r.in_pd_lobby()) {
            crate::capture::select_assoc(sock, m.id)?;
            crate::queues::write_some(sock, &m.snap.queues, |r| r.in_pd_lobby())?;
        }
    }
    crate::capture::select_assoc(sock, 0)
}

/// What an association that uses SCTP-AUTH needs of its socket before it
/// is made.
fn prepare_auth(sock: BorrowedFd<'_>, snap: &Snapshot) -> Result<()> {
    if snap.auth.is_empty() {
        return Ok(());
    }
    // The association's SCTP-AUTH needs the socket's, whatever
    // net.sctp.auth_enable says here: { assoc_id 0, value 1 }.
    let mut v = [0u8; 8];
    v[4..].copy_from_slice(&1u32.to_ne_bytes());
    sys::set(sock, SOL_SCTP, SCTP_AUTH_SUPPORTED, &v)
        .map_err(|e| classify("setsockopt(SCTP_AUTH_SUPPORTED)", e))?;
    let hmacs = snap
        .sockopts
        .iter()
        .find(|o| o.level == SOL_SCTP && o.name == crate::capture::SCTP_HMAC_IDENT);
    if let Some(o) = hmacs {
        sys::set(sock, SOL_SCTP, o.name, &o.value)
            .map_err(|e| classify("setsockopt(SCTP_HMAC_IDENT)", e))?;
    }
    Ok(())
}

/// Writes the association of `snap` (its state, SCTP-AUTH and queues) on a
/// one-to-one socket in repair mode.
fn write_assoc(sock: BorrowedFd<'_>, snap: &Snapshot) -> Result<()> {
    write_state(sock, snap)?;
    crate::queues::write_all(sock, &snap.queues)
}

/// Makes the association of `snap` (its state and SCTP-AUTH, not its
/// queues) on a socket in repair mode: the only one of a one-to-one
/// socket, or the one selected on a one-to-many socket.
fn write_state(sock: BorrowedFd<'_>, snap: &Snapshot) -> Result<()> {
    set_blob(
        sock,
        uapi::SCTP_REPAIR_ASSOC,
        &snap.assoc,
        "setsockopt(SCTP_REPAIR_ASSOC)",
    )?;
    set_blob(
        sock,
        uapi::SCTP_REPAIR_PATHS,
        &snap.paths,
        "setsockopt(SCTP_REPAIR_PATHS)",
    )?;
    set_blob(
        sock,
        uapi::SCTP_REPAIR_STREAMS,
        &snap.streams,
        "setsockopt(SCTP_REPAIR_STREAMS)",
    )?;
    set_blob(
        sock,
        uapi::SCTP_REPAIR_TSN_MAP,
        &snap.tsn_map,
        "setsockopt(SCTP_REPAIR_TSN_MAP)",
    )?;
    // Before the queues: the DATA put back is authenticated.
    if !snap.auth.is_empty() {
        set_blob(
            sock,
            uapi::SCTP_REPAIR_AUTH,
            &snap.auth,
            "setsockopt(SCTP_REPAIR_AUTH)",
        )?;
    }
    Ok(())
}

/// The options of one association of a one-to-many socket, written for it
/// alone (their struct names the association); the socket's own options
/// come from the socket's snapshot.
fn apply_member_sockopts(sock: BorrowedFd<'_>, snap: &Snapshot, id: i32) -> Result<()> {
    use crate::capture::{SCTP_CONTEXT, SCTP_DEFAULT_SNDINFO, SCTP_MAXSEG};
    for o in snap.sockopts.iter().filter(|o| o.level == SOL_SCTP) {
        // Where the struct holds the association id.
        let at = match o.name {
            SCTP_MAXSEG | SCTP_CONTEXT => 0,
            SCTP_DEFAULT_SNDINFO => 12,
            _ => continue,
        };
        let Some(r) = Replayed::of(o) else {
            continue;
        };
        if r.is_default(&o.value) || o.value.len() < at + 4 {
            continue;
        }
        let mut v = o.value.clone();
        v[at..at + 4].copy_from_slice(&id.to_ne_bytes());
        sys::set(sock, o.level, o.name, &v)
            .map_err(|e| classify("setsockopt (replayed association option)", e))?;
    }
    Ok(())
}

fn apply_sctp_sockopts(sock: BorrowedFd<'_>, snap: &Snapshot) -> Result<()> {
    let established = snap.kind == Kind::Established;
    for o in snap.sockopts.iter().filter(|o| o.level == SOL_SCTP) {
        // Only the options we capture are replayed; anything else in a
        // snapshot is ignored rather than handed to the kernel.
        let Some(r) = Replayed::of(o) else {
            continue;
        };
        // Applied before the association if it uses SCTP-AUTH; meaningless
        // (and refused) on a socket without it.
        if o.name == crate::capture::SCTP_HMAC_IDENT {
            continue;
        }
        // The socket is fresh: writing a default changes nothing, and each
        // write is a system call on the migration's critical path.
        if (established && !r.established) || r.is_default(&o.value) {
            continue;
        }
        sys::set(sock, o.level, o.name, &o.value)
            .map_err(|e| classify("setsockopt (replayed option)", e))?;
    }
    Ok(())
}
