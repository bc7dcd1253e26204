//! Numbered, checksummed SCTP messages on several streams, ordered and
//! unordered, from 1 byte to larger than the path MTU — and the checks that
//! every one arrived exactly once, in order within its stream.
//!
//! Each message carries its own header, so the receiver needs no side
//! channel: `magic u32 | stream u16 | unordered u8 | pad u8 | seq u64 |
//! len u32 | crc32 u32`, then `len` payload bytes derived from (stream,
//! seq), so corruption anywhere is caught.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

const MAGIC: u32 = 0x5c7a_11ed;
const HDR: usize = 24;
/// SCTP_SNDINFO cmsg type and SCTP_UNORDERED flag (uapi/linux/sctp.h).
const SCTP_SNDINFO: libc::c_int = 2;
const SCTP_UNORDERED: u16 = 1;

/// Message sizes cycled through: tiny, typical S1AP, above a 1500 MTU, big.
pub const SIZES: &[usize] = &[1, 7, 60, 300, 1400, 3000, 9000];

fn payload_byte(stream: u16, seq: u64, i: usize) -> u8 {
    let x = (u64::from(stream) << 48)
        ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (i as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 29) as u8
}

/// Builds message `seq` of `stream` with `len` bytes in total (at least
/// the header).
pub fn build(stream: u16, unordered: bool, seq: u64, len: usize) -> Vec<u8> {
    let body = len.saturating_sub(HDR);
    let mut m = Vec::with_capacity(HDR + body);
    m.extend_from_slice(&MAGIC.to_le_bytes());
    m.extend_from_slice(&stream.to_le_bytes());
    m.push(u8::from(unordered));
    m.push(0);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&(body as u32).to_le_bytes());
    let payload: Vec<u8> = (0..body).map(|i| payload_byte(stream, seq, i)).collect();
    m.extend_from_slice(&crc32(&payload).to_le_bytes());
    m.extend_from_slice(&payload);
    m
}

/// The stream and unordered flag a message of [`build`] says it was sent
/// with (an echo server answers the same way).
pub fn route(m: &[u8]) -> Option<(u16, bool)> {
    if m.len() < HDR || m[0..4] != MAGIC.to_le_bytes() {
        return None;
    }
    Some((u16::from_le_bytes([m[4], m[5]]), m[6] != 0))
}

fn crc32(b: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE); payloads are small and this keeps the test
    // free of extra dependencies.
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Sends one message on `stream` (unordered if asked) with SCTP_SNDINFO.
pub fn send(
    sock: BorrowedFd<'_>,
    stream: u16,
    unordered: bool,
    msg: &[u8],
    flags: libc::c_int,
) -> std::io::Result<()> {
    send_to(sock, None, stream, unordered, msg, flags)
}

/// [`send`] to the association with peer address `to` (one-to-many).
pub fn send_to(
    sock: BorrowedFd<'_>,
    to: Option<&nix::sys::socket::SockaddrStorage>,
    stream: u16,
    unordered: bool,
    msg: &[u8],
    flags: libc::c_int,
) -> std::io::Result<()> {
    send_with(sock, to, 0, stream, unordered, msg, flags)
}

/// [`send`] on a one-to-many socket to association `assoc_id`, as an
/// application that keys its peers on their `sctp_assoc_t` does.
pub fn send_to_assoc(
    sock: BorrowedFd<'_>,
    assoc_id: i32,
    stream: u16,
    unordered: bool,
    msg: &[u8],
    flags: libc::c_int,
) -> std::io::Result<()> {
    send_with(sock, None, assoc_id, stream, unordered, msg, flags)
}

/// SCTP_GET_PEER_ADDR_INFO (uapi/linux/sctp.h).
const SCTP_GET_PEER_ADDR_INFO: libc::c_int = 15;

