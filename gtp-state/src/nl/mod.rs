//! Netlink for the `gtp` device: the socket plumbing here (a blocking
//! socket that sends requests, one, a dump or a batch, and collects
//! replies and acks), the `gtp` generic-netlink family's messages on top of
//! netlink-packet-generic ([`family`]), a hand encoder for the requests
//! sent by the thousand ([`encode`]), and how PDP contexts are installed
//! ([`install`]).

mod encode;
mod family;
mod install;

use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NlasIterator, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{protocols, Socket, SocketAddr};

use crate::Error;

pub(crate) use install::GtpNl;
pub use install::{Install, DEFAULT_BATCH};

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

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::family::*;
    use super::install::*;
    use super::*;
    use crate::model::{Pdp, Tunnel};
    use netlink_packet_core::{Emitable, NlaBuffer, Parseable, ParseableParametrized};
    use netlink_packet_generic::{GenlHeader, GenlMessage};

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
