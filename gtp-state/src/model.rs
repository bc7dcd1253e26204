//! What a capture holds: one gtp device, its sockets, addresses, routes
//! and PDP contexts. Serialised by [`crate::format`]; shown as JSON.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::Serialize;

/// The two roles a gtp device plays (IFLA_GTP_ROLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The network side (SPGW/UPF/GGSN).
    Ggsn,
    /// The access side (eNB/gNB/SGSN).
    Sgsn,
}

impl Role {
    /// Decodes IFLA_GTP_ROLE.
    pub fn from_raw(v: u32) -> Option<Role> {
        match v {
            0 => Some(Role::Ggsn),
            1 => Some(Role::Sgsn),
            _ => None,
        }
    }

    /// IFLA_GTP_ROLE's value.
    pub fn raw(self) -> u32 {
        match self {
            Role::Ggsn => 0,
            Role::Sgsn => 1,
        }
    }
}

/// The link itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub name: String,
    pub ifindex: u32,
    pub role: Role,
    /// IFLA_GTP_PDP_HASHSIZE.
    pub hash_size: u32,
    /// IFLA_GTP_RESTART_COUNT.
    pub restart_count: u8,
    pub mtu: u32,
    /// IFF_UP was set.
    pub up: bool,
}

/// Which UDP sockets the device encapsulates with.
///
/// Linux 6.12 does not report a gtp device's sockets; capture finds them by
/// matching (see [`crate::capture`]), so this is a best effort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Sockets {
    /// Created by the kernel (IFLA_GTP_CREATE_SOCKETS) on ports 3386 and
    /// 2152 of `local` (the wildcard address when `None`).
    Kernel { local: Option<IpAddr> },
    /// Owned by a process, which passed them as IFLA_GTP_FD0 (GTPv0) and
    /// IFLA_GTP_FD1 (GTPv1-U). The local addresses are what capture could
    /// match (`None`: not found); restore needs the restored process's fds.
    Process {
        gtp0: Option<SocketAddr>,
        gtp1u: Option<SocketAddr>,
    },
}

/// How capture identified the device's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    /// Not looked for (a state made by hand, or read from a capture that
    /// does not say).
    #[default]
    Unknown,
    /// The kernel named them: IFLA_GTP_SOCK0_INODE and
    /// IFLA_GTP_SOCK1U_INODE in the link info (kernel-patches/gtp/0002).
    Kernel,
    /// Guessed from the UDP sockets on the GTP ports (a kernel without
    /// that report; see [`crate::sockets`]).
    Ports,
}

/// Which of a device's two sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GtpSocket {
    /// GTPv0 (IFLA_GTP_FD0, port 3386).
    Gtp0,
    /// GTPv1-U (IFLA_GTP_FD1, port 2152).
    Gtp1u,
}

/// A process file descriptor holding a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FdOwner {
    pub pid: u32,
    pub fd: u32,
}

/// One socket of the device as capture found it: its inode number and,
/// for a process-owned socket, the first process fd holding it (what a
/// checkpoint of that process maps to the restored process's fd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SocketId {
    pub which: GtpSocket,
    pub inode: u64,
    pub owner: Option<FdOwner>,
}

/// Where the device's sockets are, as found at capture time. Not part of
/// what is restored (inodes and pids differ on the target).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SocketsFound {
    pub by: FoundBy,
    pub sockets: Vec<SocketId>,
}

/// The tunnel identifiers of a PDP context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum Tunnel {
    /// GTPv0: tunnel id and flow label.
    V0 { tid: u64, flow: u16 },
    /// GTPv1-U: incoming and outgoing TEIDs.
    V1 { i_tei: u32, o_tei: u32 },
}

/// One PDP context (GTP_CMD_NEWPDP / GETPDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Pdp {
    #[serde(flatten)]
    pub tunnel: Tunnel,
    /// The peer GSN (base station / SGSN / GGSN): GTPA_PEER_ADDRESS or
    /// GTPA_PEER_ADDR6; its family is the socket's.
    pub peer: IpAddr,
    /// The mobile station (UE) address: GTPA_MS_ADDRESS or GTPA_MS_ADDR6
    /// (an IPv6 /64 prefix: the kernel keeps only the upper 64 bits
    /// meaningful). Its family is the context's family (GTPA_FAMILY).
    pub ms: IpAddr,
}

impl std::fmt::Display for Pdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tunnel {
            Tunnel::V0 { tid, flow } => write!(f, "v0 tid {tid:#x} flow {flow}")?,
            Tunnel::V1 { i_tei, o_tei } => write!(f, "v1 i_tei {i_tei:#x} o_tei {o_tei:#x}")?,
        }
        write!(f, " peer {} ms {}", self.peer, self.ms)
    }
}