/// The `sctp_assoc_t` of the association of one-to-many socket `sock`
/// with peer address `peer`.
pub fn assoc_id_of(
    sock: BorrowedFd<'_>,
    peer: &nix::sys::socket::SockaddrStorage,
) -> std::io::Result<i32> {
    use nix::sys::socket::SockaddrLike;
    // struct sctp_paddrinfo (packed): assoc_id i32, sockaddr_storage, then
    // state, cwnd, srtt, rto, mtu.
    let mut buf = [0u8; 4 + 128 + 20];
    let n = (peer.len() as usize).min(128);
    // SAFETY: `peer` holds `len()` bytes of sockaddr.
    let raw = unsafe { std::slice::from_raw_parts(peer.as_ptr().cast::<u8>(), n) };
    buf[4..4 + n].copy_from_slice(raw);
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: valid fd, buffer and its length for the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_SCTP,
            SCTP_GET_PEER_ADDR_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]))
}

/// SCTP_SOCKOPT_PEELOFF (uapi/linux/sctp.h).
const SCTP_SOCKOPT_PEELOFF: libc::c_int = 102;

/// sctp_peeloff(): association `assoc_id` of one-to-many socket `sock`, on
/// a socket of its own.
pub fn peeloff(sock: BorrowedFd<'_>, assoc_id: i32) -> std::io::Result<OwnedFd> {
    // sctp_peeloff_arg_t { sctp_assoc_t associd; int sd; }
    let mut arg = [0u8; 8];
    arg[..4].copy_from_slice(&assoc_id.to_ne_bytes());
    let mut len = arg.len() as libc::socklen_t;
    // SAFETY: valid fd, buffer and its length for the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_SCTP,
            SCTP_SOCKOPT_PEELOFF,
            arg.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // It returns the new fd, also in `sd`.
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::from_ne_bytes([arg[4], arg[5], arg[6], arg[7]]);
    // SAFETY: the kernel made `fd` for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_with(
    sock: BorrowedFd<'_>,
    to: Option<&nix::sys::socket::SockaddrStorage>,
    assoc_id: i32,
    stream: u16,
    unordered: bool,
    msg: &[u8],
    flags: libc::c_int,
) -> std::io::Result<()> {
    use nix::sys::socket::SockaddrLike;
    // struct sctp_sndinfo { u16 sid; u16 flags; u32 ppid; u32 context; s32 assoc_id; }
    let mut info = [0u8; 16];
    info[0..2].copy_from_slice(&stream.to_ne_bytes());
    info[2..4].copy_from_slice(&(if unordered { SCTP_UNORDERED } else { 0 }).to_ne_bytes());
    info[12..16].copy_from_slice(&assoc_id.to_ne_bytes());
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations.
    let space = unsafe { libc::CMSG_SPACE(info.len() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: zeroed msghdr is valid; we fill in the pointers below.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.as_mut_ptr().cast();
    mh.msg_controllen = space;
    if let Some(a) = to {
        mh.msg_name = a.as_ptr() as *mut libc::c_void;
        mh.msg_namelen = a.len();
    }
    // SAFETY: the control buffer has room for one cmsg of `info`'s size;
    // CMSG_FIRSTHDR/CMSG_DATA point inside it.
    unsafe {
        let cm = libc::CMSG_FIRSTHDR(&mh);
        (*cm).cmsg_level = libc::IPPROTO_SCTP;
        (*cm).cmsg_type = SCTP_SNDINFO;
        (*cm).cmsg_len = libc::CMSG_LEN(info.len() as u32) as usize;
        std::ptr::copy_nonoverlapping(info.as_ptr(), libc::CMSG_DATA(cm), info.len());
    }
    // SAFETY: `mh` points at live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &mh, flags) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n as usize != msg.len() {
        return Err(std::io::Error::other(format!(
            "short send: {n} of {}",
            msg.len()
        )));
    }
    Ok(())
}

/// One whole message of a one-to-many socket and the address of the
/// peer it came from (None on timeout); notifications are skipped.
pub fn recv_from(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> std::io::Result<Option<(Vec<u8>, nix::sys::socket::SockaddrStorage)>> {
    recv_from_flags(sock, buf, 0)
}

/// [`recv_from`] with recvmsg() `flags` (MSG_DONTWAIT: None at once if
/// nothing is there).
pub fn recv_from_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<Option<(Vec<u8>, nix::sys::socket::SockaddrStorage)>> {
    use nix::sys::socket::SockaddrLike;
    let mut msg = Vec::new();
    loop {
        // SAFETY: all-zero is a valid sockaddr_storage to fill.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let Some(got) = recvmsg_once(sock, buf, flags, Some(&mut from))? else {
            if msg.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::WouldBlock.into());
        };
        if got.flags & libc::MSG_NOTIFICATION != 0 {
            continue;
        }
        msg.extend_from_slice(&buf[..got.len]);
        if got.flags & libc::MSG_EOR != 0 {
            // SAFETY: the kernel filled `from` with `namelen` bytes.
            let addr = unsafe {
                nix::sys::socket::SockaddrStorage::from_raw(
                    (&from as *const libc::sockaddr_storage).cast(),
                    Some(got.namelen),
                )
            }
            .ok_or_else(|| std::io::Error::other("no peer address"))?;
            return Ok(Some((msg, addr)));
        }
    }
}

