//! Where SCTP state is *read*: capture a frozen socket into a [`Snapshot`].

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use epcmig_sys::linux;
use epcmig_sys::sctp_repair as uapi;

use crate::snapshot::{Kind, Member, Snapshot, SockOpt};
use crate::state::{
    assoc_features, ASSOC_SIZE, AUTH_HDR, GAP_SIZE, PATHS_HDR, PATH_SIZE, STREAMS_HDR, STREAM_SIZE,
    TSN_MAP_SIZE,
};
use crate::sys::{self, SOL_SCTP};
use crate::{classify, Error, Mode, Result};

const SCTP_GET_LOCAL_ADDRS: libc::c_int = linux::SCTP_GET_LOCAL_ADDRS as libc::c_int;

/// A socket option captured and replayed on restore.
pub(crate) struct Replayed {
    pub level: libc::c_int,
    pub name: libc::c_int,
    /// Buffer size to read it with.
    pub size: usize,
    /// Bytes `.0...1` of the value that are all zero when the option is at
    /// the default of a fresh socket (sctp_init_sock() zeroes them, with no
    /// sysctl behind them): such an option is not written back. `None`: it
    /// is always written.
    pub zero_default: Option<(usize, usize)>,
    /// Whether it applies to an association (else to a listener only).
    pub established: bool,
}

const fn opt(
    level: libc::c_int,
    name: libc::c_int,
    size: usize,
    zero_default: Option<(usize, usize)>,
) -> Replayed {
    Replayed {
        level,
        name,
        size,
        zero_default,
        established: true,
    }
}

const SCTP_NODELAY: libc::c_int = linux::SCTP_NODELAY as libc::c_int;
const SCTP_DISABLE_FRAGMENTS: libc::c_int = linux::SCTP_DISABLE_FRAGMENTS as libc::c_int;
const SCTP_EVENTS: libc::c_int = linux::SCTP_EVENTS as libc::c_int;
pub(crate) const SCTP_MAXSEG: libc::c_int = linux::SCTP_MAXSEG as libc::c_int;
pub(crate) const SCTP_CONTEXT: libc::c_int = linux::SCTP_CONTEXT as libc::c_int;
const SCTP_FRAGMENT_INTERLEAVE: libc::c_int = linux::SCTP_FRAGMENT_INTERLEAVE as libc::c_int;
const SCTP_PARTIAL_DELIVERY_POINT: libc::c_int = linux::SCTP_PARTIAL_DELIVERY_POINT as libc::c_int;
const SCTP_RECVRCVINFO: libc::c_int = linux::SCTP_RECVRCVINFO as libc::c_int;
const SCTP_RECVNXTINFO: libc::c_int = linux::SCTP_RECVNXTINFO as libc::c_int;
pub(crate) const SCTP_DEFAULT_SNDINFO: libc::c_int = linux::SCTP_DEFAULT_SNDINFO as libc::c_int;
/// SCTP_AUTOCLOSE: one-to-many sockets only; each association made on the
/// socket takes it when created, so it is replayed before them.
const SCTP_AUTOCLOSE: libc::c_int = linux::SCTP_AUTOCLOSE as libc::c_int;

/// SCTP_AUTO_ASCONF: only a socket bound to the wildcard address has it,
/// and an association is restored bound to its own addresses, where
/// setting it is refused; so it is captured and replayed for listeners.
const SCTP_AUTO_ASCONF: libc::c_int = linux::SCTP_AUTO_ASCONF as libc::c_int;

