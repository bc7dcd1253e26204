//! The capture file: a versioned, sectioned, checksummed binary format,
//! framed by [`epcmig_image`] (header, sections, critical bit, checksum).
//!
//! # Format (version 1)
//!
//! All integers little-endian; IP addresses in network byte order.
//!
//! ```text
//! magic      8  "GTPSTATE"
//! version    2  1
//! reserved   2  0
//! count      4  number of sections
//! sections      count x { type u16, flags u16, length u32, payload }
//! crc32      4  CRC-32 (IEEE) of everything before it
//! ```
//!
//! Section flags bit 0 ("critical"): a decoder that does not know the type
//! must refuse the file; other unknown sections are skipped, so a newer
//! writer can add optional data without breaking older readers. Other flag
//! bits are reserved (written 0, ignored).
//!
//! Encodings used below: `addr` = family u8 (4 or 6) + 4 or 16 bytes;
//! `addr?` = family u8 (0 = absent, 4, 6) + 0, 4 or 16 bytes;
//! `sockaddr?` = `addr?` + port u16 when present.
//!
//! | type | section | payload |
//! |---|---|---|
//! | 1 | device | ifindex u32, mtu u32, hash_size u32, role u8 (0 ggsn, 1 sgsn), restart_count u8, link flags u8 (bit 0 up), name_len u8, name (1..15 bytes) |
//! | 2 | sockets | mode u8: 1 = kernel-created, then local `addr?`; 2 = process-owned, then GTPv0 `sockaddr?`, GTPv1-U `sockaddr?` |
//! | 3 | addresses | count u16, then per address: local `addr`, prefix_len u8, peer `addr?`, scope u8, flags u32 |
//! | 4 | routes | count u16, then per route: dst `addr`, dst_len u8, gateway `addr?`, pref_src `addr?`, table u32, protocol u8, scope u8, type u8, has_priority u8, [priority u32] |
//! | 5 | PDP contexts | count u32, then per context a record (below) |
//!
//! | 6 | sockets found | found_by u8 (0 unknown, 1 named by the kernel, 2 guessed from the ports), count u8 (0..2), then per socket: which u8 (0 GTPv0, 1 GTPv1-U), inode u64, has_owner u8, [pid u32, fd u32] |
//!
//! Sections 1 to 5 are critical; 1, 2 and 5 are required (3 and 4 are
//! empty when absent). Section 6 (what capture found out about the
//! sockets, not needed to restore) is optional and not critical: it is
//! written only when capture found something.
//!
//! A PDP record is 17 to 35 bytes (an IPv4 GTPv1 context, the common case,
//! is 17):
//!
//! ```text
//! tag   u8   bit 0: GTP version (0 = v0, 1 = v1)
//!            bit 1: peer is IPv6      bit 2: MS (UE) address is IPv6
//!            bit 3: MS IPv6 address stored whole (else its upper 64
//!                   bits: the kernel requires the lower 64 to be zero)
//!            bits 4-7: reserved, must be 0
//! v0:   tid u64, flow u16            v1: i_tei u32, o_tei u32
//! peer  4 or 16 bytes
//! ms    4, 8 or 16 bytes
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use epcmig_image::{set_once, Reader, CRITICAL};

use crate::model::{
    Address, Device, FdOwner, FoundBy, GtpSocket, GtpState, Pdp, Role, Route, SocketId, Sockets,
    SocketsFound, Tunnel,
};

/// The first 8 bytes of every capture file.
pub const MAGIC: &[u8; 8] = b"GTPSTATE";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// A file larger than this is refused before parsing (about 10 million
/// IPv4 contexts).
pub const MAX_FILE: usize = 256 << 20;
const FORMAT: epcmig_image::Format = epcmig_image::Format {
    magic: MAGIC,
    versions: FORMAT_VERSION..=FORMAT_VERSION,
    max_len: MAX_FILE,
};
const MIN_PDP_RECORD: usize = 17;

mod section {
    pub const DEVICE: u16 = 1;
    pub const SOCKETS: u16 = 2;
    pub const ADDRESSES: u16 = 3;
    pub const ROUTES: u16 = 4;
    pub const PDPS: u16 = 5;
    pub const SOCKETS_FOUND: u16 = 6;
}

const TAG_V1: u8 = 1;
const TAG_PEER6: u8 = 2;
const TAG_MS6: u8 = 4;
const TAG_MS6_FULL: u8 = 8;
const TAG_RESERVED: u8 = 0xf0;