/// One piece of a message of a one-to-many socket (all of it, or what a
/// partial delivery gave so far): its length in `buf`, whether it ends the
/// message, and the peer it came from; None if nothing is there (with
/// MSG_DONTWAIT in `flags`) or on timeout. Notifications are skipped.
pub fn recv_piece_from(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<Option<(usize, bool, nix::sys::socket::SockaddrStorage)>> {
    use nix::sys::socket::SockaddrLike;
    loop {
        // SAFETY: all-zero is a valid sockaddr_storage to fill.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let Some(got) = recvmsg_once(sock, buf, flags, Some(&mut from))? else {
            return Ok(None);
        };
        if got.flags & libc::MSG_NOTIFICATION != 0 {
            continue;
        }
        // SAFETY: the kernel filled `from` with `namelen` bytes.
        let addr = unsafe {
            nix::sys::socket::SockaddrStorage::from_raw(
                (&from as *const libc::sockaddr_storage).cast(),
                Some(got.namelen),
            )
        }
        .ok_or_else(|| std::io::Error::other("no peer address"))?;
        return Ok(Some((got.len, got.flags & libc::MSG_EOR != 0, addr)));
    }
}

/// What one recvmsg() returned.
struct Received {
    len: usize,
    flags: libc::c_int,
    /// Bytes of the sender's address, when one was asked for.
    namelen: libc::socklen_t,
}

/// One recvmsg() into `buf` (and the sender's address into `from`, if
/// given): None on timeout / would-block, an error at the association's
/// end.
fn recvmsg_once(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
    from: Option<&mut libc::sockaddr_storage>,
) -> std::io::Result<Option<Received>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if let Some(f) = from {
        mh.msg_name = (f as *mut libc::sockaddr_storage).cast();
        mh.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    // SAFETY: `mh` points at `buf` (and `from`), live for the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, flags) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            return Ok(None);
        }
        return Err(e);
    }
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "association closed",
        ));
    }
    Ok(Some(Received {
        len: n as usize,
        flags: mh.msg_flags,
        namelen: mh.msg_namelen,
    }))
}

/// Receives one whole message (or None on timeout / would-block).
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<Option<Vec<u8>>> {
    recv_flags(sock, buf, 0)
}

/// [`recv`] with recvmsg flags (e.g. MSG_DONTWAIT).
pub fn recv_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut msg = Vec::new();
    loop {
        match recv_piece(sock, buf, flags)? {
            None if msg.is_empty() => return Ok(None),
            None => continue, // rest of a partially delivered message
            Some((n, eor)) => {
                msg.extend_from_slice(&buf[..n]);
                if eor {
                    return Ok(Some(msg));
                }
            }
        }
    }
}

