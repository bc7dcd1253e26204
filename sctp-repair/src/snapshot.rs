//! Snapshots and their serialisation.
//!
//! A [`Snapshot`] holds what [`crate::capture`] read out of a frozen socket
//! and what [`crate::restore`] needs to re-create it. The kernel's repair
//! structures are kept as the kernel wrote them (they carry their own
//! version, `SCTP_REPAIR_V1`, and the kernel validates them again on
//! restore); this module only frames them, with [`epcmig_image`] (header,
//! sections, critical bit, checksum) and the packing below.
//!
//! # Format (version 2)
//!
//! All integers little-endian unless noted.
//!
//! ```text
//! magic      8  "SCTPSNAP"
//! version    2  2 (version 1 is read too)
//! byteorder  1  1 = the kernel blobs are little-endian (x86_64, arm64...)
//! reserved   1  0
//! count      4  number of sections
//! sections      count x { type u16, flags u16, length u32, payload }
//! crc32      4  CRC-32 (IEEE) of everything before it
//! ```
//!
//! Section flags bit 0 ("critical"): a decoder that does not know the type
//! must refuse the snapshot; other unknown sections are skipped, so a newer
//! writer can add optional data without breaking older readers.
//!
//! Section flags bit 1 ("packed", version 2 on): the payload is stored with
//! every run of 1 to 256 zero bytes written as a zero byte and the run's
//! length minus one; other bytes as they are. The kernel's structures are
//! mostly zeros (a 128-byte `sockaddr_storage` per address, reserved
//! fields): an idle association's snapshot shrinks from about 1.1 KB to a
//! few hundred bytes. Version 1 has no packed sections.
//!
//! | type | section | payload |
//! |---|---|---|
//! | 1 | socket | kind u8 (1 established, 2 listen, 3 one-to-many, 4 one-to-many listening, 5 peeled off), family u16 (AF_INET/AF_INET6), backlog u32 |
//! | 2 | local addresses | count u16, then per address: family u16, port u16 (host order), addr 16, scope_id u32 |
//! | 3 | association | `struct sctp_repair_assoc` (kernel byte order) |
//! | 4 | paths | `struct sctp_repair_paths` + records |
//! | 5 | streams | `struct sctp_repair_streams` + records |
//! | 6 | TSN map | `struct sctp_repair_tsn_map` + gap blocks |
//! | 7 | socket options | count u16, then per option: level i32, name i32, length u16, value |
//! | 8 | queued data | count u32, then per record: queue u8 (1 unsent, 2 in flight, 3 received), length u32, `struct sctp_repair_chunk` + payload |
//! | 9 | SCTP-AUTH | `struct sctp_repair_auth` + parameters and keys (kernel byte order) |
//! | 10 | associations | count u32, then per association of a one-to-many socket (or waiting on a listener for accept()): id i32 (its `sctp_assoc_t`), length u32, a whole snapshot of kind 1 |
//!
//! Sections 1, 2 are critical and required; 3–6 are critical and required
//! for an established socket; 7 is optional; 8 is critical when present
//! (a reader that dropped it would lose data); 9 is critical, and present
//! exactly when the association uses SCTP-AUTH (it holds the shared keys:
//! a snapshot of such an association is as secret as they are). 10 is
//! critical, and present for a one-to-many socket with associations or a
//! listener with associations waiting for accept(), in that order; each
//! of its snapshots carries the association's own sections 1 to 9 (its
//! local addresses, and the options read with it: those that apply to one
//! association are replayed on it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use epcmig_image::{Reader, Section, CRITICAL};

/// The first 8 bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"SCTPSNAP";
/// The format version this crate writes; it reads this one and earlier.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this crate reads.
pub const OLDEST_VERSION: u16 = 1;
const PACKED: u16 = 2;
/// A snapshot larger than this is refused before parsing.
const MAX_SNAPSHOT: usize = 64 << 20;
const FORMAT: epcmig_image::Format = epcmig_image::Format {
    magic: MAGIC,
    versions: OLDEST_VERSION..=FORMAT_VERSION,
    max_len: MAX_SNAPSHOT,
};

