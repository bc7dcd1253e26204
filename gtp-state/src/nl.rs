//! Netlink plumbing: a blocking socket that sends requests (one, a dump, or
//! a batch) and collects replies and acks; the `gtp` generic-netlink family
//! messages (GTP_CMD_NEWPDP / NEWPDPS / GETPDP) on top of
//! netlink-packet-generic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::mpsc;

use netlink_packet_core::{
    emit_u16, emit_u32, emit_u64, parse_u16, parse_u32, parse_u64, parse_u8, DecodeError,
    DefaultNla, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, OpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::{protocols, Socket, SocketAddr};

use crate::model::{Pdp, Tunnel};
use crate::Error;

/// PDP contexts per send() when installing them: per GTP_CMD_NEWPDPS
/// request, or GTP_CMD_NEWPDP requests per datagram. Only failed requests
/// and the last one of a batch are answered, so the receive buffer does
/// not limit it; past a few hundred contexts the syscalls saved no longer
/// matter (measured in the guest).
pub const DEFAULT_BATCH: usize = 1024;
/// The largest batch: a datagram must fit the socket's send buffer
/// (netlink refuses a longer one with EMSGSIZE); 2048 of the longest
/// requests fit the default (2 x net.core.wmem_max, 416 KiB).
const MAX_BATCH: usize = 2048;
/// The PDP attributes of one context are at most this long (v0, IPv6
/// peer and MS).
const PDP_ATTRS_MAX_LEN: usize = 8 + 12 + 8 + 20 + 8 + 20;
/// A GTP_CMD_NEWPDP request is at most this long.
const NEWPDP_MAX_LEN: usize = 16 + 4 + 8 + PDP_ATTRS_MAX_LEN;

/// How PDP contexts are handed to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// GTP_CMD_NEWPDPS requests of up to this many contexts each, where
    /// the kernel has the command (kernel-patches/0020); otherwise as
    /// [`Install::Batched`].
    Bulk(usize),
    /// This many GTP_CMD_NEWPDP requests per send(), only the last acked:
    /// what a stock kernel allows.
    Batched(usize),
    /// One GTP_CMD_NEWPDP request and its ack at a time: what per-tunnel
    /// tools (libgtpnl's gtp-tunnel) do. The benchmarks' baseline.
    OneByOne,
}

impl Default for Install {
    fn default() -> Self {
        Install::Bulk(DEFAULT_BATCH)
    }
}
const NEWPDP_FLAGS: u16 = netlink_packet_core::NLM_F_EXCL | netlink_packet_core::NLM_F_CREATE;
const RCVBUF: i32 = 8 << 20;
const RECV_BUF: usize = 1 << 20;

/// A netlink socket of one protocol, connected to the kernel.
pub(crate) struct Nl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn set_int_opt(fd: i32, opt: i32, val: i32) -> std::io::Result<()> {
    // SAFETY: setsockopt(2) with a pointer to a live i32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Nl {
    pub fn route() -> Result<Nl, Error> {
        Nl::new(protocols::NETLINK_ROUTE)
    }

    pub fn generic() -> Result<Nl, Error> {
        Nl::new(protocols::NETLINK_GENERIC)
    }