/// One recvmsg(): the bytes it put in `buf` and whether they end a message
/// (MSG_EOR), or None on timeout / would-block. A reader that keeps the
/// pieces itself can read part of a message from one socket and the rest
/// from the socket it was moved to.
pub fn recv_piece(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<Option<(usize, bool)>> {
    let Some(got) = recvmsg_once(sock, buf, flags, None)? else {
        return Ok(None);
    };
    if got.flags & libc::MSG_NOTIFICATION != 0 {
        // Only association events are subscribed to (see `watch`): every
        // one of them is a failure of the migration.
        return Err(std::io::Error::other(describe_notification(
            &buf[..got.len],
        )));
    }
    Ok(Some((got.len, got.flags & libc::MSG_EOR != 0)))
}

/// Subscribes `sock` to association change and remote error events, so
/// that a COMM_LOST, RESTART, SHUTDOWN or ABORT reaches the reader as an
/// error naming it instead of a silent close.
pub fn watch(sock: BorrowedFd<'_>) -> std::io::Result<()> {
    // struct sctp_event { sctp_assoc_t se_assoc_id; u16 se_type; u8 se_on; }
    const SCTP_EVENT: libc::c_int = 127;
    for ty in [SCTP_ASSOC_CHANGE, SCTP_REMOTE_ERROR] {
        let mut ev = [0u8; 8];
        ev[4..6].copy_from_slice(&ty.to_ne_bytes());
        ev[6] = 1;
        // SAFETY: valid fd; `ev` is a complete struct sctp_event.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_SCTP,
                SCTP_EVENT,
                ev.as_ptr().cast(),
                ev.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

const SCTP_ASSOC_CHANGE: u16 = 0x8001;
const SCTP_REMOTE_ERROR: u16 = 0x8003;

/// A notification in words: its type and, for an association change, the
/// state (COMM_LOST, RESTART...) and the error cause.
pub fn describe_notification(n: &[u8]) -> String {
    let u16_at = |at: usize| n.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match u16_at(0) {
        Some(SCTP_ASSOC_CHANGE) => {
            let state = match u16_at(8) {
                Some(0) => "COMM_UP",
                Some(1) => "COMM_LOST",
                Some(2) => "RESTART",
                Some(3) => "SHUTDOWN_COMP",
                Some(4) => "CANT_STR_ASSOC",
                _ => "unknown state",
            };
            format!(
                "SCTP_ASSOC_CHANGE {state}, error cause {}",
                u16_at(10).unwrap_or(0)
            )
        }
        Some(SCTP_REMOTE_ERROR) => format!(
            "SCTP_REMOTE_ERROR, cause {}",
            u16_at(8).map_or(0, u16::from_be)
        ),
        Some(t) => format!("SCTP notification {t:#x}"),
        None => "short SCTP notification".to_string(),
    }
}

/// What a receiver saw, per (stream, unordered).
#[derive(Default)]
pub struct Tally {
    next: BTreeMap<(u16, bool), u64>,
    unordered: BTreeMap<u16, BTreeSet<u64>>,
    pub received: u64,
    pub bytes: u64,
    pub errors: Vec<String>,
}

impl Tally {
    /// Checks one received message.
    pub fn check(&mut self, m: &[u8]) {
        self.received += 1;
        self.bytes += m.len() as u64;
        if self.errors.len() > 20 {
            return;
        }
        if m.len() < HDR || m[0..4] != MAGIC.to_le_bytes() {
            self.errors
                .push(format!("message of {} bytes without our header", m.len()));
            return;
        }
        let stream = u16::from_le_bytes([m[4], m[5]]);
        let unordered = m[6] != 0;
        let seq = u64::from_le_bytes(m[8..16].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(m[16..20].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(m[20..24].try_into().unwrap_or_default());
        let body = &m[HDR..];
        if body.len() != len
            || crc32(body) != crc
            || body
                .iter()
                .enumerate()
                .any(|(i, &b)| b != payload_byte(stream, seq, i))
        {
            self.errors.push(format!(
                "stream {stream} seq {seq}: corrupt ({} bytes, header says {len})",
                body.len()
            ));
            return;
        }
        if unordered {
            if !self.unordered.entry(stream).or_default().insert(seq) {
                self.errors
                    .push(format!("stream {stream} unordered seq {seq}: duplicate"));
            }
        } else {
            let next = self.next.entry((stream, false)).or_insert(0);
            if seq != *next {
                self.errors.push(format!("stream {stream} ordered: got seq {seq}, expected {next} (lost, duplicated or reordered)"));
            }
            *next = seq + 1;
        }
    }

    /// Checks that exactly `sent[(stream, unordered)]` messages arrived.
    pub fn complete(&self, sent: &BTreeMap<(u16, bool), u64>) -> Result<()> {
        if let Some(e) = self.errors.first() {
            bail!("{} error(s), first: {e}", self.errors.len());
        }
        for (&(stream, unordered), &n) in sent {
            if unordered {
                let got = self.unordered.get(&stream).map_or(0, |s| s.len() as u64);
                let contiguous = self
                    .unordered
                    .get(&stream)
                    .map_or(true, |s| s.iter().copied().eq(0..got));
                if got != n || !contiguous {
                    bail!("stream {stream} unordered: {got} of {n} messages arrived");
                }
            } else {
                let got = self.next.get(&(stream, false)).copied().unwrap_or(0);
                if got != n {
                    bail!("stream {stream} ordered: {got} of {n} messages arrived");
                }
            }
        }
        Ok(())
    }
}

/// The sending side's counters: next seq per (stream, unordered).
#[derive(Default, Clone)]
pub struct Sent {
    pub next: BTreeMap<(u16, bool), u64>,
    pub count: u64,
}

impl Sent {
    /// Sends message number `i` of a deterministic mix over `streams`.
    pub fn send_next(&mut self, sock: BorrowedFd<'_>, streams: u16, i: u64) -> Result<()> {
        self.try_send_next(sock, streams, i, 0).map(|_| ())
    }

    /// Like `send_next` with sendmsg `flags`; Ok(false) if the socket
    /// would block (nothing sent, the same message is tried next time).
    pub fn try_send_next(
        &mut self,
        sock: BorrowedFd<'_>,
        streams: u16,
        i: u64,
        flags: libc::c_int,
    ) -> Result<bool> {
        let stream = (i % u64::from(streams)) as u16;
        let unordered = i % 5 == 3;
        let len = SIZES[(i as usize / streams as usize) % SIZES.len()].max(HDR);
        let seq = *self.next.get(&(stream, unordered)).unwrap_or(&0);
        let m = build(stream, unordered, seq, len);
        match send(sock, stream, unordered, &m, flags) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e).with_context(|| format!("send stream {stream} seq {seq}")),
        }
        self.next.insert((stream, unordered), seq + 1);
        self.count += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_catches_loss_duplication_and_corruption() {
        let mut t = Tally::default();
        t.check(&build(1, false, 0, 100));
        t.check(&build(1, false, 1, 100));
        assert!(t.errors.is_empty());
        t.check(&build(1, false, 1, 100));
        assert_eq!(t.errors.len(), 1, "duplicate");
        let mut m = build(2, false, 0, 3000);
        m[2000] ^= 1;
        t.check(&m);
        assert_eq!(t.errors.len(), 2, "corruption");
        t.check(&build(3, true, 5, 10));
        t.check(&build(3, true, 5, 10));
        assert_eq!(t.errors.len(), 3, "unordered duplicate");
    }

    #[test]
    fn complete_needs_every_message() {
        let mut t = Tally::default();
        t.check(&build(0, false, 0, 50));
        let mut sent = BTreeMap::new();
        sent.insert((0, false), 2);
        assert!(t.complete(&sent).is_err());
        t.check(&build(0, false, 1, 50));
        assert!(t.complete(&sent).is_ok());
    }
}