mod section {
    pub const SOCKET: u16 = 1;
    pub const LOCAL_ADDRS: u16 = 2;
    pub const ASSOC: u16 = 3;
    pub const PATHS: u16 = 4;
    pub const STREAMS: u16 = 5;
    pub const TSN_MAP: u16 = 6;
    pub const SOCKOPTS: u16 = 7;
    pub const QUEUES: u16 = 8;
    pub const AUTH: u16 = 9;
    pub const MEMBERS: u16 = 10;
}

/// Why a byte string is not a snapshot we can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an SCTP snapshot (bad magic)")]
    BadMagic,
    #[error(
        "snapshot format version {0} is not supported (this build reads versions {OLDEST_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u16),
    #[error("snapshot written on a host of the other byte order")]
    ByteOrder,
    #[error("snapshot truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("snapshot checksum mismatch (corrupt)")]
    Checksum,
    #[error("snapshot has a critical section of unknown type {0}")]
    UnknownCriticalSection(u16),
    #[error("snapshot has no {0} section")]
    MissingSection(&'static str),
    #[error("snapshot section {0} appears twice")]
    DuplicateSection(u16),
    #[error("snapshot section {section}: {reason}")]
    BadSection {
        section: &'static str,
        reason: String,
    },
    #[error("snapshot is {0} bytes, over the {MAX_SNAPSHOT}-byte limit")]
    TooLarge(usize),
}

impl From<epcmig_image::Error> for FormatError {
    fn from(e: epcmig_image::Error) -> FormatError {
        use epcmig_image::Error as E;
        match e {
            E::TooLarge { len, .. } | E::SectionTooLarge { len, .. } => FormatError::TooLarge(len),
            // Too short for the magic is not a snapshot either.
            E::ShortMagic { .. } | E::BadMagic => FormatError::BadMagic,
            E::UnsupportedVersion(v) => FormatError::UnsupportedVersion(v),
            E::Truncated { what, need, have } => FormatError::Truncated { what, need, have },
            E::Checksum => FormatError::Checksum,
            E::UnknownCriticalSection(ty) => FormatError::UnknownCriticalSection(ty),
            E::DuplicateSection(ty) => FormatError::DuplicateSection(ty),
            E::Trailing(n) => FormatError::BadSection {
                section: "trailer",
                reason: format!("{n} stray bytes"),
            },
        }
    }
}

/// What kind of socket a snapshot re-creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A one-to-one socket with an ESTABLISHED association.
    Established,
    /// A listening one-to-one socket.
    Listen,
    /// A one-to-many (SOCK_SEQPACKET) socket, listening or not, with its
    /// associations in [`Snapshot::members`].
    OneToMany { listening: bool },
    /// An association peeled off a one-to-many socket (sctp_peeloff()),
    /// the one member of the snapshot: restored on a one-to-many socket
    /// under its id and peeled off again.
    PeeledOff,
}

/// An association of a one-to-many socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its `sctp_assoc_t`, which the application knows it by: restored
    /// under the same id.
    pub id: i32,
    /// Its state, as a snapshot of [`Kind::Established`].
    pub snap: Snapshot,
}

/// One socket option replayed on restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

/// Everything needed to re-create an SCTP socket and its association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub kind: Kind,
    /// AF_INET or AF_INET6: the family of the socket itself.
    pub family: u16,
    /// listen() backlog for [`Kind::Listen`].
    pub backlog: u32,
    /// Local addresses to bind (the first with bind(), the rest bindx()).
    pub local_addrs: Vec<SocketAddr>,
    /// Kernel repair blobs (empty for a listener).
    pub assoc: Vec<u8>,
    pub paths: Vec<u8>,
    pub streams: Vec<u8>,
    pub tsn_map: Vec<u8>,
    /// Socket options that shape behaviour, replayed after the state. One
    /// at a fresh socket's default may be absent (nothing to replay).
    pub sockopts: Vec<SockOpt>,
    /// Queued data: unsent, in flight, received but not read.
    pub queues: Vec<crate::QueueRecord>,
    /// SCTP-AUTH parameters and shared keys (`struct sctp_repair_auth`),
    /// empty unless the association uses SCTP-AUTH.
    pub auth: Vec<u8>,
    /// The associations of a [`Kind::OneToMany`] socket, or those waiting
    /// on a [`Kind::Listen`] socket for accept() (else empty).
    pub members: Vec<Member>,
}