/// An address on the device (RTM_NEWADDR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub local: IpAddr,
    pub prefix_len: u8,
    /// IFA_ADDRESS when it differs from IFA_LOCAL (point-to-point peer).
    pub peer: Option<IpAddr>,
    pub scope: u8,
    /// IFA_FLAGS.
    pub flags: u32,
}

/// A route whose output device is the gtp device (RTM_NEWROUTE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dst: IpAddr,
    pub dst_len: u8,
    pub gateway: Option<IpAddr>,
    pub pref_src: Option<IpAddr>,
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    /// rtm_type (RTN_UNICAST...).
    pub kind: u8,
    pub priority: Option<u32>,
}

/// Everything captured about one gtp device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GtpState {
    pub device: Device,
    pub sockets: Sockets,
    /// How the sockets were found and which they are (capture only).
    pub sockets_found: SocketsFound,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub pdps: Vec<Pdp>,
}

impl GtpState {
    /// The first pair of PDP contexts the kernel would refuse to hold side
    /// by side (same MS address, for IPv6 the same /64 prefix, or same
    /// TEI/TID within a version and family), if any.
    pub fn pdp_conflict(&self) -> Option<(Pdp, Pdp)> {
        pdp_conflict(&self.pdps)
    }
}

/// See [`GtpState::pdp_conflict`].
///
/// Sorts keys instead of hashing them: a restore checks every context
/// first, and this is several times cheaper for 100k contexts.
pub fn pdp_conflict(pdps: &[Pdp]) -> Option<(Pdp, Pdp)> {
    // (key, index); ties sort by index, so the first two of a run of
    // equal keys are the earliest pair claiming that key.
    fn first_dup<K: Ord + Copy>(mut keys: Vec<(K, usize)>) -> Option<(usize, usize)> {
        keys.sort_unstable();
        keys.windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .map(|w| (w[0].1, w[1].1))
            .min_by_key(|&(_, later)| later)
    }
    let ms_key = |p: &Pdp| match p.ms {
        IpAddr::V4(a) => (false, u64::from(u32::from(a))),
        IpAddr::V6(a) => (true, ms6_prefix(a)),
    };
    // The kernel looks TEIs and TIDs up per version and family.
    let tid_key = |p: &Pdp| {
        let fam = u128::from(p.ms.is_ipv6()) << 80;
        match p.tunnel {
            Tunnel::V0 { tid, .. } => fam | u128::from(tid),
            Tunnel::V1 { i_tei, .. } => fam | 1 << 72 | u128::from(i_tei),
        }
    };
    if !any_conflict(pdps) {
        return None;
    }
    let by_ms = first_dup(
        pdps.iter()
            .enumerate()
            .map(|(i, p)| (ms_key(p), i))
            .collect(),
    );
    let by_tid = first_dup(
        pdps.iter()
            .enumerate()
            .map(|(i, p)| (tid_key(p), i))
            .collect(),
    );
    // The pair completed earliest; on a tie the MS address is reported.
    let (a, b) = match (by_ms, by_tid) {
        (Some(m), Some(t)) if t.1 < m.1 => t,
        (Some(m), _) => m,
        (None, t) => t?,
    };
    Some((pdps[a], pdps[b]))
}

/// The part of an IPv6 MS address the kernel compares: its /64 prefix.
fn ms6_prefix(a: Ipv6Addr) -> u64 {
    (u128::from(a) >> 64) as u64
}

/// Whether any two contexts conflict, without saying which: most tables
/// have no conflict, and this is the check every restore runs first. The
/// keys of each class (MS address, and TEI/TID per version and family) are
/// radix-sorted, which for 100k contexts takes a fraction of a comparison
/// sort of 128-bit keys with their indices; [`pdp_conflict`] looks for the
/// pair only when this finds one.
fn any_conflict(pdps: &[Pdp]) -> bool {
    fn dup(mut keys: Vec<u64>) -> bool {
        radix_sort(&mut keys);
        keys.windows(2).any(|w| w[0] == w[1])
    }
    let mut ms4 = Vec::with_capacity(pdps.len());
    let mut ms6 = Vec::new();
    // v1: TEI with the family above it; v0: TID, one list per family.
    let mut tei = Vec::with_capacity(pdps.len());
    let (mut tid4, mut tid6) = (Vec::new(), Vec::new());
    for p in pdps {
        let v6 = match p.ms {
            IpAddr::V4(a) => {
                ms4.push(u64::from(u32::from(a)));
                false
            }
            IpAddr::V6(a) => {
                ms6.push(ms6_prefix(a));
                true
            }
        };
        match p.tunnel {
            Tunnel::V1 { i_tei, .. } => tei.push(u64::from(v6) << 32 | u64::from(i_tei)),
            Tunnel::V0 { tid, .. } if v6 => tid6.push(tid),
            Tunnel::V0 { tid, .. } => tid4.push(tid),
        }
    }
    dup(ms4) || dup(ms6) || dup(tei) || dup(tid4) || dup(tid6)
}

