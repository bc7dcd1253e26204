//! Where SCTP state is *read*: capture a frozen socket into a [`Snapshot`].

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use epcmig_sys::sctp_repair as uapi;

use crate::snapshot::{Kind, Snapshot, SockOpt};
use crate::sockopt::{self, SOL_SCTP};
use crate::state::{
    assoc_features, sockaddr_from_storage, ASSOC_SIZE, AUTH_HDR, GAP_SIZE, PATHS_HDR, PATH_SIZE,
    STREAMS_HDR, STREAM_SIZE, TSN_MAP_SIZE,
};
use crate::{classify, ensure_sctp, Error, Mode, Result};

/// SCTP_GET_LOCAL_ADDRS (uapi/linux/sctp.h).
const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;

/// Socket options replayed on restore: (level, name, buffer size). Socket
/// buffer sizes come first: the restored receive window is checked against
/// the receive buffer.
pub(crate) const SOCKOPTS: &[(libc::c_int, libc::c_int, usize)] = &[
    (libc::SOL_SOCKET, libc::SO_RCVBUF, 4),
    (libc::SOL_SOCKET, libc::SO_SNDBUF, 4),
    (SOL_SCTP, 3, 4),   // SCTP_NODELAY
    (SOL_SCTP, 8, 4),   // SCTP_DISABLE_FRAGMENTS
    (SOL_SCTP, 11, 32), // SCTP_EVENTS (struct sctp_event_subscribe)
    (SOL_SCTP, 13, 8),  // SCTP_MAXSEG (struct sctp_assoc_value)
    (SOL_SCTP, 17, 8),  // SCTP_CONTEXT
    (SOL_SCTP, 18, 4),  // SCTP_FRAGMENT_INTERLEAVE
    (SOL_SCTP, 19, 4),  // SCTP_PARTIAL_DELIVERY_POINT
    (SOL_SCTP, 30, 4),  // SCTP_AUTO_ASCONF
    (SOL_SCTP, 32, 4),  // SCTP_RECVRCVINFO
    (SOL_SCTP, 33, 4),  // SCTP_RECVNXTINFO
    (SOL_SCTP, 34, 16), // SCTP_DEFAULT_SNDINFO (struct sctp_sndinfo)
    (SOL_SCTP, 22, 12), // SCTP_HMAC_IDENT (struct sctp_hmacalgo), with SCTP-AUTH
];

/// SCTP_HMAC_IDENT: the HMACs the socket offers; SCTP_REPAIR_AUTH wants a
/// transform on the new socket for each one the association offered.
pub(crate) const SCTP_HMAC_IDENT: libc::c_int = 22;

fn os(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| classify(op, e)
}

/// Packed sockaddrs as SCTP_GET_LOCAL_ADDRS returns them.
fn parse_packed(buf: &[u8], count: usize) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..count {
        let Some(fam) = buf
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        else {
            break;
        };
        let len = match i32::from(fam) {
            libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
            libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
            _ => break,
        };
        let Some(raw) = buf.get(at..at + len) else {
            break;
        };
        // SAFETY: zeroed storage is a valid sockaddr_storage; we copy at
        // most its size from a bounds-checked slice.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: `len` <= size_of::<sockaddr_storage>() and `raw` has `len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.as_ptr(),
                (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                len,
            )
        };
        if let Some(a) = sockaddr_from_storage(&ss) {
            out.push(a);
        }
        at += len;
    }
    out
}

fn local_addrs(sock: BorrowedFd<'_>, assoc_id: i32) -> Result<Vec<SocketAddr>> {
    // Room for 256 IPv6 addresses. The kernel sets optlen to the bytes of
    // addresses only (not the header), so we go by addr_num instead.
    let mut buf = vec![0u8; 8 + 256 * std::mem::size_of::<libc::sockaddr_in6>()];
    buf[..4].copy_from_slice(&assoc_id.to_ne_bytes());
    sockopt::get(sock, SOL_SCTP, SCTP_GET_LOCAL_ADDRS, &mut buf)
        .map_err(os("getsockopt(SCTP_GET_LOCAL_ADDRS)"))?;
    let n = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    Ok(parse_packed(&buf[8..], n))
}