/// Zero runs as (0, length - 1), see the format.
fn pack(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut i = 0;
    while i < data.len() {
        if data[i] != 0 {
            out.push(data[i]);
            i += 1;
            continue;
        }
        let run = data[i..].iter().take(256).take_while(|&&b| b == 0).count();
        out.push(0);
        // run is 1..=256 here.
        out.push((run - 1) as u8);
        i += run;
    }
    out
}

/// The inverse of [`pack`], refusing to grow past `limit` bytes.
fn unpack(data: &[u8], limit: usize, section: &'static str) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(data.len().min(limit));
    let mut it = data.iter();
    while let Some(&b) = it.next() {
        if b != 0 {
            out.push(b);
        } else {
            let Some(&n) = it.next() else {
                return Err(FormatError::BadSection {
                    section,
                    reason: "packed payload ends inside a zero run".into(),
                });
            };
            out.resize(out.len() + usize::from(n) + 1, 0);
        }
        if out.len() > limit {
            return Err(FormatError::TooLarge(out.len()));
        }
    }
    Ok(out)
}

/// Writes a section, packed if that is shorter.
fn put_section(out: &mut Vec<u8>, ty: u16, flags: u16, payload: &[u8]) {
    let packed = pack(payload);
    if packed.len() < payload.len() {
        put_raw_section(out, ty, flags | PACKED, &packed);
    } else {
        put_raw_section(out, ty, flags, payload);
    }
}

fn put_raw_section(out: &mut Vec<u8>, ty: u16, flags: u16, payload: &[u8]) {
    // Only a payload of 4 GiB or more does not fit, and is left out: no
    // socket's state comes near (decode takes MAX_SNAPSHOT), and the
    // section count, which still counts it, makes that snapshot undecodable.
    let _ = epcmig_image::put_section(out, ty, flags, payload);
}

fn encode_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    let (fam, ip, scope): (u16, [u8; 16], u32) = match a {
        SocketAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.ip().octets());
            (libc::AF_INET as u16, b, 0)
        }
        SocketAddr::V6(v6) => (libc::AF_INET6 as u16, v6.ip().octets(), v6.scope_id()),
    };
    out.extend_from_slice(&fam.to_le_bytes());
    out.extend_from_slice(&a.port().to_le_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&scope.to_le_bytes());
}

fn decode_addr(r: &mut Reader<'_>) -> Result<SocketAddr, FormatError> {
    let fam = r.u16("address family")?;
    let port = r.u16("address port")?;
    let ip = r.take(16, "address")?;
    let scope = r.u32("address scope")?;
    let mut b = [0u8; 16];
    b.copy_from_slice(ip);
    match i32::from(fam) {
        libc::AF_INET => Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            port,
        )),
        libc::AF_INET6 => Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(b),
            port,
            0,
            scope,
        ))),
        other => Err(FormatError::BadSection {
            section: "local addresses",
            reason: format!("unknown family {other}"),
        }),
    }
}

impl Snapshot {
    /// Serialises the snapshot (format above).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut count = 0u32;
        let mut sock = vec![match self.kind {
            Kind::Established => 1u8,
            Kind::Listen => 2u8,
            Kind::OneToMany { listening: false } => 3u8,
            Kind::OneToMany { listening: true } => 4u8,
            Kind::PeeledOff => 5u8,
        }];
        sock.extend_from_slice(&self.family.to_le_bytes());
        sock.extend_from_slice(&self.backlog.to_le_bytes());
        put_section(&mut body, section::SOCKET, CRITICAL, &sock);
        count += 1;

        let mut addrs = Vec::new();
        addrs.extend_from_slice(&(self.local_addrs.len() as u16).to_le_bytes());
        for a in &self.local_addrs {
            encode_addr(&mut addrs, a);
        }
        put_section(&mut body, section::LOCAL_ADDRS, CRITICAL, &addrs);
        count += 1;