    fn new(proto: isize) -> Result<Nl, Error> {
        let io = |e| Error::Io {
            op: "opening a netlink socket",
            source: e,
        };
        let mut sock = Socket::new(proto).map_err(io)?;
        sock.bind_auto().map_err(io)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(io)?;
        // Extended acks carry the kernel's error text and which attribute
        // it refused; optional. Capped acks do not echo a refused request.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        // Room for a batch of acks: SO_RCVBUFFORCE needs CAP_NET_ADMIN,
        // plain SO_RCVBUF is capped by net.core.rmem_max.
        let fd = sock.as_raw_fd();
        if set_int_opt(fd, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            let _ = set_int_opt(fd, libc::SO_RCVBUF, RCVBUF);
        }
        let _ = set_int_opt(fd, libc::SO_SNDBUF, 4 << 20);
        Ok(Nl {
            sock,
            seq: 1,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Takes `n` consecutive sequence numbers (none wrapping to 0);
    /// returns the first.
    fn reserve_seqs(&mut self, n: usize) -> u32 {
        let n = u32::try_from(n).unwrap_or(u32::MAX / 2).max(1);
        if self.seq.checked_add(n).is_none() {
            self.seq = 0;
        }
        let first = self.seq + 1;
        self.seq += n;
        first
    }

    /// Serialises `payload` with `flags` and a fresh sequence number onto
    /// `out`; returns the sequence number.
    pub fn frame<T>(&mut self, out: &mut Vec<u8>, payload: T, flags: u16) -> u32
    where
        T: NetlinkSerializable,
    {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = flags | NLM_F_REQUEST;
        let seq = self.next_seq();
        hdr.sequence_number = seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(payload));
        m.finalize();
        let start = out.len();
        out.resize(start + m.buffer_len(), 0);
        m.serialize(&mut out[start..]);
        seq
    }

    pub fn send(&self, bytes: &[u8], op: &'static str) -> Result<(), Error> {
        let n = self
            .sock
            .send(bytes, 0)
            .map_err(|e| Error::from_io(op, e))?;
        if n != bytes.len() {
            return Err(Error::Protocol(format!("{op}: short netlink send")));
        }
        Ok(())
    }

    /// Receives one datagram into `self.buf`; a truncated one is an error.
    fn recv_datagram(&mut self, op: &'static str) -> Result<(), Error> {
        self.buf.clear();
        let n = self
            .sock
            .recv(&mut self.buf, libc::MSG_TRUNC)
            .map_err(|e| Error::from_io(op, e))?;
        if n > self.buf.len() {
            return Err(Error::Protocol(format!("{op}: netlink reply truncated")));
        }
        Ok(())
    }

    /// Receives one datagram and splits it into messages.
    fn recv<T>(&mut self, op: &'static str) -> Result<Vec<NetlinkMessage<T>>, Error>
    where
        T: NetlinkDeserializable,
    {
        self.recv_datagram(op)?;
        let mut out = Vec::new();
        let mut off = 0;
        while off + 16 <= self.buf.len() {
            let b = &self.buf[off..];
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if len < 16 || len > b.len() {
                return Err(Error::Protocol(format!("{op}: bad netlink message length")));
            }
            let m = NetlinkMessage::<T>::deserialize(&b[..len])
                .map_err(|e| Error::Protocol(format!("{op}: {e}")))?;
            out.push(m);
            off += (len + 3) & !3;
        }
        Ok(out)
    }

    /// Sends one request and returns its replies: every message of a dump
    /// until NLMSG_DONE, or the answer and/or ack of a plain request.
    /// A kernel error becomes `Err` (see [`Error::from_errno`]).
    pub fn request<T>(&mut self, payload: T, flags: u16, op: &'static str) -> Result<Vec<T>, Error>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
    {
        let mut out = Vec::new();
        let seq = self.frame(&mut out, payload, flags | NLM_F_ACK);
        self.send(&out, op)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            for m in self.recv::<T>(op)? {
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(i) => replies.push(i),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => match e.code {
                        None if !dump => return Ok(replies),
                        None => {}
                        Some(c) => return Err(Error::from_errno(op, -c.get())),
                    },
                    _ => {}
                }
            }
        }
    }

    /// Reads replies until the ack (or error) of request `seq`.
    fn ack(&mut self, seq: u32, op: &'static str) -> Result<Ack, Error> {
        loop {
            self.recv_datagram(op)?;
            let all = acks(&self.buf).map_err(|e| Error::Protocol(format!("{op}: {e}")))?;
            if let Some(a) = all.into_iter().find(|a| a.seq == seq) {
                return Ok(a);
            }
        }
    }

    /// Sends `framed` (one datagram of requests numbered `first_seq`,
    /// `first_seq + 1`, ... `count` of them, the last with NLM_F_ACK) and
    /// reads their replies up to the last one's ack. The kernel answers a
    /// request without NLM_F_ACK only if it fails, so this reads one reply
    /// per batch plus one per failed request. Returns, for the first
    /// failed request, its index and the errno.
    ///
    /// If replies were lost (receive buffer overrun: many failures), the
    /// earliest ones are still queued; without any failure among them the
    /// outcome is unknown and an error is returned.
    pub fn send_batch(
        &mut self,
        framed: &[u8],
        first_seq: u32,
        count: usize,
        op: &'static str,
    ) -> Result<Option<(usize, i32)>, Error> {
        self.send(framed, op)?;
        let last = count.saturating_sub(1);
        let mut first_err: Option<(usize, i32)> = None;
        let mut overrun = false;
        loop {
            // Genetlink requests run in the sender's context: every reply
            // is queued by the time send() returns, so after an overrun
            // (the last ack may be gone) read what is there and stop.
            let flags = if overrun { libc::MSG_DONTWAIT } else { 0 };
            self.buf.clear();
            match self.sock.recv(&mut self.buf, flags | libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(Error::Protocol(format!("{op}: netlink reply truncated")))
                }
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    overrun = true;
                    continue;
                }
                Err(e) if overrun && e.kind() == std::io::ErrorKind::WouldBlock => {
                    return match first_err {
                        Some(f) => Ok(Some(f)),
                        None => Err(Error::Protocol(format!(
                            "{op}: replies lost (netlink receive buffer overrun)"
                        ))),
                    };
                }
                Err(e) => return Err(Error::from_io(op, e)),
            }
            let mut done = false;
            for Ack {
                seq, errno: code, ..
            } in acks(&self.buf).map_err(|e| Error::Protocol(format!("{op}: {e}")))?
            {
                let idx = seq.wrapping_sub(first_seq) as usize;
                if idx >= count {
                    continue;
                }
                if code != 0 && first_err.map_or(true, |(i, _)| idx < i) {
                    first_err = Some((idx, code));
                }
                done |= idx == last;
            }
            if done {
                return Ok(first_err);
            }
        }
    }
}