/// Sorts `keys` (least significant digit first, 11-bit digits), skipping
/// the digits all keys share: addresses of one pool and TEIs from one
/// counter differ in their low bits only.
fn radix_sort(keys: &mut Vec<u64>) {
    const BITS: usize = 11;
    const DIGITS: usize = 64_usize.div_ceil(BITS);
    const MASK: u64 = (1 << BITS) - 1;
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    let digit = |k: u64, d: usize| ((k >> (d * BITS)) & MASK) as usize;
    let mut counts = vec![[0usize; 1 << BITS]; DIGITS];
    for &k in keys.iter() {
        for (d, c) in counts.iter_mut().enumerate() {
            c[digit(k, d)] += 1;
        }
    }
    let mut out = vec![0u64; keys.len()];
    for (d, c) in counts.iter_mut().enumerate() {
        if c.contains(&keys.len()) {
            continue;
        }
        // Each bucket's first slot in `out`.
        let mut at = 0;
        for n in c.iter_mut() {
            (*n, at) = (at, at + *n);
        }
        for &k in keys.iter() {
            let slot = &mut c[digit(k, d)];
            out[*slot] = k;
            *slot += 1;
        }
        std::mem::swap(keys, &mut out);
    }
}

/// Peer families used by the contexts (true = IPv6).
pub(crate) fn peer_families(pdps: &[Pdp]) -> HashSet<bool> {
    pdps.iter().map(|p| p.peer.is_ipv6()).collect()
}
/// A small state for unit tests: gtp0 (ifindex 7, role ggsn) on kernel
/// sockets, with `pdps` and nothing else.
#[cfg(test)]
pub(crate) fn test_state(pdps: Vec<Pdp>) -> GtpState {
    GtpState {
        device: Device {
            name: "gtp0".into(),
            ifindex: 7,
            role: Role::Ggsn,
            hash_size: 1024,
            restart_count: 0,
            mtu: 1500,
            up: true,
        },
        sockets: Sockets::Kernel { local: None },
        sockets_found: SocketsFound::default(),
        addresses: vec![],
        routes: vec![],
        pdps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(i_tei: u32, ms: &str) -> Pdp {
        Pdp {
            tunnel: Tunnel::V1 { i_tei, o_tei: 1 },
            peer: "192.0.2.3".parse().unwrap(),
            ms: ms.parse().unwrap(),
        }
    }

    #[test]
    fn conflicts_are_found_and_the_earliest_reported() {
        let ok = [v1(1, "10.0.0.1"), v1(2, "::a00:1"), v1(1, "2001:db8::")];
        assert_eq!(pdp_conflict(&ok), None);
        // Same TEI within a family, then (later) the same MS address.
        let bad = [
            v1(1, "10.0.0.1"),
            v1(2, "10.0.0.2"),
            v1(1, "10.0.0.3"),
            v1(3, "10.0.0.2"),
        ];
        assert_eq!(pdp_conflict(&bad), Some((bad[0], bad[2])));
        let bad = [v1(1, "10.0.0.1"), v1(2, "10.0.0.1"), v1(2, "10.0.0.3")];
        assert_eq!(pdp_conflict(&bad), Some((bad[0], bad[1])));
        // Same MS address and same TEI at once: the MS address.
        let bad = [v1(1, "10.0.0.1"), v1(1, "10.0.0.1")];
        assert_eq!(pdp_conflict(&bad), Some((bad[0], bad[1])));
        let v0 = Pdp {
            tunnel: Tunnel::V0 { tid: 1, flow: 0 },
            ..v1(0, "10.0.0.9")
        };
        assert_eq!(pdp_conflict(&[v1(1, "10.0.0.1"), v0]), None);
        // IPv6: the kernel compares the /64 prefix only.
        let bad = [v1(1, "2001:db8::"), v1(2, "2001:db8::1")];
        assert_eq!(pdp_conflict(&bad), Some((bad[0], bad[1])));
        // A TEI may repeat across families, a TID across versions.
        let ok = [
            v1(7, "10.0.0.1"),
            v1(7, "2001:db8::"),
            Pdp {
                tunnel: Tunnel::V0 { tid: 7, flow: 0 },
                ..v1(0, "10.0.0.2")
            },
        ];
        assert_eq!(pdp_conflict(&ok), None);
    }

    #[test]
    fn radix_sort_sorts() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for (n, spread) in [
            (0, 64),
            (5, 64),
            (1000, 64),
            (5000, 20),
            (5000, 33),
            (3000, 1),
        ] {
            let mut v: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if spread == 64 {
                        x
                    } else {
                        0x0a2d_0000_0000 | (x % (1 << spread))
                    }
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            radix_sort(&mut v);
            assert_eq!(v, want, "{n} keys over {spread} bits");
        }
    }
}