        if self.kind == Kind::Established {
            for (ty, blob) in [
                (section::ASSOC, &self.assoc),
                (section::PATHS, &self.paths),
                (section::STREAMS, &self.streams),
                (section::TSN_MAP, &self.tsn_map),
            ] {
                put_section(&mut body, ty, CRITICAL, blob);
                count += 1;
            }
        }

        if !self.sockopts.is_empty() {
            let mut so = Vec::new();
            so.extend_from_slice(&(self.sockopts.len() as u16).to_le_bytes());
            for o in &self.sockopts {
                so.extend_from_slice(&o.level.to_le_bytes());
                so.extend_from_slice(&o.name.to_le_bytes());
                so.extend_from_slice(&(o.value.len() as u16).to_le_bytes());
                so.extend_from_slice(&o.value);
            }
            put_section(&mut body, section::SOCKOPTS, 0, &so);
            count += 1;
        }

        if self.kind == Kind::Established && !self.auth.is_empty() {
            put_section(&mut body, section::AUTH, CRITICAL, &self.auth);
            count += 1;
        }

        if !self.queues.is_empty() {
            let mut qs = Vec::new();
            qs.extend_from_slice(&(self.queues.len() as u32).to_le_bytes());
            for r in &self.queues {
                qs.push(r.queue);
                qs.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
                qs.extend_from_slice(&r.data);
            }
            put_section(&mut body, section::QUEUES, CRITICAL, &qs);
            count += 1;
        }

        if !self.members.is_empty() {
            let mut ms = Vec::new();
            ms.extend_from_slice(&(self.members.len() as u32).to_le_bytes());
            for m in &self.members {
                let one = m.snap.encode();
                ms.extend_from_slice(&m.id.to_le_bytes());
                ms.extend_from_slice(&(one.len() as u32).to_le_bytes());
                ms.extend_from_slice(&one);
            }
            // Each member is framed and packed already.
            put_raw_section(&mut body, section::MEMBERS, CRITICAL, &ms);
            count += 1;
        }

        let mut out = Vec::with_capacity(body.len() + 24);
        let byte_order = u8::from(cfg!(target_endian = "little"));
        epcmig_image::put_header(&mut out, MAGIC, FORMAT_VERSION, [byte_order, 0], count);
        out.extend_from_slice(&body);
        epcmig_image::put_checksum(&mut out);
        out
    }

    /// Parses a serialised snapshot. Never panics; every defect is a
    /// [`FormatError`].
    pub fn decode(data: &[u8]) -> Result<Snapshot, FormatError> {
        Self::decode_nested(data, true)
    }

    /// [`Snapshot::decode`]; a member of a one-to-many socket (`!outer`)
    /// has no members of its own.
    fn decode_nested(data: &[u8], outer: bool) -> Result<Snapshot, FormatError> {
        let image = epcmig_image::open(data, &FORMAT)?;
        // The header's other byte is reserved: written 0, not read.
        if image.spare[0] != u8::from(cfg!(target_endian = "little")) {
            return Err(FormatError::ByteOrder);
        }
        let mut parts = Parts::default();
        let mut seen = Vec::new();
        // One budget for all sections: a packed file cannot make us hold
        // more than a plain one could.
        let mut budget = MAX_SNAPSHOT;
        for s in image.sections {
            let s = s?;
            // Every type once, known or not, refused before it is unpacked.
            if seen.contains(&s.ty) {
                return Err(FormatError::DuplicateSection(s.ty));
            }
            seen.push(s.ty);
            let unpacked;
            let payload = if image.version >= 2 && s.flags & PACKED != 0 {
                unpacked = unpack(s.payload, budget, "packed")?;
                budget -= unpacked.len();
                &unpacked[..]
            } else {
                s.payload
            };
            parts.add(&s, payload, outer)?;
        }
        parts.into_snapshot()
    }
}

/// The sections of a snapshot as they are read, before the checks that
/// need them all.
#[derive(Default)]
struct Parts {
    socket: Option<(Kind, u16, u32)>,
    local_addrs: Option<Vec<SocketAddr>>,
    assoc: Option<Vec<u8>>,
    paths: Option<Vec<u8>>,
    streams: Option<Vec<u8>>,
    tsn_map: Option<Vec<u8>>,
    auth: Vec<u8>,
    sockopts: Vec<SockOpt>,
    queues: Vec<crate::QueueRecord>,
    members: Vec<Member>,
}