/// An NLMSG_ERROR message: an ack or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    seq: u32,
    /// Positive; 0 for an ack.
    errno: i32,
    /// NLMSGERR_ATTR_OFFS: where in the request the refused attribute
    /// starts, from its netlink header.
    offset: Option<u32>,
}

/// Every NLMSG_ERROR (ack or error) in a datagram; other messages are
/// skipped.
fn acks(buf: &[u8]) -> Result<Vec<Ack>, &'static str> {
    const NLMSG_ERROR: u16 = 2;
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let b = &buf[off..];
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err("bad netlink message length");
        }
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        if ty == NLMSG_ERROR {
            if len < NLMSG_HDRLEN + 4 {
                return Err("short NLMSG_ERROR");
            }
            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            let flags = u16::from_ne_bytes([b[6], b[7]]);
            out.push(Ack {
                seq,
                errno: code.checked_neg().unwrap_or(i32::MAX),
                offset: ack_offset(&b[..len], flags),
            });
        }
        off = off.saturating_add((len + 3) & !3);
    }
    Ok(out)
}

const NLMSG_HDRLEN: usize = 16;

/// The NLMSGERR_ATTR_OFFS of an NLMSG_ERROR `msg` with netlink `flags`,
/// if it has one. Its TLVs follow the error code and the request's
/// header, or the whole request unless the ack is capped.
fn ack_offset(msg: &[u8], flags: u16) -> Option<u32> {
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_OFFS: u16 = 2;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let req = msg.get(NLMSG_HDRLEN + 4..)?;
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(req.get(..4)?.try_into().ok()?) as usize
    };
    let tlvs = req.get(echoed.checked_add(3)? & !3..)?;
    NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find(|n| n.kind() == NLMSGERR_ATTR_OFFS)
        .and_then(|n| Some(u32::from_ne_bytes(n.value().get(..4)?.try_into().ok()?)))
}

// ------------------------------------------------------- gtp genl family

pub(crate) const GTP_CMD_NEWPDP: u8 = 0;
pub(crate) const GTP_CMD_GETPDP: u8 = 2;
/// Many PDP contexts in one request (kernel-patches/0020).
const GTP_CMD_NEWPDPS: u8 = 4;

const GTPA_LINK: u16 = 1;
const GTPA_VERSION: u16 = 2;
const GTPA_TID: u16 = 3;
const GTPA_PEER_ADDRESS: u16 = 4;
const GTPA_MS_ADDRESS: u16 = 5;
const GTPA_FLOW: u16 = 6;
const GTPA_I_TEI: u16 = 8;
const GTPA_O_TEI: u16 = 9;
const GTPA_PEER_ADDR6: u16 = 11;
const GTPA_MS_ADDR6: u16 = 12;
const GTPA_FAMILY: u16 = 13;
const GTPA_PDP: u16 = 14;

/// One `gtp` family attribute (include/uapi/linux/gtp.h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GtpAttr {
    Link(u32),
    Version(u32),
    Tid(u64),
    PeerAddress(Ipv4Addr),
    MsAddress(Ipv4Addr),
    Flow(u16),
    ITei(u32),
    OTei(u32),
    PeerAddr6(Ipv6Addr),
    MsAddr6(Ipv6Addr),
    Family(u8),
    Other(DefaultNla),
}