/// Socket options replayed on restore. Socket buffer sizes come first: the
/// restored receive window is checked against the receive buffer.
pub(crate) const SOCKOPTS: &[Replayed] = &[
    opt(libc::SOL_SOCKET, libc::SO_RCVBUF, 4, None),
    opt(libc::SOL_SOCKET, libc::SO_SNDBUF, 4, None),
    opt(SOL_SCTP, SCTP_NODELAY, 4, Some((0, 4))),
    opt(SOL_SCTP, SCTP_DISABLE_FRAGMENTS, 4, Some((0, 4))),
    // struct sctp_event_subscribe, as long as the kernel's
    opt(SOL_SCTP, SCTP_EVENTS, 32, Some((0, 32))),
    // struct sctp_assoc_value. Read by itself, an association reports its
    // fragmentation point, never 0: then it is always written.
    opt(SOL_SCTP, SCTP_MAXSEG, 8, None),
    // struct sctp_assoc_value
    opt(SOL_SCTP, SCTP_CONTEXT, 8, Some((4, 8))),
    opt(SOL_SCTP, SCTP_FRAGMENT_INTERLEAVE, 4, Some((0, 4))),
    opt(SOL_SCTP, SCTP_PARTIAL_DELIVERY_POINT, 4, Some((0, 4))),
    Replayed {
        established: false,
        ..opt(SOL_SCTP, SCTP_AUTO_ASCONF, 4, None)
    },
    opt(SOL_SCTP, SCTP_RECVRCVINFO, 4, Some((0, 4))),
    opt(SOL_SCTP, SCTP_RECVNXTINFO, 4, Some((0, 4))),
    // struct sctp_sndinfo: sid, flags, ppid, context; the assoc id after
    // them is not state.
    opt(SOL_SCTP, SCTP_DEFAULT_SNDINFO, 16, Some((0, 12))),
    // struct sctp_hmacalgo, with SCTP-AUTH
    opt(SOL_SCTP, SCTP_HMAC_IDENT, 12, None),
    Replayed {
        established: false,
        ..opt(SOL_SCTP, SCTP_AUTOCLOSE, 4, Some((0, 4)))
    },
];

impl Replayed {
    /// The entry for a captured option, if it is one we replay.
    pub(crate) fn of(o: &SockOpt) -> Option<&'static Replayed> {
        Self::find(o.level, o.name)
    }

    fn find(level: libc::c_int, name: libc::c_int) -> Option<&'static Replayed> {
        SOCKOPTS.iter().find(|r| r.level == level && r.name == name)
    }

    /// Reads the option from `sock`; `None` if this kernel lacks it (the
    /// options are tuning: a missing one is skipped, not fatal).
    fn read(&self, sock: BorrowedFd<'_>) -> Option<SockOpt> {
        let mut buf = vec![0u8; self.size];
        let n = sys::get(sock, self.level, self.name, &mut buf).ok()?;
        buf.truncate(n);
        Some(SockOpt {
            level: self.level,
            name: self.name,
            value: buf,
        })
    }

    /// Whether `value` is what a fresh socket has anyway.
    pub(crate) fn is_default(&self, value: &[u8]) -> bool {
        self.zero_default.is_some_and(|(a, b)| {
            value
                .get(a..b.min(value.len()))
                .is_some_and(|v| v.iter().all(|&x| x == 0))
        })
    }
}

/// SCTP_HMAC_IDENT: the HMACs the socket offers; SCTP_REPAIR_AUTH wants a
/// transform on the new socket for each one the association offered.
pub(crate) const SCTP_HMAC_IDENT: libc::c_int = linux::SCTP_HMAC_IDENT as libc::c_int;

fn os(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| classify(op, e)
}

/// Packed sockaddrs as SCTP_GET_LOCAL_ADDRS returns them.
fn parse_packed(buf: &[u8], count: usize) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..count {
        let Some((a, len)) = buf.get(at..).and_then(crate::sockaddr::decode) else {
            break;
        };
        out.push(a);
        at += len;
    }
    out
}

fn local_addrs(sock: BorrowedFd<'_>, assoc_id: i32) -> Result<Vec<SocketAddr>> {
    const SIN6: usize = crate::sockaddr::SIN6_LEN;
    // The kernel sets optlen to the bytes of addresses only (not the
    // header), so we go by addr_num instead.
    let read = |buf: &mut [u8]| -> std::io::Result<Vec<SocketAddr>> {
        buf[..4].copy_from_slice(&assoc_id.to_ne_bytes());
        sys::get(sock, SOL_SCTP, SCTP_GET_LOCAL_ADDRS, buf)?;
        let n = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        Ok(parse_packed(&buf[8..], n))
    };
    // Room for a few IPv6 addresses first: most associations have one or
    // two, and a big zeroed buffer per capture is what costs here. The
    // kernel answers ENOMEM when they do not fit; then room for 256.
    match read(&mut [0u8; 8 + 4 * SIN6]) {
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => read(&mut vec![0u8; 8 + 256 * SIN6]),
        r => r,
    }
    .map_err(os("getsockopt(SCTP_GET_LOCAL_ADDRS)"))
}