impl Parts {
    /// Reads section `s`, whose payload (unpacked) is `payload`.
    fn add(&mut self, s: &Section<'_>, payload: &[u8], outer: bool) -> Result<(), FormatError> {
        match s.ty {
            section::SOCKET => self.socket = Some(decode_socket(payload)?),
            section::LOCAL_ADDRS => self.local_addrs = Some(decode_local_addrs(payload)?),
            section::ASSOC => self.assoc = Some(payload.to_vec()),
            section::PATHS => self.paths = Some(payload.to_vec()),
            section::STREAMS => self.streams = Some(payload.to_vec()),
            section::TSN_MAP => self.tsn_map = Some(payload.to_vec()),
            section::AUTH => self.auth = payload.to_vec(),
            section::SOCKOPTS => self.sockopts = decode_sockopts(payload)?,
            section::QUEUES => self.queues = decode_queues(payload)?,
            section::MEMBERS if outer => self.members = decode_members(payload)?,
            _ => s.skip_unknown()?,
        }
        Ok(())
    }

    /// The snapshot, once its sections agree with its kind.
    fn into_snapshot(self) -> Result<Snapshot, FormatError> {
        let (kind, family, backlog) = self.socket.ok_or(FormatError::MissingSection("socket"))?;
        let local_addrs = self
            .local_addrs
            .ok_or(FormatError::MissingSection("local addresses"))?;
        if local_addrs.is_empty() {
            return Err(FormatError::BadSection {
                section: "local addresses",
                reason: "no address".into(),
            });
        }
        let mut snap = Snapshot {
            kind,
            family,
            backlog,
            local_addrs,
            assoc: Vec::new(),
            paths: Vec::new(),
            streams: Vec::new(),
            tsn_map: Vec::new(),
            sockopts: self.sockopts,
            queues: self.queues,
            auth: Vec::new(),
            members: Vec::new(),
        };
        if !self.members.is_empty() {
            if kind == Kind::Established {
                return Err(FormatError::BadSection {
                    section: "associations",
                    reason: "only a one-to-many socket or a listener has them".into(),
                });
            }
            snap.members = self.members;
        }
        if kind == Kind::PeeledOff && snap.members.len() != 1 {
            return Err(FormatError::BadSection {
                section: "associations",
                reason: format!(
                    "a peeled-off socket has one association, not {}",
                    snap.members.len()
                ),
            });
        }
        if kind == Kind::Established {
            snap.auth = self.auth;
            snap.assoc = self
                .assoc
                .ok_or(FormatError::MissingSection("association"))?;
            snap.paths = self.paths.ok_or(FormatError::MissingSection("paths"))?;
            snap.streams = self.streams.ok_or(FormatError::MissingSection("streams"))?;
            snap.tsn_map = self.tsn_map.ok_or(FormatError::MissingSection("TSN map"))?;
            crate::state::check_blobs(&snap)?;
        }
        Ok(snap)
    }
}

fn decode_socket(payload: &[u8]) -> Result<(Kind, u16, u32), FormatError> {
    let mut p = Reader::new(payload);
    let kind = match p.u8("socket kind")? {
        1 => Kind::Established,
        2 => Kind::Listen,
        3 => Kind::OneToMany { listening: false },
        4 => Kind::OneToMany { listening: true },
        5 => Kind::PeeledOff,
        k => {
            return Err(FormatError::BadSection {
                section: "socket",
                reason: format!("unknown kind {k}"),
            })
        }
    };
    let family = p.u16("socket family")?;
    if i32::from(family) != libc::AF_INET && i32::from(family) != libc::AF_INET6 {
        return Err(FormatError::BadSection {
            section: "socket",
            reason: format!("unknown family {family}"),
        });
    }
    Ok((kind, family, p.u32("backlog")?))
}

fn decode_local_addrs(payload: &[u8]) -> Result<Vec<SocketAddr>, FormatError> {
    let mut p = Reader::new(payload);
    let n = p.u16("address count")?;
    let mut v = Vec::with_capacity(usize::from(n).min(payload.len() / 24));
    for _ in 0..n {
        v.push(decode_addr(&mut p)?);
    }
    Ok(v)
}