impl Nla for GtpAttr {
    fn value_len(&self) -> usize {
        use GtpAttr::*;
        match self {
            Link(_) | Version(_) | PeerAddress(_) | MsAddress(_) | ITei(_) | OTei(_) => 4,
            Tid(_) => 8,
            Flow(_) => 2,
            PeerAddr6(_) | MsAddr6(_) => 16,
            Family(_) => 1,
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use GtpAttr::*;
        match self {
            Link(_) => GTPA_LINK,
            Version(_) => GTPA_VERSION,
            Tid(_) => GTPA_TID,
            PeerAddress(_) => GTPA_PEER_ADDRESS,
            MsAddress(_) => GTPA_MS_ADDRESS,
            Flow(_) => GTPA_FLOW,
            ITei(_) => GTPA_I_TEI,
            OTei(_) => GTPA_O_TEI,
            PeerAddr6(_) => GTPA_PEER_ADDR6,
            MsAddr6(_) => GTPA_MS_ADDR6,
            Family(_) => GTPA_FAMILY,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        use GtpAttr::*;
        // The emit_* helpers only fail on a short buffer, which value_len()
        // rules out.
        let _ = match self {
            Link(v) | Version(v) | ITei(v) | OTei(v) => emit_u32(b, *v),
            Tid(v) => emit_u64(b, *v),
            Flow(v) => emit_u16(b, *v),
            PeerAddress(a) | MsAddress(a) => {
                b[..4].copy_from_slice(&a.octets());
                Ok(())
            }
            PeerAddr6(a) | MsAddr6(a) => {
                b[..16].copy_from_slice(&a.octets());
                Ok(())
            }
            Family(v) => {
                b[0] = *v;
                Ok(())
            }
            Other(n) => {
                n.emit_value(b);
                Ok(())
            }
        };
    }
}

fn arr<const N: usize>(p: &[u8]) -> Result<[u8; N], DecodeError> {
    p.try_into()
        .map_err(|_| DecodeError::from(format!("attribute of {} bytes, {N} expected", p.len())))
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for GtpAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            GTPA_LINK => GtpAttr::Link(parse_u32(p)?),
            GTPA_VERSION => GtpAttr::Version(parse_u32(p)?),
            GTPA_TID => GtpAttr::Tid(parse_u64(p)?),
            GTPA_PEER_ADDRESS => GtpAttr::PeerAddress(Ipv4Addr::from(arr::<4>(p)?)),
            GTPA_MS_ADDRESS => GtpAttr::MsAddress(Ipv4Addr::from(arr::<4>(p)?)),
            GTPA_FLOW => GtpAttr::Flow(parse_u16(p)?),
            GTPA_I_TEI => GtpAttr::ITei(parse_u32(p)?),
            GTPA_O_TEI => GtpAttr::OTei(parse_u32(p)?),
            GTPA_PEER_ADDR6 => GtpAttr::PeerAddr6(Ipv6Addr::from(arr::<16>(p)?)),
            GTPA_MS_ADDR6 => GtpAttr::MsAddr6(Ipv6Addr::from(arr::<16>(p)?)),
            GTPA_FAMILY => GtpAttr::Family(parse_u8(p)?),
            _ => GtpAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A message of the `gtp` generic-netlink family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GtpMsg {
    pub cmd: u8,
    pub attrs: Vec<GtpAttr>,
}

impl GenlFamily for GtpMsg {
    fn family_name() -> &'static str {
        "gtp"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        0
    }
}

impl Emitable for GtpMsg {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for GtpMsg {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| GtpAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GtpMsg {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// The NEWPDP attributes of `p` on device `ifindex` (the reference for
/// [`put_newpdp`], and to test the GETPDP decoding).
#[cfg(test)]
pub(crate) fn pdp_attrs(ifindex: u32, p: &Pdp) -> Vec<GtpAttr> {
    let mut a = Vec::with_capacity(7);
    a.push(GtpAttr::Link(ifindex));
    match p.tunnel {
        Tunnel::V0 { tid, flow } => {
            a.push(GtpAttr::Version(0));
            a.push(GtpAttr::Tid(tid));
            a.push(GtpAttr::Flow(flow));
        }
        Tunnel::V1 { i_tei, o_tei } => {
            a.push(GtpAttr::Version(1));
            a.push(GtpAttr::ITei(i_tei));
            a.push(GtpAttr::OTei(o_tei));
        }
    }
    match p.peer {
        IpAddr::V4(x) => a.push(GtpAttr::PeerAddress(x)),
        IpAddr::V6(x) => a.push(GtpAttr::PeerAddr6(x)),
    }
    match p.ms {
        IpAddr::V4(x) => {
            a.push(GtpAttr::Family(libc::AF_INET as u8));
            a.push(GtpAttr::MsAddress(x));
        }
        IpAddr::V6(x) => {
            a.push(GtpAttr::Family(libc::AF_INET6 as u8));
            a.push(GtpAttr::MsAddr6(x));
        }
    }
    a
}

/// Decodes a GETPDP reply into (ifindex, context).
pub(crate) fn pdp_from_attrs(attrs: &[GtpAttr]) -> Result<(u32, Pdp), Error> {
    let (mut link, mut version, mut tid, mut flow, mut itei, mut otei) =
        (None, None, None, None, None, None);
    let (mut peer, mut ms) = (None, None);
    for a in attrs {
        match a {
            GtpAttr::Link(v) => link = Some(*v),
            GtpAttr::Version(v) => version = Some(*v),
            GtpAttr::Tid(v) => tid = Some(*v),
            GtpAttr::Flow(v) => flow = Some(*v),
            GtpAttr::ITei(v) => itei = Some(*v),
            GtpAttr::OTei(v) => otei = Some(*v),
            GtpAttr::PeerAddress(x) => peer = Some(IpAddr::V4(*x)),
            GtpAttr::PeerAddr6(x) => peer = Some(IpAddr::V6(*x)),
            GtpAttr::MsAddress(x) => ms = Some(IpAddr::V4(*x)),
            GtpAttr::MsAddr6(x) => ms = Some(IpAddr::V6(*x)),
            _ => {}
        }
    }
    let missing = |what: &str| Error::Protocol(format!("GETPDP reply without {what}"));
    let tunnel = match version {
        Some(0) => Tunnel::V0 {
            tid: tid.ok_or_else(|| missing("GTPA_TID"))?,
            flow: flow.ok_or_else(|| missing("GTPA_FLOW"))?,
        },
        Some(1) => Tunnel::V1 {
            i_tei: itei.ok_or_else(|| missing("GTPA_I_TEI"))?,
            o_tei: otei.ok_or_else(|| missing("GTPA_O_TEI"))?,
        },
        Some(v) => {
            return Err(Error::Protocol(format!(
                "GETPDP reply with GTP version {v}"
            )))
        }
        None => return Err(missing("GTPA_VERSION")),
    };
    Ok((
        link.ok_or_else(|| missing("GTPA_LINK"))?,
        Pdp {
            tunnel,
            peer: peer.ok_or_else(|| missing("the peer address"))?,
            ms: ms.ok_or_else(|| missing("the MS address"))?,
        },
    ))
}

/// Appends one netlink attribute (header, value, padding to 4 bytes).
fn put_nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    // Values here are at most 16 bytes.
    let len = (4 + value.len()) as u16;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&[0; 3][..(4 - value.len() % 4) % 4]);
}

/// Appends the netlink and genl headers of a `cmd` request; the length is
/// filled in by [`end_request`].
fn start_request(out: &mut Vec<u8>, family: u16, flags: u16, seq: u32, cmd: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes()); // length
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    out.extend_from_slice(&[cmd, 0, 0, 0]); // genl header
    start
}

fn end_request(out: &mut [u8], start: usize) {
    // Requests are at most a few MiB (MAX_BATCH contexts).
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends the attributes of `p` that GTP_CMD_NEWPDP takes besides the
/// device.
fn put_pdp_attrs(out: &mut Vec<u8>, p: &Pdp) {
    match p.tunnel {
        Tunnel::V0 { tid, flow } => {
            put_nla(out, GTPA_VERSION, &0u32.to_ne_bytes());
            put_nla(out, GTPA_TID, &tid.to_ne_bytes());
            put_nla(out, GTPA_FLOW, &flow.to_ne_bytes());
        }
        Tunnel::V1 { i_tei, o_tei } => {
            put_nla(out, GTPA_VERSION, &1u32.to_ne_bytes());
            put_nla(out, GTPA_I_TEI, &i_tei.to_ne_bytes());
            put_nla(out, GTPA_O_TEI, &o_tei.to_ne_bytes());
        }
    }
    match p.peer {
        IpAddr::V4(x) => put_nla(out, GTPA_PEER_ADDRESS, &x.octets()),
        IpAddr::V6(x) => put_nla(out, GTPA_PEER_ADDR6, &x.octets()),
    }
    match p.ms {
        IpAddr::V4(x) => {
            put_nla(out, GTPA_FAMILY, &[libc::AF_INET as u8]);
            put_nla(out, GTPA_MS_ADDRESS, &x.octets());
        }
        IpAddr::V6(x) => {
            put_nla(out, GTPA_FAMILY, &[libc::AF_INET6 as u8]);
            put_nla(out, GTPA_MS_ADDR6, &x.octets());
        }
    }
}

/// Appends a GTP_CMD_NEWPDP request for `p` on `ifindex`: the bytes
/// [`GtpNl`]'s generic path would write for `pdp_attrs(ifindex, p)` (see
/// the tests), without building a message per context.
pub(crate) fn put_newpdp(
    out: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    ifindex: u32,
    p: &Pdp,
) {
    let start = start_request(out, family, flags, seq, GTP_CMD_NEWPDP);
    put_nla(out, GTPA_LINK, &ifindex.to_ne_bytes());
    put_pdp_attrs(out, p);
    end_request(out, start);
}

/// Appends one GTP_CMD_NEWPDPS request for all of `pdps` on `ifindex`,
/// each in a GTPA_PDP nest. `nests` gets where each nest starts, from the
/// request's netlink header (what an extended ack's offset points at).
fn put_newpdps(
    out: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    ifindex: u32,
    pdps: &[Pdp],
    nests: &mut Vec<usize>,
) {
    let start = start_request(out, family, flags, seq, GTP_CMD_NEWPDPS);
    put_nla(out, GTPA_LINK, &ifindex.to_ne_bytes());
    nests.clear();
    for p in pdps {
        let nest = out.len();
        nests.push(nest - start);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(GTPA_PDP | NLA_F_NESTED).to_ne_bytes());
        put_pdp_attrs(out, p);
        // A nest holds at most PDP_ATTRS_MAX_LEN bytes.
        let len = (out.len() - nest) as u16;
        out[nest..nest + 2].copy_from_slice(&len.to_ne_bytes());
    }
    end_request(out, start);
}

const NLA_F_NESTED: u16 = 1 << 15;

/// A generic-netlink socket with the `gtp` family resolved.
pub(crate) struct GtpNl {
    pub nl: Nl,
    pub family: u16,
    /// The kernel has GTP_CMD_NEWPDPS (it lists it among the family's
    /// operations).
    pub bulk: bool,
}

impl GtpNl {
    pub fn open() -> Result<GtpNl, Error> {
        let mut nl = Nl::generic()?;
        let req = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("gtp".into())],
        });
        let replies = match nl.request(req, 0, "resolving the gtp genetlink family") {
            Ok(r) => r,
            Err(Error::Netlink { errno, .. }) if errno == libc::ENOENT => {
                return Err(Error::NoGtpSupport)
            }
            Err(e) => return Err(e),
        };
        let mut family = None;
        let mut bulk = false;
        for r in replies {
            for a in r.payload.nlas {
                match a {
                    GenlCtrlAttrs::FamilyId(id) => family = Some(id),
                    GenlCtrlAttrs::Ops(ops) => {
                        bulk |= ops.iter().flatten().any(
                            |o| matches!(o, OpAttrs::Id(id) if *id == u32::from(GTP_CMD_NEWPDPS)),
                        )
                    }
                    _ => {}
                }
            }
        }
        match family {
            Some(family) => Ok(GtpNl { nl, family, bulk }),
            None => Err(Error::NoGtpSupport),
        }
    }

    fn msg(&self, cmd: u8, attrs: Vec<GtpAttr>) -> GenlMessage<GtpMsg> {
        let mut m = GenlMessage::from_payload(GtpMsg { cmd, attrs });
        m.set_resolved_family_id(self.family);
        m
    }

    /// Every PDP context of device `ifindex` (GTP_CMD_GETPDP dump; the
    /// kernel dumps every gtp device of the netns, we keep ours).
    pub fn dump_pdps(&mut self, ifindex: u32) -> Result<Vec<Pdp>, Error> {
        let req = self.msg(GTP_CMD_GETPDP, vec![]);
        let replies = self.nl.request(req, NLM_F_DUMP, "dumping PDP contexts")?;
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            let (link, pdp) = pdp_from_attrs(&r.payload.attrs)?;
            if link == ifindex {
                out.push(pdp);
            }
        }
        Ok(out)
    }

    /// Installs `pdps` on `ifindex` as `how` says. An existing context is
    /// never updated in place (NLM_F_EXCL; GTP_CMD_NEWPDPS always adds).
    /// The first context refused is named in the error; the ones before it
    /// stay (the caller removes the device on error).
    pub fn add_pdps(&mut self, ifindex: u32, pdps: &[Pdp], how: Install) -> Result<(), Error> {
        match how {
            Install::Bulk(n) if self.bulk => self.add_pdps_bulk(ifindex, pdps, n),
            Install::Bulk(n) | Install::Batched(n) => self.add_pdps_batched(ifindex, pdps, n),
            Install::OneByOne => self.add_pdps_batched(ifindex, pdps, 1),
        }
    }

    /// `batch` GTP_CMD_NEWPDP requests per send(). Only the last request
    /// of a batch asks for an ack: the kernel reports every failed request
    /// anyway, with its sequence number, so the first context refused is
    /// still named exactly. Requests after a refused one in the same batch
    /// are still carried out by the kernel.
    fn add_pdps_batched(&mut self, ifindex: u32, pdps: &[Pdp], batch: usize) -> Result<(), Error> {
        let batch = batch.clamp(1, MAX_BATCH);
        let mut buf = Vec::with_capacity(batch * NEWPDP_MAX_LEN);
        for chunk in pdps.chunks(batch) {
            buf.clear();
            let first = self.nl.reserve_seqs(chunk.len());
            for (i, p) in chunk.iter().enumerate() {
                let seq = first.wrapping_add(i as u32);
                let ack = if i + 1 == chunk.len() { NLM_F_ACK } else { 0 };
                put_newpdp(&mut buf, self.family, ack | NEWPDP_FLAGS, seq, ifindex, p);
            }
            if let Some((idx, errno)) =
                self.nl
                    .send_batch(&buf, first, chunk.len(), "adding PDP contexts")?
            {
                return Err(pdp_error(chunk.get(idx), errno));
            }
        }
        Ok(())
    }

    /// One GTP_CMD_NEWPDPS request of up to `batch` contexts per send().
    /// The kernel stops a request at the first context it refuses and
    /// points at its nest in the extended ack.
    ///
    /// The kernel adds a request's contexts within our send(), so with
    /// more than one request the next is encoded on a second thread
    /// meanwhile, on another CPU where there is one.
    fn add_pdps_bulk<'p>(
        &mut self,
        ifindex: u32,
        pdps: &'p [Pdp],
        batch: usize,
    ) -> Result<(), Error> {
        let batch = batch.clamp(1, MAX_BATCH);
        let requests = pdps.len().div_ceil(batch);
        let first = self.nl.reserve_seqs(requests);
        let family = self.family;
        let encode = move |i: usize, chunk: &'p [Pdp], mut req: Request<'p>| {
            req.buf.clear();
            // No NLM_F_EXCL: genetlink refuses it on new commands, and
            // GTP_CMD_NEWPDPS never updates a context in place anyway.
            let seq = first.wrapping_add(i as u32);
            put_newpdps(
                &mut req.buf,
                family,
                NLM_F_ACK,
                seq,
                ifindex,
                chunk,
                &mut req.nests,
            );
            req.seq = seq;
            req.chunk = chunk;
            req
        };
        if requests <= 1 {
            let mut req = Request::with_capacity(batch);
            for (i, chunk) in pdps.chunks(batch).enumerate() {
                req = encode(i, chunk, req);
                self.send_newpdps(&req)?;
            }
            return Ok(());
        }
        // Two requests in flight at most: one being sent, one encoded.
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Request>(1);
        let (spare_tx, spare_rx) = mpsc::channel::<Request>();
        std::thread::scope(|s| {
            s.spawn(move || {
                for (i, chunk) in pdps.chunks(batch).enumerate() {
                    let req = spare_rx
                        .try_recv()
                        .unwrap_or_else(|_| Request::with_capacity(batch));
                    // The sender stopped (an error): stop too.
                    if ready_tx.send(encode(i, chunk, req)).is_err() {
                        return;
                    }
                }
            });
            // Dropping `ready_rx` on an error ends the encoder.
            for req in ready_rx {
                self.send_newpdps(&req)?;
                // The encoder may have finished: then nobody reuses it.
                let _ = spare_tx.send(req);
            }
            Ok(())
        })
    }

    /// Sends one encoded GTP_CMD_NEWPDPS request and reads its ack.
    fn send_newpdps(&mut self, req: &Request) -> Result<(), Error> {
        const OP: &str = "adding PDP contexts";
        self.nl.send(&req.buf, OP)?;
        let ack = self.nl.ack(req.seq, OP)?;
        if ack.errno != 0 {
            // Without an offset (a kernel that does not report one) the
            // context is not known: name none.
            let idx = ack
                .offset
                .and_then(|o| req.nests.binary_search(&(o as usize)).ok());
            return Err(pdp_error(idx.and_then(|i| req.chunk.get(i)), ack.errno));
        }
        Ok(())
    }
}