/// Why a byte string is not a capture we can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a gtp-state capture (bad magic)")]
    BadMagic,
    #[error(
        "capture format version {0} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u16),
    #[error("capture truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("capture checksum mismatch (corrupt file)")]
    Checksum,
    #[error("capture has a critical section of unknown type {0}")]
    UnknownCriticalSection(u16),
    #[error("capture has no {0} section")]
    MissingSection(&'static str),
    #[error("capture section {0} appears twice")]
    DuplicateSection(u16),
    #[error("capture section {section}: {reason}")]
    BadSection {
        section: &'static str,
        reason: String,
    },
    #[error("capture is {0} bytes, over the {MAX_FILE}-byte limit")]
    TooLarge(usize),
    #[error("cannot encode: {0}")]
    Unencodable(String),
}

impl From<epcmig_image::Error> for FormatError {
    fn from(e: epcmig_image::Error) -> FormatError {
        use epcmig_image::Error as E;
        match e {
            E::TooLarge { len, .. } => FormatError::TooLarge(len),
            E::ShortMagic { have } => FormatError::Truncated {
                what: "magic",
                need: MAGIC.len(),
                have,
            },
            E::BadMagic => FormatError::BadMagic,
            E::UnsupportedVersion(v) => FormatError::UnsupportedVersion(v),
            E::Truncated { what, need, have } => FormatError::Truncated { what, need, have },
            E::Checksum => FormatError::Checksum,
            E::UnknownCriticalSection(ty) => FormatError::UnknownCriticalSection(ty),
            E::DuplicateSection(ty) => FormatError::DuplicateSection(ty),
            E::Trailing(n) => bad("file", format!("{n} bytes after the sections")),
            E::SectionTooLarge { ty, .. } => {
                FormatError::Unencodable(format!("section {ty} too large"))
            }
        }
    }
}