fn decode_sockopts(payload: &[u8]) -> Result<Vec<SockOpt>, FormatError> {
    let mut p = Reader::new(payload);
    let n = p.u16("option count")?;
    let mut v = Vec::new();
    for _ in 0..n {
        let level = p.i32("option level")?;
        let name = p.i32("option name")?;
        let l = usize::from(p.u16("option length")?);
        let value = p.take(l, "option value")?.to_vec();
        v.push(SockOpt { level, name, value });
    }
    Ok(v)
}

fn decode_queues(payload: &[u8]) -> Result<Vec<crate::QueueRecord>, FormatError> {
    let mut p = Reader::new(payload);
    let n = p.u32("record count")?;
    let mut v = Vec::new();
    for _ in 0..n {
        let queue = p.u8("record queue")?;
        if !(1..=3).contains(&queue) {
            return Err(FormatError::BadSection {
                section: "queued data",
                reason: format!("unknown queue {queue}"),
            });
        }
        let len = p.u32("record length")? as usize;
        let data = p.take(len, "record")?;
        if len < crate::queues::RECORD_HDR || crate::queues::record_len(data) != Some(len) {
            return Err(FormatError::BadSection {
                section: "queued data",
                reason: format!("record of {len} bytes"),
            });
        }
        v.push(crate::QueueRecord {
            queue,
            data: data.to_vec(),
        });
    }
    Ok(v)
}