/// An encoded GTP_CMD_NEWPDPS request for the contexts of `chunk`.
struct Request<'p> {
    buf: Vec<u8>,
    /// Offset of each context's nest in `buf`.
    nests: Vec<usize>,
    seq: u32,
    chunk: &'p [Pdp],
}

impl Request<'_> {
    fn with_capacity(batch: usize) -> Self {
        Request {
            buf: Vec::with_capacity(20 + batch * (4 + PDP_ATTRS_MAX_LEN)),
            nests: Vec::with_capacity(batch),
            seq: 0,
            chunk: &[],
        }
    }
}

/// The error for a context the kernel refused with `errno`.
fn pdp_error(pdp: Option<&Pdp>, errno: i32) -> Error {
    let pdp = pdp.map(|p| p.to_string()).unwrap_or_default();
    match errno {
        libc::EPERM => Error::PermissionDenied("adding PDP contexts"),
        libc::EEXIST => Error::PdpConflict(format!("{pdp} exists")),
        _ => Error::PdpRejected {
            pdp,
            source: std::io::Error::from_raw_os_error(errno),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> [Pdp; 3] {
        [
            Pdp {
                tunnel: Tunnel::V1 { i_tei: 1, o_tei: 2 },
                peer: "192.0.2.3".parse().unwrap(),
                ms: "10.45.0.1".parse().unwrap(),
            },
            Pdp {
                tunnel: Tunnel::V0 { tid: 99, flow: 7 },
                peer: "2001:db8::3".parse().unwrap(),
                ms: "2001:db8:45:1::".parse().unwrap(),
            },
            Pdp {
                tunnel: Tunnel::V0 {
                    tid: 1 << 40,
                    flow: 3,
                },
                peer: "192.0.2.4".parse().unwrap(),
                ms: "10.46.0.9".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn pdp_attrs_round_trip() {
        for p in samples() {
            let m = GtpMsg {
                cmd: GTP_CMD_NEWPDP,
                attrs: pdp_attrs(5, &p),
            };
            let mut b = vec![0u8; m.buffer_len()];
            m.emit(&mut b);
            let back = GtpMsg::parse_with_param(
                &b,
                GenlHeader {
                    cmd: GTP_CMD_NEWPDP,
                    version: 0,
                },
            )
            .unwrap();
            assert_eq!(pdp_from_attrs(&back.attrs).unwrap(), (5, p));
        }
    }

    #[test]
    fn put_newpdp_writes_what_the_generic_path_writes() {
        for p in samples() {
            for flags in [NEWPDP_FLAGS, NEWPDP_FLAGS | NLM_F_ACK] {
                let mut m = GenlMessage::from_payload(GtpMsg {
                    cmd: GTP_CMD_NEWPDP,
                    attrs: pdp_attrs(5, &p),
                });
                m.set_resolved_family_id(0x1d);
                let mut hdr = NetlinkHeader::default();
                hdr.flags = flags | NLM_F_REQUEST;
                hdr.sequence_number = 77;
                let mut nm = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(m));
                nm.finalize();
                let mut want = vec![0u8; nm.buffer_len()];
                nm.serialize(&mut want);
                let mut got = vec![0xaa];
                put_newpdp(&mut got, 0x1d, flags, 77, 5, &p);
                assert_eq!(&got[1..], &want[..], "{p}");
                assert!(got.len() - 1 <= NEWPDP_MAX_LEN);
            }
        }
    }

    #[test]
    fn acks_are_read_and_bad_lengths_refused() {
        let msg = |seq: u32, ty: u16, code: i32| {
            let mut b = Vec::new();
            b.extend_from_slice(&36u32.to_ne_bytes());
            b.extend_from_slice(&ty.to_ne_bytes());
            b.extend_from_slice(&0u16.to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&code.to_ne_bytes());
            b.resize(36, 0);
            b
        };
        let mut d = msg(5, 2, 0);
        d.extend(msg(6, 0x1d, 0));
        d.extend(msg(7, 2, -libc::EEXIST));
        let got: Vec<(u32, i32)> = acks(&d).unwrap().iter().map(|a| (a.seq, a.errno)).collect();
        assert_eq!(got, vec![(5, 0), (7, libc::EEXIST)]);
        let mut bad = msg(5, 2, 0);
        bad[0] = 200;
        assert!(acks(&bad).is_err());
        bad[0] = 4;
        assert!(acks(&bad).is_err());
        assert_eq!(acks(&d[..10]).unwrap(), vec![]);
    }

    /// An error with NLMSGERR_ATTR_MSG and _OFFS, for a request echoed
    /// whole or (capped) as its header only.
    fn ext_ack(seq: u32, errno: i32, offs: u32, capped: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes());
        let flags: u16 = 0x200 | if capped { 0x100 } else { 0 };
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(-errno).to_ne_bytes());
        // The request's header, then (uncapped) its 8 payload bytes.
        let req_len: u32 = if capped { 16 } else { 24 };
        b.extend_from_slice(&req_len.to_ne_bytes());
        b.extend_from_slice(&[0; 12]);
        if !capped {
            b.extend_from_slice(&[0xee; 8]);
        }
        put_nla(&mut b, 1, b"no\0");
        put_nla(&mut b, 2, &offs.to_ne_bytes());
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    #[test]
    fn ext_ack_offsets_are_read() {
        for capped in [true, false] {
            let d = ext_ack(9, libc::EEXIST, 132, capped);
            let a = acks(&d).unwrap();
            assert_eq!(
                a,
                vec![Ack {
                    seq: 9,
                    errno: libc::EEXIST,
                    offset: Some(132)
                }]
            );
        }
        // Truncated TLVs: no offset, no panic.
        let d = ext_ack(9, libc::EEXIST, 132, true);
        for cut in 20..d.len() {
            let mut t = d[..cut].to_vec();
            let len = cut as u32;
            t[..4].copy_from_slice(&len.to_ne_bytes());
            let _ = acks(&t);
        }
    }

    #[test]
    fn newpdps_nests_are_where_the_kernel_will_point() {
        let ps = samples();
        let mut out = vec![0xaa; 3];
        let mut nests = Vec::new();
        put_newpdps(
            &mut out,
            0x1d,
            NEWPDP_FLAGS | NLM_F_ACK,
            5,
            7,
            &ps,
            &mut nests,
        );
        let req = &out[3..];
        assert_eq!(
            u32::from_ne_bytes(req[..4].try_into().unwrap()) as usize,
            req.len()
        );
        assert_eq!(req[16], GTP_CMD_NEWPDPS);
        assert_eq!(nests.len(), ps.len());
        for (p, &at) in ps.iter().zip(&nests) {
            let nla = NlaBuffer::new_checked(&req[at..]).unwrap();
            assert_eq!(nla.kind(), GTPA_PDP);
            assert!(nla.nested_flag());
            let attrs: Vec<GtpAttr> = NlasIterator::new(nla.value())
                .map(|n| GtpAttr::parse(&n.unwrap()).unwrap())
                .collect();
            let mut with_link = vec![GtpAttr::Link(7)];
            with_link.extend(attrs);
            assert_eq!(pdp_from_attrs(&with_link).unwrap(), (7, *p));
            assert!(nla.length() as usize <= 4 + PDP_ATTRS_MAX_LEN);
        }
    }
}