fn sockname(sock: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    // SAFETY: zeroed sockaddr_storage is valid; getsockname writes at most len.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid fd, pointer and length for the call.
    let rc = unsafe {
        libc::getsockname(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(classify("getsockname", std::io::Error::last_os_error()));
    }
    Ok(sockaddr_from_storage(&ss))
}

fn capture_sockopts(sock: BorrowedFd<'_>, auth: bool) -> Vec<SockOpt> {
    let mut v = Vec::new();
    for &(level, name, size) in SOCKOPTS {
        // The HMACs matter (and are there to read) only with SCTP-AUTH.
        if name == SCTP_HMAC_IDENT && level == SOL_SCTP && !auth {
            continue;
        }
        let mut buf = vec![0u8; size];
        // Options a kernel lacks are skipped, not fatal: they are tuning.
        if let Ok(n) = sockopt::get(sock, level, name, &mut buf) {
            buf.truncate(n);
            v.push(SockOpt {
                level,
                name,
                value: buf,
            });
        }
    }
    v
}

/// What the capture needs to know of a socket before reading it.
#[derive(Clone, Copy)]
struct Probe {
    family: u16,
    listening: bool,
}

/// Checks that `sock` is SCTP and learns its family and whether it listens.
fn probe(sock: BorrowedFd<'_>) -> Result<Probe> {
    ensure_sctp(sock)?;
    let family = sockopt::get_int(sock, libc::SOL_SOCKET, libc::SO_DOMAIN)
        .map_err(os("getsockopt(SO_DOMAIN)"))?;
    let family = u16::try_from(family).map_err(|_| Error::NotSctp)?;
    let listening = sockopt::get_int(sock, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
        .map_err(os("getsockopt(SO_ACCEPTCONN)"))?
        != 0;
    Ok(Probe { family, listening })
}

/// Freezes `sock` (unless it is listening or already frozen) and captures
/// it, leaving it frozen. A partial delivery or a request waiting for its
/// answer cannot be captured ([`Error::Busy`]) but completes if the
/// association runs for a moment, so the socket is thawed and the capture
/// tried again, with a growing pause, for up to `patience`. A socket that
/// was frozen by the caller is never thawed here.
pub fn freeze_and_capture(sock: BorrowedFd<'_>, patience: Duration) -> Result<Snapshot> {
    let deadline = Instant::now() + patience;
    // One probe for all tries: a socket's family and role do not change
    // while we hold it (checked once more under repair mode by the kernel).
    let p = probe(sock)?;
    let ours = !p.listening && crate::mode_of_sctp(sock)? == Mode::Off;
    let mut pause = Duration::from_millis(1);
    loop {
        if ours {
            crate::set_mode_of_sctp(sock, Mode::On)?;
        }
        match capture_probed(sock, p, ours) {
            Err(Error::Busy) if ours && Instant::now() < deadline => {
                crate::set_mode_of_sctp(sock, Mode::Off)?;
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
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
pub fn capture(sock: BorrowedFd<'_>) -> Result<Snapshot> {
    let p = probe(sock)?;
    capture_probed(sock, p, false)
}

/// [`capture`] of a probed socket; `frozen` if we just froze it ourselves.
fn capture_probed(sock: BorrowedFd<'_>, p: Probe, frozen: bool) -> Result<Snapshot> {
    let family = p.family;
    if p.listening {
        let sockopts = capture_sockopts(sock, false);
        let name = sockname(sock)?.ok_or(Error::NotSctp)?;
        let local_addrs = if name.ip().is_unspecified() {
            vec![name]
        } else {
            local_addrs(sock, 0)?
        };
        let backlog = crate::diag::listen_backlog(sock, family, name.port())?;
        return Ok(Snapshot {
            kind: Kind::Listen,
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
        });
    }

    if !frozen && crate::mode_of_sctp(sock)? != Mode::On {
        return Err(Error::NotFrozen);
    }
    // A non-zero id selects the association of a one-to-one socket.
    let local_addrs = local_addrs(sock, 1)?;
    if local_addrs.is_empty() {
        return Err(Error::NoAssociation);
    }
    let v1 = uapi::SCTP_REPAIR_V1.to_ne_bytes();
    let mut assoc = vec![0u8; ASSOC_SIZE];
    assoc[..4].copy_from_slice(&v1);
    let n = sockopt::get(sock, SOL_SCTP, uapi::SCTP_REPAIR_ASSOC as i32, &mut assoc)
        .map_err(os("getsockopt(SCTP_REPAIR_ASSOC)"))?;
    assoc.truncate(n);
    let paths = sockopt::get_var(
        sock,
        SOL_SCTP,
        uapi::SCTP_REPAIR_PATHS as i32,
        PATHS_HDR + 4 * PATH_SIZE,
        &v1,
    )
    .map_err(os("getsockopt(SCTP_REPAIR_PATHS)"))?;
    let streams = sockopt::get_var(
        sock,
        SOL_SCTP,
        uapi::SCTP_REPAIR_STREAMS as i32,
        STREAMS_HDR + 16 * STREAM_SIZE,
        &v1,
    )
    .map_err(os("getsockopt(SCTP_REPAIR_STREAMS)"))?;
    let tsn_map = sockopt::get_var(
        sock,
        SOL_SCTP,
        uapi::SCTP_REPAIR_TSN_MAP as i32,
        TSN_MAP_SIZE + 16 * GAP_SIZE,
        &v1,
    )
    .map_err(os("getsockopt(SCTP_REPAIR_TSN_MAP)"))?;
    let uses_auth = assoc_features(&assoc) & uapi::SCTP_REPAIR_FEAT_AUTH != 0;
    let sockopts = capture_sockopts(sock, uses_auth);
    let auth = if uses_auth {
        sockopt::get_var(
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
    let queues = crate::queues::read_all(sock)?;
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
    };
    crate::state::check_blobs(&snap).map_err(Error::Format)?;
    Ok(snap)
}