fn decode_members(payload: &[u8]) -> Result<Vec<Member>, FormatError> {
    let mut p = Reader::new(payload);
    let n = p.u32("association count")?;
    let mut v: Vec<Member> = Vec::new();
    for _ in 0..n {
        let id = p.i32("association id")?;
        let len = p.u32("association length")? as usize;
        let one = Snapshot::decode_nested(p.take(len, "association")?, false)?;
        if one.kind != Kind::Established || id <= 2 || v.iter().any(|m| m.id == id) {
            return Err(FormatError::BadSection {
                section: "associations",
                reason: format!("association {id} is not a distinct established one"),
            });
        }
        v.push(Member { id, snap: one });
    }
    Ok(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn record(payload: usize) -> Vec<u8> {
        let len = crate::queues::RECORD_HDR + payload;
        let mut r = vec![7u8; len];
        r[..4].copy_from_slice(&1u32.to_ne_bytes());
        r[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
        r
    }

    pub(crate) fn sample() -> Snapshot {
        let mut assoc = vec![0u8; crate::state::ASSOC_SIZE];
        assoc[..4].copy_from_slice(&1u32.to_ne_bytes());
        let mut paths = vec![0u8; crate::state::PATHS_HDR + crate::state::PATH_SIZE];
        paths[..4].copy_from_slice(&1u32.to_ne_bytes());
        paths[4..8].copy_from_slice(&1u32.to_ne_bytes());
        let mut streams = vec![0u8; 8];
        streams[..4].copy_from_slice(&1u32.to_ne_bytes());
        let mut tsn_map = vec![0u8; crate::state::TSN_MAP_SIZE];
        tsn_map[..4].copy_from_slice(&1u32.to_ne_bytes());
        Snapshot {
            kind: Kind::Established,
            family: libc::AF_INET6 as u16,
            backlog: 0,
            local_addrs: vec![
                "192.0.2.10:36412".parse().expect("addr"),
                "[2001:db8::10]:36412".parse().expect("addr"),
            ],
            assoc,
            paths,
            streams,
            tsn_map,
            sockopts: vec![SockOpt {
                level: 132,
                name: 3,
                value: vec![1, 0, 0, 0],
            }],
            queues: vec![
                crate::QueueRecord {
                    queue: 2,
                    data: record(5),
                },
                crate::QueueRecord {
                    queue: 3,
                    data: record(0),
                },
            ],
            auth: Vec::new(),
            members: Vec::new(),
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()), Ok(s));
        let l = Snapshot {
            kind: Kind::Listen,
            backlog: 64,
            assoc: vec![],
            paths: vec![],
            streams: vec![],
            tsn_map: vec![],
            queues: vec![],
            ..sample()
        };
        assert_eq!(Snapshot::decode(&l.encode()), Ok(l));
    }

    /// A listening one-to-many socket with two associations.
    fn one_to_many() -> Snapshot {
        Snapshot {
            kind: Kind::OneToMany { listening: true },
            backlog: 128,
            assoc: vec![],
            paths: vec![],
            streams: vec![],
            tsn_map: vec![],
            queues: vec![],
            members: vec![
                Member {
                    id: 3,
                    snap: sample(),
                },
                Member {
                    id: 0x7fff_fff0,
                    snap: sample(),
                },
            ],
            ..sample()
        }
    }

    #[test]
    fn one_to_many_round_trips_with_its_association_ids() {
        let m = one_to_many();
        assert_eq!(Snapshot::decode(&m.encode()), Ok(m.clone()));
        let idle = Snapshot {
            kind: Kind::OneToMany { listening: false },
            members: vec![],
            ..m
        };
        assert_eq!(Snapshot::decode(&idle.encode()), Ok(idle));
    }

    #[test]
    fn bad_association_lists_are_refused() {
        let reason = |s: &Snapshot| match Snapshot::decode(&s.encode()) {
            Err(FormatError::BadSection { section, .. }) => section,
            other => panic!("decoded {other:?}"),
        };
        // The same id twice, a reserved id, a member that is not an
        // established association, members of a one-to-one socket.
        let mut m = one_to_many();
        m.members[1].id = 3;
        assert_eq!(reason(&m), "associations");
        let mut m = one_to_many();
        m.members[0].id = 2;
        assert_eq!(reason(&m), "associations");
        let mut m = one_to_many();
        m.members[0].snap.kind = Kind::Listen;
        m.members[0].snap.assoc.clear();
        assert_eq!(reason(&m), "associations");
        let mut m = one_to_many();
        m.kind = Kind::Established;
        m.assoc = sample().assoc;
        m.paths = sample().paths;
        m.streams = sample().streams;
        m.tsn_map = sample().tsn_map;
        assert_eq!(reason(&m), "associations");
        // A member with members of its own: section 10 is unknown there.
        let mut m = one_to_many();
        m.members[0].snap.members = vec![Member {
            id: 5,
            snap: sample(),
        }];
        assert_eq!(
            Snapshot::decode(&m.encode()),
            Err(FormatError::UnknownCriticalSection(10))
        );
    }

    #[test]
    fn a_peeled_off_snapshot_has_one_association() {
        let mut p = one_to_many();
        p.kind = Kind::PeeledOff;
        p.backlog = 0;
        p.members.truncate(1);
        assert_eq!(Snapshot::decode(&p.encode()), Ok(p.clone()));
        for n in [0, 2] {
            let mut bad = one_to_many();
            bad.kind = Kind::PeeledOff;
            bad.members.truncate(n);
            assert!(
                matches!(
                    Snapshot::decode(&bad.encode()),
                    Err(FormatError::BadSection {
                        section: "associations",
                        ..
                    })
                ),
                "{n} associations"
            );
        }
    }

    #[test]
    fn every_truncation_of_a_one_to_many_snapshot_is_an_error() {
        let enc = one_to_many().encode();
        for n in 0..enc.len() {
            assert!(
                Snapshot::decode(&enc[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let enc = sample().encode();
        for n in 0..enc.len() {
            assert!(
                Snapshot::decode(&enc[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let enc = sample().encode();
        for i in 0..enc.len() {
            for bit in 0..8 {
                let mut c = enc.clone();
                c[i] ^= 1 << bit;
                assert!(
                    Snapshot::decode(&c).is_err(),
                    "flip of bit {bit} in byte {i} accepted"
                );
            }
        }
    }

    #[test]
    fn wrong_version_and_magic_are_named() {
        let mut enc = sample().encode();
        enc[8] = 9;
        assert_eq!(
            Snapshot::decode(&enc),
            Err(FormatError::UnsupportedVersion(9))
        );
        assert_eq!(
            Snapshot::decode(b"not a snapshot at all"),
            Err(FormatError::BadMagic)
        );
    }

    #[test]
    fn zero_runs_pack_and_unpack() {
        let mut data = vec![1u8, 0, 2, 0, 0, 0];
        data.extend(std::iter::repeat_n(0u8, 700));
        data.push(9);
        let p = pack(&data);
        assert!(p.len() < 20, "{p:?}");
        assert_eq!(unpack(&p, 1 << 20, "t").unwrap(), data);
        assert_eq!(unpack(&[], 10, "t").unwrap(), Vec::<u8>::new());
        assert!(matches!(
            unpack(&[5, 0], 10, "t"),
            Err(FormatError::BadSection { .. })
        ));
        // 0,255 is 256 zeros: over a 100-byte budget.
        assert!(matches!(
            unpack(&[0, 255], 100, "t"),
            Err(FormatError::TooLarge(_))
        ));
    }

    #[test]
    fn packing_shrinks_the_kernel_structures() {
        let enc = sample().encode();
        assert!(enc.len() < 600, "{} bytes", enc.len());
        assert_eq!(Snapshot::decode(&enc).unwrap(), sample());
    }

    #[test]
    fn version_1_snapshots_still_decode() {
        // Version 1: the same sections, none packed.
        let s = sample();
        let packed = s.encode();
        let count = u32::from_le_bytes([packed[12], packed[13], packed[14], packed[15]]);
        let mut body = Vec::new();
        let mut r = Reader {
            buf: &packed[16..packed.len() - 4],
        };
        for _ in 0..count {
            let ty = r.u16("t").unwrap();
            let flags = r.u16("f").unwrap();
            let len = r.u32("l").unwrap() as usize;
            let stored = r.take(len, "p").unwrap();
            let payload = if flags & PACKED != 0 {
                unpack(stored, MAX_SNAPSHOT, "t").unwrap()
            } else {
                stored.to_vec()
            };
            put_raw_section(&mut body, ty, flags & !PACKED, &payload);
        }
        let mut v1 = frame(count, &body);
        v1[8..10].copy_from_slice(&1u16.to_le_bytes());
        let crc = crc32fast::hash(&v1[..v1.len() - 4]);
        let at = v1.len() - 4;
        v1[at..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Snapshot::decode(&v1).unwrap(), s);
    }

    #[test]
    fn a_packed_bomb_is_refused() {
        // One optional section of 0,255 pairs: 128x, over the limit.
        let pairs = MAX_SNAPSHOT / 256 + 1;
        let mut payload = Vec::with_capacity(pairs * 2);
        for _ in 0..pairs {
            payload.extend_from_slice(&[0, 255]);
        }
        let mut body = Vec::new();
        put_raw_section(&mut body, 99, PACKED, &payload);
        assert!(matches!(
            Snapshot::decode(&frame(1, &body)),
            Err(FormatError::TooLarge(_))
        ));
    }

    /// Re-frames `body` sections with a valid header and checksum.
    fn frame(count: u32, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(u8::from(cfg!(target_endian = "little")));
        out.push(0);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn unknown_sections_follow_the_critical_bit() {
        let enc = sample().encode();
        let count = u32::from_le_bytes([enc[12], enc[13], enc[14], enc[15]]);
        let body = &enc[16..enc.len() - 4];
        let mut optional = body.to_vec();
        put_section(&mut optional, 99, 0, b"future");
        assert_eq!(Snapshot::decode(&frame(count + 1, &optional)), Ok(sample()));
        let mut critical = body.to_vec();
        put_section(&mut critical, 99, CRITICAL, b"future");
        assert_eq!(
            Snapshot::decode(&frame(count + 1, &critical)),
            Err(FormatError::UnknownCriticalSection(99))
        );
    }

    #[test]
    fn random_input_never_panics() {
        // A small xorshift: deterministic, no extra dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let enc = sample().encode();
        for round in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut c = enc.clone();
            let n = (x as usize % 8) + 1;
            for k in 0..n {
                let i = ((x >> (k * 8)) as usize) % c.len();
                c[i] = (x >> (k * 3)) as u8;
            }
            if round % 2 == 0 {
                // Valid checksum over garbage: exercises the section parser.
                let l = c.len();
                let crc = crc32fast::hash(&c[..l - 4]);
                c[l - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            let _ = Snapshot::decode(&c);
        }
    }
}