fn bad(section: &'static str, reason: impl Into<String>) -> FormatError {
    FormatError::BadSection {
        section,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------- encoding

fn put_addr(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn put_addr_opt(out: &mut Vec<u8>, a: Option<&IpAddr>) {
    match a {
        Some(a) => put_addr(out, a),
        None => out.push(0),
    }
}

fn put_sockaddr_opt(out: &mut Vec<u8>, a: Option<&SocketAddr>) {
    match a {
        Some(a) => {
            put_addr(out, &a.ip());
            out.extend_from_slice(&a.port().to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_section(out: &mut Vec<u8>, ty: u16, payload: &[u8]) -> Result<(), FormatError> {
    Ok(epcmig_image::put_section(out, ty, CRITICAL, payload)?)
}

/// Appends one PDP record (see the module docs).
pub fn put_pdp(out: &mut Vec<u8>, p: &Pdp) {
    let mut tag = 0u8;
    if matches!(p.tunnel, Tunnel::V1 { .. }) {
        tag |= TAG_V1;
    }
    if p.peer.is_ipv6() {
        tag |= TAG_PEER6;
    }
    if let IpAddr::V6(ms) = p.ms {
        tag |= TAG_MS6;
        if ms.octets()[8..].iter().any(|b| *b != 0) {
            tag |= TAG_MS6_FULL;
        }
    }
    out.push(tag);
    match p.tunnel {
        Tunnel::V0 { tid, flow } => {
            out.extend_from_slice(&tid.to_le_bytes());
            out.extend_from_slice(&flow.to_le_bytes());
        }
        Tunnel::V1 { i_tei, o_tei } => {
            out.extend_from_slice(&i_tei.to_le_bytes());
            out.extend_from_slice(&o_tei.to_le_bytes());
        }
    }
    match p.peer {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
    match p.ms {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) if tag & TAG_MS6_FULL != 0 => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..8]),
    }
}

/// Serialises a capture.
pub fn encode(s: &GtpState) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(128 + s.pdps.len() * 20);
    let found = &s.sockets_found;
    let with_found = *found != SocketsFound::default();
    let count = 5 + u32::from(with_found);
    epcmig_image::put_header(&mut out, MAGIC, FORMAT_VERSION, [0, 0], count);

    let d = &s.device;
    let name = d.name.as_bytes();
    if name.is_empty() || name.len() > 15 {
        return Err(FormatError::Unencodable(format!(
            "device name {:?} is not 1..15 bytes",
            d.name
        )));
    }
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&d.ifindex.to_le_bytes());
    p.extend_from_slice(&d.mtu.to_le_bytes());
    p.extend_from_slice(&d.hash_size.to_le_bytes());
    p.push(d.role.raw() as u8);
    p.push(d.restart_count);
    p.push(u8::from(d.up));
    p.push(name.len() as u8);
    p.extend_from_slice(name);
    put_section(&mut out, section::DEVICE, &p)?;

    p.clear();
    match &s.sockets {
        Sockets::Kernel { local } => {
            p.push(1);
            put_addr_opt(&mut p, local.as_ref());
        }
        Sockets::Process { gtp0, gtp1u } => {
            p.push(2);
            put_sockaddr_opt(&mut p, gtp0.as_ref());
            put_sockaddr_opt(&mut p, gtp1u.as_ref());
        }
    }
    put_section(&mut out, section::SOCKETS, &p)?;

    p.clear();
    let n = u16::try_from(s.addresses.len())
        .map_err(|_| FormatError::Unencodable("over 65535 addresses".into()))?;
    p.extend_from_slice(&n.to_le_bytes());
    for a in &s.addresses {
        put_addr(&mut p, &a.local);
        p.push(a.prefix_len);
        put_addr_opt(&mut p, a.peer.as_ref());
        p.push(a.scope);
        p.extend_from_slice(&a.flags.to_le_bytes());
    }
    put_section(&mut out, section::ADDRESSES, &p)?;

    p.clear();
    let n = u16::try_from(s.routes.len())
        .map_err(|_| FormatError::Unencodable("over 65535 routes".into()))?;
    p.extend_from_slice(&n.to_le_bytes());
    for r in &s.routes {
        put_addr(&mut p, &r.dst);
        p.push(r.dst_len);
        put_addr_opt(&mut p, r.gateway.as_ref());
        put_addr_opt(&mut p, r.pref_src.as_ref());
        p.extend_from_slice(&r.table.to_le_bytes());
        p.push(r.protocol);
        p.push(r.scope);
        p.push(r.kind);
        match r.priority {
            Some(prio) => {
                p.push(1);
                p.extend_from_slice(&prio.to_le_bytes());
            }
            None => p.push(0),
        }
    }
    put_section(&mut out, section::ROUTES, &p)?;

    p.clear();
    let n = u32::try_from(s.pdps.len())
        .map_err(|_| FormatError::Unencodable("too many PDP contexts".into()))?;
    p.reserve(s.pdps.len() * 20);
    p.extend_from_slice(&n.to_le_bytes());
    for pdp in &s.pdps {
        put_pdp(&mut p, pdp);
    }
    put_section(&mut out, section::PDPS, &p)?;

    if with_found {
        p.clear();
        p.push(match found.by {
            FoundBy::Unknown => 0,
            FoundBy::Kernel => 1,
            FoundBy::Ports => 2,
        });
        if found.sockets.len() > 2 {
            return Err(FormatError::Unencodable(
                "more than two sockets found".into(),
            ));
        }
        p.push(found.sockets.len() as u8);
        for id in &found.sockets {
            p.push(match id.which {
                GtpSocket::Gtp0 => 0,
                GtpSocket::Gtp1u => 1,
            });
            p.extend_from_slice(&id.inode.to_le_bytes());
            match id.owner {
                Some(o) => {
                    p.push(1);
                    p.extend_from_slice(&o.pid.to_le_bytes());
                    p.extend_from_slice(&o.fd.to_le_bytes());
                }
                None => p.push(0),
            }
        }
        epcmig_image::put_section(&mut out, section::SOCKETS_FOUND, 0, &p)?;
    }

    epcmig_image::put_checksum(&mut out);
    if out.len() > MAX_FILE {
        return Err(FormatError::TooLarge(out.len()));
    }
    Ok(out)
}

// ---------------------------------------------------------------- decoding

/// This format's fields on the framing's reader: addresses, and the end
/// of a section, which must hold nothing more.
trait ReadFields {
    fn addr_opt(
        &mut self,
        section: &'static str,
        what: &'static str,
    ) -> Result<Option<IpAddr>, FormatError>;
    fn addr(&mut self, section: &'static str, what: &'static str) -> Result<IpAddr, FormatError>;
    fn sockaddr_opt(
        &mut self,
        section: &'static str,
        what: &'static str,
    ) -> Result<Option<SocketAddr>, FormatError>;
    fn end(&self, section: &'static str) -> Result<(), FormatError>;
}

impl ReadFields for Reader<'_> {
    fn addr_opt(
        &mut self,
        section: &'static str,
        what: &'static str,
    ) -> Result<Option<IpAddr>, FormatError> {
        match self.u8(what)? {
            0 => Ok(None),
            4 => Ok(Some(IpAddr::V4(Ipv4Addr::from(self.arr::<4>(what)?)))),
            6 => Ok(Some(IpAddr::V6(Ipv6Addr::from(self.arr::<16>(what)?)))),
            f => Err(bad(section, format!("{what}: unknown address family {f}"))),
        }
    }
    fn addr(&mut self, section: &'static str, what: &'static str) -> Result<IpAddr, FormatError> {
        self.addr_opt(section, what)?
            .ok_or_else(|| bad(section, format!("{what} is missing")))
    }
    fn sockaddr_opt(
        &mut self,
        section: &'static str,
        what: &'static str,
    ) -> Result<Option<SocketAddr>, FormatError> {
        match self.addr_opt(section, what)? {
            None => Ok(None),
            Some(ip) => Ok(Some(SocketAddr::new(ip, self.u16(what)?))),
        }
    }
    fn end(&self, section: &'static str) -> Result<(), FormatError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(bad(section, format!("{} trailing bytes", self.buf.len())))
        }
    }
}

fn decode_device(b: &[u8]) -> Result<Device, FormatError> {
    const S: &str = "device";
    let mut r = Reader { buf: b };
    let ifindex = r.u32("ifindex")?;
    let mtu = r.u32("mtu")?;
    let hash_size = r.u32("hash size")?;
    let role_raw = r.u8("role")?;
    let role = Role::from_raw(u32::from(role_raw))
        .ok_or_else(|| bad(S, format!("unknown role {role_raw}")))?;
    let restart_count = r.u8("restart count")?;
    let flags = r.u8("link flags")?;
    if flags & !1 != 0 {
        return Err(bad(S, format!("unknown link flags {flags:#x}")));
    }
    let n = usize::from(r.u8("name length")?);
    if n == 0 || n > 15 {
        return Err(bad(S, format!("name length {n} not in 1..15")));
    }
    let name = std::str::from_utf8(r.take(n, "name")?).map_err(|_| bad(S, "name is not UTF-8"))?;
    if name.contains(['/', '\0']) || name.chars().any(char::is_whitespace) {
        return Err(bad(S, format!("invalid device name {name:?}")));
    }
    if ifindex == 0 || ifindex > i32::MAX as u32 {
        return Err(bad(S, format!("invalid ifindex {ifindex}")));
    }
    r.end(S)?;
    Ok(Device {
        name: name.to_string(),
        ifindex,
        role,
        hash_size,
        restart_count,
        mtu,
        up: flags & 1 != 0,
    })
}

fn decode_sockets(b: &[u8]) -> Result<Sockets, FormatError> {
    const S: &str = "sockets";
    let mut r = Reader { buf: b };
    let s = match r.u8("socket mode")? {
        1 => Sockets::Kernel {
            local: r.addr_opt(S, "local address")?,
        },
        2 => Sockets::Process {
            gtp0: r.sockaddr_opt(S, "GTPv0 socket")?,
            gtp1u: r.sockaddr_opt(S, "GTPv1-U socket")?,
        },
        m => return Err(bad(S, format!("unknown socket mode {m}"))),
    };
    r.end(S)?;
    Ok(s)
}

fn decode_sockets_found(b: &[u8]) -> Result<SocketsFound, FormatError> {
    const S: &str = "sockets found";
    let mut r = Reader { buf: b };
    let by = match r.u8("found by")? {
        0 => FoundBy::Unknown,
        1 => FoundBy::Kernel,
        2 => FoundBy::Ports,
        v => return Err(bad(S, format!("unknown way of finding sockets {v}"))),
    };
    let n = r.u8("socket count")?;
    if n > 2 {
        return Err(bad(S, format!("{n} sockets, at most 2")));
    }
    let mut sockets = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let which = match r.u8("which socket")? {
            0 => GtpSocket::Gtp0,
            1 => GtpSocket::Gtp1u,
            v => return Err(bad(S, format!("unknown socket kind {v}"))),
        };
        if sockets.iter().any(|s: &SocketId| s.which == which) {
            return Err(bad(S, "a socket appears twice"));
        }
        let inode = r.u64("inode")?;
        let owner = match r.u8("has owner")? {
            0 => None,
            1 => Some(FdOwner {
                pid: r.u32("owner pid")?,
                fd: r.u32("owner fd")?,
            }),
            v => return Err(bad(S, format!("bad owner flag {v}"))),
        };
        sockets.push(SocketId {
            which,
            inode,
            owner,
        });
    }
    r.end(S)?;
    Ok(SocketsFound { by, sockets })
}

fn decode_addresses(b: &[u8]) -> Result<Vec<Address>, FormatError> {
    const S: &str = "addresses";
    let mut r = Reader { buf: b };
    let n = r.u16("address count")?;
    let mut v = Vec::with_capacity(usize::from(n).min(b.len() / 11));
    for _ in 0..n {
        let local = r.addr(S, "address")?;
        let prefix_len = r.u8("prefix length")?;
        let max = if local.is_ipv6() { 128 } else { 32 };
        if prefix_len > max {
            return Err(bad(S, format!("prefix length {prefix_len} for {local}")));
        }
        v.push(Address {
            local,
            prefix_len,
            peer: r.addr_opt(S, "peer address")?,
            scope: r.u8("scope")?,
            flags: r.u32("flags")?,
        });
    }
    r.end(S)?;
    Ok(v)
}

fn decode_routes(b: &[u8]) -> Result<Vec<Route>, FormatError> {
    const S: &str = "routes";
    let mut r = Reader { buf: b };
    let n = r.u16("route count")?;
    let mut v = Vec::with_capacity(usize::from(n).min(b.len() / 16));
    for _ in 0..n {
        let dst = r.addr(S, "destination")?;
        let dst_len = r.u8("destination length")?;
        let max = if dst.is_ipv6() { 128 } else { 32 };
        if dst_len > max {
            return Err(bad(S, format!("prefix length {dst_len} for {dst}")));
        }
        let gateway = r.addr_opt(S, "gateway")?;
        let pref_src = r.addr_opt(S, "preferred source")?;
        let table = r.u32("table")?;
        let protocol = r.u8("protocol")?;
        let scope = r.u8("scope")?;
        let kind = r.u8("type")?;
        let priority = match r.u8("priority flag")? {
            0 => None,
            1 => Some(r.u32("priority")?),
            f => return Err(bad(S, format!("priority flag {f}"))),
        };
        v.push(Route {
            dst,
            dst_len,
            gateway,
            pref_src,
            table,
            protocol,
            scope,
            kind,
            priority,
        });
    }
    r.end(S)?;
    Ok(v)
}

fn decode_pdps(b: &[u8]) -> Result<Vec<Pdp>, FormatError> {
    const S: &str = "PDP contexts";
    let mut r = Reader { buf: b };
    let n = r.u32("PDP count")? as usize;
    if n > r.buf.len() / MIN_PDP_RECORD {
        return Err(bad(
            S,
            format!("{n} contexts cannot fit in {} bytes", r.buf.len()),
        ));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.u8("PDP tag")?;
        if tag & TAG_RESERVED != 0 {
            return Err(bad(S, format!("reserved tag bits set ({tag:#x})")));
        }
        if tag & TAG_MS6_FULL != 0 && tag & TAG_MS6 == 0 {
            return Err(bad(S, format!("inconsistent tag {tag:#x}")));
        }
        let tunnel = if tag & TAG_V1 != 0 {
            Tunnel::V1 {
                i_tei: r.u32("I-TEI")?,
                o_tei: r.u32("O-TEI")?,
            }
        } else {
            Tunnel::V0 {
                tid: r.u64("TID")?,
                flow: r.u16("flow")?,
            }
        };
        let peer = if tag & TAG_PEER6 != 0 {
            IpAddr::V6(Ipv6Addr::from(r.arr::<16>("peer address")?))
        } else {
            IpAddr::V4(Ipv4Addr::from(r.arr::<4>("peer address")?))
        };
        let ms = if tag & TAG_MS6_FULL != 0 {
            IpAddr::V6(Ipv6Addr::from(r.arr::<16>("MS address")?))
        } else if tag & TAG_MS6 != 0 {
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(r.take(8, "MS address")?);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::from(r.arr::<4>("MS address")?))
        };
        v.push(Pdp { tunnel, peer, ms });
    }
    r.end(S)?;
    Ok(v)
}