/// The peer address of `sock`, if it has one (getpeername).
fn peer_name(sock: BorrowedFd<'_>) -> Option<SocketAddr> {
    sys::peer_addr(sock).ok().flatten()
}

fn sockname(sock: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    sys::local_addr(sock).map_err(|e| classify("getsockname", e))
}

fn capture_sockopts(sock: BorrowedFd<'_>, established: bool, auth: bool) -> Vec<SockOpt> {
    SOCKOPTS
        .iter()
        .filter(|r| !established || r.established)
        // The HMACs matter (and are there to read) only with SCTP-AUTH.
        .filter(|r| auth || !(r.name == SCTP_HMAC_IDENT && r.level == SOL_SCTP))
        .filter_map(|r| r.read(sock))
        .collect()
}

/// The options of a frozen association from one SCTP_REPAIR_SOCK read,
/// in the form the options themselves report (so that restore replays
/// them alike); those at a fresh socket's default are left out. `None` on
/// a kernel without SCTP_REPAIR_SOCK. With them, which repair queues hold
/// records (a bit per queue).
fn sock_settings(sock: BorrowedFd<'_>) -> Result<Option<(Vec<SockOpt>, u8)>> {
    let mut raw = [0u8; std::mem::size_of::<uapi::sctp_repair_sock>()];
    match sys::get(sock, SOL_SCTP, uapi::SCTP_REPAIR_SOCK as i32, &mut raw) {
        Ok(n) if n == raw.len() => {}
        Ok(_) => {
            return Err(classify(
                "getsockopt(SCTP_REPAIR_SOCK)",
                std::io::Error::from_raw_os_error(libc::EMSGSIZE),
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => return Ok(None),
        Err(e) => return Err(classify("getsockopt(SCTP_REPAIR_SOCK)", e)),
    }
    let Some(rs) = sys::read::<uapi::sctp_repair_sock>(&raw, 0) else {
        return Ok(None);
    };
    Ok(Some((settings_as_sockopts(&rs), rs.srso_queues)))
}

/// [`sock_settings`]' conversion: `rs` as the options report themselves,
/// those at a fresh socket's default left out.
fn settings_as_sockopts(rs: &uapi::sctp_repair_sock) -> Vec<SockOpt> {
    let mut v = Vec::with_capacity(SOCKOPTS.len());
    let mut put = |level, name, value: Vec<u8>| v.push(SockOpt { level, name, value });
    // Always: the restored receive window is checked against them.
    put(
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        rs.srso_rcvbuf.to_ne_bytes().to_vec(),
    );
    put(
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        rs.srso_sndbuf.to_ne_bytes().to_vec(),
    );
    let int = |x: u32| x.to_ne_bytes().to_vec();
    // struct sctp_assoc_value { assoc_id 0, value }
    let assoc_value = |x: u32| [[0u8; 4], x.to_ne_bytes()].concat();
    for (name, x) in [
        (SCTP_NODELAY, u32::from(rs.srso_nodelay)),
        (SCTP_DISABLE_FRAGMENTS, u32::from(rs.srso_disable_fragments)),
        (SCTP_FRAGMENT_INTERLEAVE, u32::from(rs.srso_frag_interleave)),
        (SCTP_PARTIAL_DELIVERY_POINT, rs.srso_pd_point),
        (SCTP_RECVRCVINFO, u32::from(rs.srso_recvrcvinfo)),
        (SCTP_RECVNXTINFO, u32::from(rs.srso_recvnxtinfo)),
    ] {
        if x != 0 {
            put(SOL_SCTP, name, int(x));
        }
    }
    if rs.srso_subscribe != 0 {
        // struct sctp_event_subscribe: one byte per event type, as many
        // as the highest one enabled needs (the kernel takes fewer than
        // its own struct has, not more).
        let n = 16 - rs.srso_subscribe.leading_zeros() as usize;
        let events = (0..n)
            .map(|i| u8::from(rs.srso_subscribe >> i & 1 != 0))
            .collect();
        put(SOL_SCTP, SCTP_EVENTS, events);
    }
    if rs.srso_maxseg != 0 {
        put(SOL_SCTP, SCTP_MAXSEG, assoc_value(rs.srso_maxseg));
    }
    if rs.srso_rcv_context != 0 {
        put(SOL_SCTP, SCTP_CONTEXT, assoc_value(rs.srso_rcv_context));
    }
    if rs.srso_snd_sid != 0
        || rs.srso_snd_flags != 0
        || rs.srso_snd_ppid != 0
        || rs.srso_snd_context != 0
    {
        // struct sctp_sndinfo { sid, flags, ppid, context, assoc_id 0 }
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&rs.srso_snd_sid.to_ne_bytes());
        b.extend_from_slice(&rs.srso_snd_flags.to_ne_bytes());
        b.extend_from_slice(&rs.srso_snd_ppid.to_ne_bytes());
        b.extend_from_slice(&rs.srso_snd_context.to_ne_bytes());
        b.extend_from_slice(&[0u8; 4]);
        put(SOL_SCTP, SCTP_DEFAULT_SNDINFO, b);
    }
    v
}

/// SCTP_HMAC_IDENT, which SCTP_REPAIR_SOCK does not cover: the HMACs
/// matter only to an association that uses SCTP-AUTH.
fn capture_hmacs(sock: BorrowedFd<'_>) -> Option<SockOpt> {
    Replayed::find(SOL_SCTP, SCTP_HMAC_IDENT)?.read(sock)
}

/// What the capture needs to know of a socket before reading it.
#[derive(Clone, Copy)]
struct Probe {
    family: u16,
    listening: bool,
    /// SOCK_SEQPACKET: a one-to-many socket, or a peeled-off association.
    one_to_many: bool,
    /// A SOCK_SEQPACKET socket with a peer address: sctp_peeloff() made it.
    peeled: bool,
    /// `None` on a kernel without repair mode, where only a listener can
    /// be captured.
    mode: Option<Mode>,
}

/// Checks that `sock` is SCTP and learns its family, whether it listens
/// and its repair mode.
fn probe(sock: BorrowedFd<'_>) -> Result<Probe> {
    // The repair mode first: only SCTP sockets answer it, which spares the
    // SO_PROTOCOL check unless it fails.
    let mode = match crate::mode(sock) {
        Ok(m) => Some(m),
        Err(Error::Unsupported) => None,
        Err(e) => return Err(e),
    };
    let family = sys::getsockopt(sock, sys::Domain).map_err(os("getsockopt(SO_DOMAIN)"))?;
    let family = u16::try_from(family).map_err(|_| Error::NotSctp)?;
    let listening =
        sys::getsockopt(sock, sys::AcceptConn).map_err(os("getsockopt(SO_ACCEPTCONN)"))?;
    let one_to_many = sys::getsockopt(sock, sys::SockType).map_err(os("getsockopt(SO_TYPE)"))?
        == libc::SOCK_SEQPACKET;
    let peeled = one_to_many && peer_name(sock).is_some();
    Ok(Probe {
        family,
        listening,
        one_to_many,
        peeled,
        mode,
    })
}

impl Probe {
    /// The repair mode of a socket that has one to read.
    fn mode(self) -> Result<Mode> {
        self.mode.ok_or(Error::Unsupported)
    }
}

/// Freezes `sock` (unless it is listening or already frozen) and captures
/// it, leaving it frozen. A partial delivery or a request waiting for its
/// answer cannot be captured ([`Error::Busy`]) but completes if the
/// association runs for a moment, so the socket is thawed and the capture
/// tried again, with a growing pause, for up to `patience`. A socket that
/// was frozen by the caller is never thawed here.
pub(crate) fn freeze_and_capture(sock: BorrowedFd<'_>, patience: Duration) -> Result<Snapshot> {
    // Set on the first busy try only: most captures succeed at once, and
    // the clock is not free in every VM.
    let mut deadline = None;
    // One probe for all tries: a socket's family and role do not change
    // while we hold it (checked once more under repair mode by the kernel).
    // A one-to-many socket is frozen even when it listens: its
    // associations are on it. A peeled-off one is refused by the kernel's
    // SCTP_REPAIR (NotRepairable).
    let p = probe(sock)?;
    let ours = (p.one_to_many || !p.listening) && p.mode()? == Mode::Off;
    let mut pause = Duration::from_millis(1);
    loop {
        // Freezing is refused while a handshake is in progress, which
        // on a one-to-many server is any time a peer connects.
        let r = if ours {
            crate::set_mode_of_sctp(sock, Mode::On).and_then(|()| capture_probed(sock, p, true))
        } else {
            capture_probed(sock, p, false)
        };
        match r {
            Err(Error::Busy) if ours => {
                let end = *deadline.get_or_insert_with(|| Instant::now() + patience);
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Best effort: being busy is the error to report.
                    let _ = crate::set_mode_of_sctp(sock, Mode::Off);
                    return Err(Error::Busy);
                }
                crate::set_mode_of_sctp(sock, Mode::Off)?;
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                if ours {
                    // Best effort: the capture error is the one to report.
                    let _ = crate::set_mode_of_sctp(sock, Mode::Off);
                }
                return Err(e);
            }
            Ok(snap) => return Ok(snap),
        }
    }
}

/// Reads the complete state of `sock`, which must be in repair mode
/// (ESTABLISHED) or listening. The socket is left as it was.
///
/// A one-to-many socket must be frozen too: its snapshot holds each of its
/// associations. So must a listener with associations waiting for
/// accept(), which its snapshot holds the same way; unfrozen, or on a
/// kernel without SCTP_REPAIR_ASSOC_IDS, it is refused
/// ([`Error::AcceptQueue`]): a snapshot would lose them. Freeze a listener first ([`crate::freeze`])
/// for that check to hold until the socket is closed: a frozen listener
/// drops INIT, so no association arrives after it.
pub fn capture(sock: BorrowedFd<'_>) -> Result<Snapshot> {
    let p = probe(sock)?;
    capture_probed(sock, p, false)
}

/// [`capture`] of a probed socket; `frozen` if we just froze it ourselves.
fn capture_probed(sock: BorrowedFd<'_>, p: Probe, frozen: bool) -> Result<Snapshot> {
    let family = p.family;
    if p.peeled {
        return capture_peeled(sock, p, frozen);
    }
    if p.one_to_many {
        return capture_one_to_many(sock, p, frozen);
    }
    if p.listening {
        let sockopts = capture_sockopts(sock, false, false);
        let name = sockname(sock)?.ok_or(Error::NotSctp)?;
        let local_addrs = if name.ip().is_unspecified() {
            vec![name]
        } else {
            local_addrs(sock, 0)?
        };
        let q = crate::diag::listener_queues(sock, family, name.port())?;
        // Associations waiting for accept() are read out of a frozen
        // listener (no new one can come then), by their ids.
        let members = if q.pending == 0 {
            Vec::new()
        } else if p.mode()? != Mode::On {
            return Err(Error::AcceptQueue { pending: q.pending });
        } else {
            let ids = repair_assoc_ids(sock, q.pending as usize).map_err(|e| match e {
                Error::Unsupported => Error::AcceptQueue { pending: q.pending },
                e => e,
            })?;
            // SCTP_GET_LOCAL_ADDRS does not find them by id: they are
            // bound as the listener is.
            capture_members(sock, family, ids, Some(&local_addrs))?
        };
        let backlog = q.backlog;
        return Ok(socket_snapshot(
            Kind::Listen,
            family,
            backlog,
            local_addrs,
            sockopts,
            members,
        ));
    }

    if !frozen && p.mode()? != Mode::On {
        return Err(Error::NotFrozen);
    }
    // A non-zero id selects the association of a one-to-one socket.
    capture_assoc(sock, family, local_addrs(sock, 1)?)
}

/// The ids of the associations of a socket in repair mode, about `n` of
/// them (SCTP_REPAIR_ASSOC_IDS: a listener's waiting for accept() too, in
/// the order accept() returns them).
fn repair_assoc_ids(sock: BorrowedFd<'_>, n: usize) -> Result<Vec<i32>> {
    // struct sctp_assoc_ids: a u32 count, then the ids. None can come
    // while the socket is frozen; the room to spare is for a wrong hint.
    let mut buf = vec![0u8; 4 + 4 * (n + 8)];
    sys::get(sock, SOL_SCTP, uapi::SCTP_REPAIR_ASSOC_IDS as i32, &mut buf)
        .map_err(os("getsockopt(SCTP_REPAIR_ASSOC_IDS)"))?;
    let count = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    Ok(buf[4..]
        .chunks_exact(4)
        .take(count)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Each association `ids` of a frozen socket (one-to-many, or a listener's
/// waiting for accept()), selected in turn; bound to `addrs` if given,
/// else to what the kernel reports for each.
fn capture_members(
    sock: BorrowedFd<'_>,
    family: u16,
    ids: Vec<i32>,
    addrs: Option<&[SocketAddr]>,
) -> Result<Vec<Member>> {
    let mut members = Vec::with_capacity(ids.len());
    for id in ids {
        select_assoc(sock, id)?;
        let local = match addrs {
            Some(a) => Ok(a.to_vec()),
            None => local_addrs(sock, id),
        };
        let snap = local.and_then(|local| capture_assoc(sock, family, local));
        // Deselected in any case: the socket may stay frozen for long.
        select_assoc(sock, 0)?;
        members.push(Member { id, snap: snap? });
    }
    Ok(members)
}

/// Selects the association of a one-to-many socket in repair mode that the
/// SCTP_REPAIR_* options apply to (0: none).
pub(crate) fn select_assoc(sock: BorrowedFd<'_>, id: i32) -> Result<()> {
    sys::setsockopt(sock, sys::RepairAssocId, &id).map_err(os("setsockopt(SCTP_REPAIR_ASSOC_ID)"))
}

/// A frozen one-to-many socket: how it is bound, whether it listens, its
/// options, and each association under its id.
fn capture_one_to_many(sock: BorrowedFd<'_>, p: Probe, frozen: bool) -> Result<Snapshot> {
    if !frozen && p.mode()? != Mode::On {
        return Err(Error::NotFrozen);
    }
    let name = sockname(sock)?.ok_or(Error::NotSctp)?;
    let local_addrs = if name.ip().is_unspecified() {
        vec![name]
    } else {
        local_addrs(sock, 0)?
    };
    // The backlog of a one-to-many socket limits nothing, but 0 would
    // stop it listening.
    let backlog = if p.listening {
        crate::diag::listener_queues(sock, p.family, name.port())
            .map(|q| q.backlog)
            .unwrap_or(0)
            .max(1)
    } else {
        0
    };
    let n = crate::association_count(sock)? as usize;
    let members = capture_members(sock, p.family, repair_assoc_ids(sock, n)?, None)?;
    Ok(socket_snapshot(
        Kind::OneToMany {
            listening: p.listening,
        },
        p.family,
        backlog,
        local_addrs,
        capture_sockopts(sock, false, false),
        members,
    ))
}

/// A frozen peeled-off association, under its id, with the options of its
/// socket.
fn capture_peeled(sock: BorrowedFd<'_>, p: Probe, frozen: bool) -> Result<Snapshot> {
    if !frozen && p.mode()? != Mode::On {
        return Err(Error::NotFrozen);
    }
    // Its only association: nothing to select (nor can it be).
    let id = match repair_assoc_ids(sock, 1)?.as_slice() {
        [id] => *id,
        _ => return Err(Error::NoAssociation),
    };
    let local_addrs = local_addrs(sock, id)?;
    let members = vec![Member {
        id,
        snap: capture_assoc(sock, p.family, local_addrs.clone())?,
    }];
    Ok(socket_snapshot(
        Kind::PeeledOff,
        p.family,
        0,
        local_addrs,
        capture_sockopts(sock, false, false),
        members,
    ))
}

/// The snapshot of a socket whose associations, if any, are its members:
/// a listener, a one-to-many socket, a peeled-off association.
fn socket_snapshot(
    kind: Kind,
    family: u16,
    backlog: u32,
    local_addrs: Vec<SocketAddr>,
    sockopts: Vec<SockOpt>,
    members: Vec<Member>,
) -> Snapshot {
    Snapshot {
        kind,
        family,
        backlog,
        local_addrs,
        assoc: Vec::new(),
        paths: Vec::new(),
        streams: Vec::new(),
        tsn_map: Vec::new(),
        sockopts,
        queues: Vec::new(),
        auth: Vec::new(),
        members,
    }
}

/// The association of a frozen socket (the one selected, if it has more),
/// bound to `local_addrs`, as a snapshot of [`Kind::Established`].
fn capture_assoc(
    sock: BorrowedFd<'_>,
    family: u16,
    local_addrs: Vec<SocketAddr>,
) -> Result<Snapshot> {
    if local_addrs.is_empty() {
        return Err(Error::NoAssociation);
    }
    let v1 = uapi::SCTP_REPAIR_V1.to_ne_bytes();
    let mut assoc = vec![0u8; ASSOC_SIZE];
    assoc[..4].copy_from_slice(&v1);
    let n = sys::get(sock, SOL_SCTP, uapi::SCTP_REPAIR_ASSOC as i32, &mut assoc)
        .map_err(os("getsockopt(SCTP_REPAIR_ASSOC)"))?;
    assoc.truncate(n);
    let paths = sys::get_var(
        sock,
        SOL_SCTP,
        uapi::SCTP_REPAIR_PATHS as i32,
        PATHS_HDR + 4 * PATH_SIZE,
        &v1,
    )
    .map_err(os("getsockopt(SCTP_REPAIR_PATHS)"))?;
    let streams = sys::get_var(
        sock,
        SOL_SCTP,
        uapi::SCTP_REPAIR_STREAMS as i32,
        STREAMS_HDR + 16 * STREAM_SIZE,
        &v1,
    )
    .map_err(os("getsockopt(SCTP_REPAIR_STREAMS)"))?;
    let tsn_map = sys::get_var(
        sock,
        SOL_SCTP,
        uapi::SCTP_REPAIR_TSN_MAP as i32,
        TSN_MAP_SIZE + 16 * GAP_SIZE,
        &v1,
    )
    .map_err(os("getsockopt(SCTP_REPAIR_TSN_MAP)"))?;
    let uses_auth = assoc_features(&assoc) & uapi::SCTP_REPAIR_FEAT_AUTH != 0;
    let (sockopts, queues_held) = match sock_settings(sock)? {
        Some((mut v, held)) => {
            if uses_auth {
                v.extend(capture_hmacs(sock));
            }
            (v, Some(held))
        }
        None => (capture_sockopts(sock, true, uses_auth), None),
    };
    let auth = if uses_auth {
        sys::get_var(
            sock,
            SOL_SCTP,
            uapi::SCTP_REPAIR_AUTH as i32,
            AUTH_HDR + 512,
            &v1,
        )
        .map_err(os("getsockopt(SCTP_REPAIR_AUTH)"))?
    } else {
        Vec::new()
    };
    let queues = crate::queues::read_all(sock, queues_held)?;
    let snap = Snapshot {
        kind: Kind::Established,
        family,
        backlog: 0,
        local_addrs,
        assoc,
        paths,
        streams,
        tsn_map,
        sockopts,
        queues,
        auth,
        members: Vec::new(),
    };
    crate::state::check_blobs(&snap).map_err(Error::Format)?;
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: libc::c_int) -> &'static Replayed {
        let o = SockOpt {
            level: SOL_SCTP,
            name,
            value: Vec::new(),
        };
        Replayed::of(&o).expect("a replayed option")
    }

    #[test]
    fn defaults_are_told_by_their_state_bytes_only() {
        // SCTP_DEFAULT_SNDINFO: zero fields with an assoc id is a default.
        let mut sndinfo = [0u8; 16];
        sndinfo[12..].copy_from_slice(&7i32.to_ne_bytes());
        assert!(entry(34).is_default(&sndinfo));
        sndinfo[4..8].copy_from_slice(&46u32.to_ne_bytes());
        assert!(!entry(34).is_default(&sndinfo));
        // SCTP_CONTEXT: only the value, not the assoc id, counts.
        let mut ctx = [1u8, 0, 0, 0, 0, 0, 0, 0];
        assert!(entry(17).is_default(&ctx));
        ctx[5] = 1;
        assert!(!entry(17).is_default(&ctx));
        // SCTP_EVENTS is as long as the kernel's struct, shorter than ours.
        assert!(entry(11).is_default(&[0u8; 14]));
        assert!(!entry(11).is_default(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        // A value too short to hold its state bytes is written, not guessed.
        assert!(!entry(17).is_default(&[0u8; 2]));
        // SCTP_MAXSEG and SCTP_HMAC_IDENT are always written.
        assert!(!entry(13).is_default(&[0u8; 8]));
        assert!(!entry(SCTP_HMAC_IDENT).is_default(&[0u8; 12]));
    }

    #[test]
    fn settings_read_at_once_become_the_options_that_are_not_defaults() {
        let zeros = [0u8; std::mem::size_of::<uapi::sctp_repair_sock>()];
        let mut rs: uapi::sctp_repair_sock = sys::read(&zeros, 0).expect("sized");
        rs.srso_version = uapi::SCTP_REPAIR_V1;
        rs.srso_sndbuf = 212_992;
        rs.srso_rcvbuf = 425_984;
        let names = |v: &[SockOpt]| v.iter().map(|o| o.name).collect::<Vec<_>>();
        // All defaults: the buffer sizes only.
        assert_eq!(
            names(&settings_as_sockopts(&rs)),
            [libc::SO_RCVBUF, libc::SO_SNDBUF]
        );
        rs.srso_nodelay = 1;
        // SCTP_DATA_IO_EVENT and SCTP_SHUTDOWN_EVENT
        rs.srso_subscribe = 0b10_0001;
        rs.srso_maxseg = 1000;
        rs.srso_snd_ppid = 46u32.to_be();
        let v = settings_as_sockopts(&rs);
        assert_eq!(
            names(&v),
            [
                libc::SO_RCVBUF,
                libc::SO_SNDBUF,
                SCTP_NODELAY,
                SCTP_EVENTS,
                SCTP_MAXSEG,
                SCTP_DEFAULT_SNDINFO
            ]
        );
        let value = |name| &v.iter().find(|o| o.name == name).expect("present").value;
        assert_eq!(value(libc::SO_RCVBUF), &425_984u32.to_ne_bytes());
        assert_eq!(value(SCTP_EVENTS), &[1, 0, 0, 0, 0, 1]);
        assert_eq!(value(SCTP_MAXSEG)[4..], 1000u32.to_ne_bytes());
        assert_eq!(
            value(SCTP_DEFAULT_SNDINFO)[4..8],
            46u32.to_be().to_ne_bytes()
        );
        // Every entry is one restore replays, and none is a default.
        for o in &v {
            let r = Replayed::of(o).expect("replayed");
            assert!(r.established && !r.is_default(&o.value), "{}", o.name);
        }
    }

    #[test]
    fn auto_asconf_and_autoclose_are_socket_options() {
        assert!(!entry(SCTP_AUTO_ASCONF).established);
        assert!(!entry(SCTP_AUTOCLOSE).established);
        assert!(SOCKOPTS
            .iter()
            .filter(|r| r.name != SCTP_AUTO_ASCONF && r.name != SCTP_AUTOCLOSE)
            .all(|r| r.established));
    }
}