/// Parses a capture, checking magic, version, checksum and every field.
pub fn decode(buf: &[u8]) -> Result<GtpState, FormatError> {
    // The header's other two bytes are reserved: written 0, not read.
    let image = epcmig_image::open(buf, &FORMAT)?;
    let (mut device, mut sockets, mut addrs, mut routes, mut pdps) = (None, None, None, None, None);
    let mut found = None;
    for s in image.sections {
        let s = s?;
        let (ty, payload) = (s.ty, s.payload);
        match ty {
            section::DEVICE => set_once(&mut device, decode_device(payload)?, ty)?,
            section::SOCKETS => set_once(&mut sockets, decode_sockets(payload)?, ty)?,
            section::ADDRESSES => set_once(&mut addrs, decode_addresses(payload)?, ty)?,
            section::ROUTES => set_once(&mut routes, decode_routes(payload)?, ty)?,
            section::PDPS => set_once(&mut pdps, decode_pdps(payload)?, ty)?,
            section::SOCKETS_FOUND => set_once(&mut found, decode_sockets_found(payload)?, ty)?,
            _ => s.skip_unknown()?,
        }
    }
    Ok(GtpState {
        device: device.ok_or(FormatError::MissingSection("device"))?,
        sockets: sockets.ok_or(FormatError::MissingSection("sockets"))?,
        sockets_found: found.unwrap_or_default(),
        addresses: addrs.unwrap_or_default(),
        routes: routes.unwrap_or_default(),
        pdps: pdps.ok_or(FormatError::MissingSection("PDP contexts"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> GtpState {
        let mut pdps = Vec::new();
        for i in 0..n as u32 {
            let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
            let p = match i % 3 {
                0 => Pdp {
                    tunnel: Tunnel::V1 {
                        i_tei: 1000 + i,
                        o_tei: 5000 + i,
                    },
                    peer,
                    ms: IpAddr::V4(Ipv4Addr::from(0x0a2d_0000 + i)),
                },
                1 => Pdp {
                    tunnel: Tunnel::V1 {
                        i_tei: 1000 + i,
                        o_tei: 5000 + i,
                    },
                    peer,
                    ms: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, i as u16, 0, 0, 0, 0)),
                },
                _ => Pdp {
                    tunnel: Tunnel::V0 {
                        tid: 0xdead_0000_0000 + u64::from(i),
                        flow: i as u16,
                    },
                    peer,
                    ms: IpAddr::V4(Ipv4Addr::from(0x0a2e_0000 + i)),
                },
            };
            pdps.push(p);
        }
        // One odd IPv6 MS address stored whole, one IPv6 peer.
        pdps.push(Pdp {
            tunnel: Tunnel::V1 { i_tei: 7, o_tei: 8 },
            peer: "2001:db8::1".parse().unwrap(),
            ms: "2001:db8:1::5".parse().unwrap(),
        });
        GtpState {
            device: Device {
                name: "gtp0".into(),
                ifindex: 42,
                role: Role::Ggsn,
                hash_size: 1024,
                restart_count: 3,
                mtu: 1452,
                up: true,
            },
            sockets: Sockets::Process {
                gtp0: Some("192.0.2.10:3386".parse().unwrap()),
                gtp1u: None,
            },
            sockets_found: SocketsFound {
                by: FoundBy::Kernel,
                sockets: vec![SocketId {
                    which: GtpSocket::Gtp0,
                    inode: 77,
                    owner: Some(FdOwner { pid: 10, fd: 3 }),
                }],
            },
            addresses: vec![Address {
                local: "10.45.0.1".parse().unwrap(),
                prefix_len: 16,
                peer: None,
                scope: 0,
                flags: 0x80,
            }],
            routes: vec![Route {
                dst: "2001:db8:45::".parse().unwrap(),
                dst_len: 48,
                gateway: None,
                pref_src: Some("2001:db8::10".parse().unwrap()),
                table: 254,
                protocol: 3,
                scope: 0,
                kind: 1,
                priority: Some(1024),
            }],
            pdps,
        }
    }

    #[test]
    fn round_trip() {
        for n in [0, 1, 2, 3, 100] {
            let s = sample(n);
            let b = encode(&s).unwrap();
            assert_eq!(decode(&b).unwrap(), s);
        }
        let mut s = sample(1);
        s.sockets = Sockets::Kernel {
            local: Some("192.0.2.10".parse().unwrap()),
        };
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
        s.sockets = Sockets::Kernel { local: None };
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn compact() {
        let s = sample(30_000);
        let base = encode(&sample(0)).unwrap().len();
        let per = (encode(&s).unwrap().len() - base) as f64 / 30_000.0;
        assert!(per <= 64.0, "{per} bytes per context");
        assert!(per < 25.0, "{per} bytes per context");
    }

    #[test]
    fn every_truncation_errors() {
        let b = encode(&sample(7)).unwrap();
        for i in 0..b.len() {
            assert!(decode(&b[..i]).is_err(), "truncated to {i} decoded");
        }
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let b = encode(&sample(5)).unwrap();
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(decode(&c).is_err(), "flip at byte {i} bit {bit} decoded");
            }
        }
    }

    #[test]
    fn bad_magic_and_version() {
        let mut b = encode(&sample(1)).unwrap();
        assert_eq!(
            decode(b"NOTGTPSTATE..........").unwrap_err(),
            FormatError::BadMagic
        );
        b[8] = 2;
        assert_eq!(decode(&b).unwrap_err(), FormatError::UnsupportedVersion(2));
    }

    /// Re-frames `b` with one extra section and a fresh checksum.
    fn with_extra_section(b: &[u8], ty: u16, flags: u16) -> Vec<u8> {
        let mut body = b[..b.len() - 4].to_vec();
        let count = u32::from_le_bytes([body[12], body[13], body[14], body[15]]) + 1;
        body[12..16].copy_from_slice(&count.to_le_bytes());
        body.extend_from_slice(&ty.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn sockets_found_is_optional() {
        // Without it (what an older writer makes): decodes, found unknown.
        let mut s = sample(3);
        s.sockets_found = SocketsFound::default();
        let b = encode(&s).unwrap();
        assert_eq!(decode(&b).unwrap(), s);
        // With it, in full, and the section is not critical.
        let s = sample(3);
        let b = encode(&s).unwrap();
        assert_eq!(decode(&b).unwrap(), s);
        let i = b.len() - 4 - 20 - 8;
        assert_eq!(&b[i..i + 4], &[6, 0, 0, 0]);
        // A bad value in it is still refused.
        let mut bad = b.clone();
        bad[i + 8] = 9;
        let n = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..n]);
        bad[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&bad), Err(FormatError::BadSection { .. })));
    }

    #[test]
    fn unknown_sections() {
        let s = sample(2);
        let b = encode(&s).unwrap();
        assert_eq!(decode(&with_extra_section(&b, 99, 0)).unwrap(), s);
        assert_eq!(
            decode(&with_extra_section(&b, 99, CRITICAL)).unwrap_err(),
            FormatError::UnknownCriticalSection(99)
        );
        // A second device section is refused (here already by its parser).
        assert!(decode(&with_extra_section(&b, section::DEVICE, CRITICAL)).is_err());
    }

    #[test]
    fn random_input_never_panics() {
        // xorshift: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let good = encode(&sample(4)).unwrap();
        for round in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Valid framing with a random body and a correct checksum:
                // reaches the section parsers.
                b = good.clone();
                let n = b.len() - 4;
                for _ in 0..(next() % 8 + 1) {
                    let i = 16 + (next() as usize) % (n - 16);
                    b[i] = next() as u8;
                }
                let crc = crc32fast::hash(&b[..n]);
                b[n..].copy_from_slice(&crc.to_le_bytes());
            } else if round % 4 == 1 && len >= 8 {
                b[..8].copy_from_slice(MAGIC);
            }
            let _ = decode(&b);
        }
    }

    #[test]
    fn recomputed_checksum_still_validates_fields() {
        let mut s = sample(0);
        s.sockets_found = SocketsFound::default();
        let mut b = encode(&s).unwrap();
        // Set a reserved PDP tag bit in the only record (v1, IPv6 peer,
        // whole IPv6 MS: 41 bytes) and fix the CRC.
        let n = b.len() - 4;
        let rec = n - 41;
        b[rec] |= 0x80;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&b), Err(FormatError::BadSection { .. })));
    }
}
