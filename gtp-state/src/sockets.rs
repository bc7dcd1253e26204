//! Which UDP sockets a gtp device encapsulates with.
//!
//! A kernel with kernel-patches/gtp/0002 names them: the link info carries
//! their inode numbers (IFLA_GTP_SOCK0_INODE, IFLA_GTP_SOCK1U_INODE).
//! Capture then looks each inode up among the fds of every process
//! (`/proc/*/fd`, `socket:[N]`) and among the UDP sockets of the netns
//! (`/proc/thread-self/net/udp{,6}`, for the local address):
//!
//! - held by a process: process-owned ([`Sockets::Process`]), with the
//!   first pid and fd holding each socket;
//! - both present and held by no process: created by the kernel
//!   (IFLA_GTP_CREATE_SOCKETS) on the address they are bound to
//!   ([`Sockets::Kernel`]);
//! - otherwise process-owned (a device whose process closed its socket
//!   has none left).
//!
//! Linux 6.12 without the patch reports neither the sockets nor whether
//! the kernel created them. Capture then falls back to a guess
//! ([`FoundBy::Ports`]): the UDP sockets of the netns bound to the GTP
//! ports (3386 for GTPv0, 2152 for GTPv1-U), held by a process or not,
//! classified as above; none found: process-owned on other ports,
//! addresses unknown. Limits of the guess: with several gtp devices in
//! one netns the first socket found per port is taken; a process's GTP
//! sockets on other ports are not found; a process holding a UDP socket
//! on a GTP port that no device uses is taken for the device's.
//!
//! Restore does not depend on either: kernel-created sockets are
//! re-created from the recorded local address, process-owned ones come
//! from the caller as fds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::model::{FdOwner, FoundBy, GtpSocket, SocketId, Sockets, SocketsFound};

pub const GTP0_PORT: u16 = 3386;
pub const GTP1U_PORT: u16 = 2152;

/// One socket line of /proc/net/udp{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpSock {
    pub local: SocketAddr,
    pub inode: u64,
}

fn parse_hex_addr(s: &str) -> Option<IpAddr> {
    // The kernel prints each 32-bit word of the address as a host-order
    // integer (%08X of the raw __be32).
    let words: Option<Vec<u32>> = (0..s.len() / 8)
        .map(|i| u32::from_str_radix(s.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect();
    let words = words?;
    match (s.len(), words.as_slice()) {
        (8, [w]) => Some(IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))),
        (32, [a, b, c, d]) => {
            let mut o = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// Parses the text of /proc/net/udp or udp6 (the header line is skipped).
pub fn parse_proc_udp(text: &str) -> Vec<UdpSock> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            let ip = parse_hex_addr(addr)?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some(UdpSock {
                local: SocketAddr::new(ip, port),
                inode,
            })
        })
        .collect()
}

/// Parses a `/proc/PID/fd/N` link target: the inode of `socket:[N]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Socket inodes held open by any process (`/proc/*/fd`), each with the
/// first (lowest pid, then lowest fd) fd holding it.
fn held_inodes() -> HashMap<u64, FdOwner> {
    let mut map = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return map;
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut fds: Vec<(u32, u64)> = fds
            .flatten()
            .filter_map(|fd| {
                let n = fd.file_name().to_str()?.parse().ok()?;
                let t = std::fs::read_link(fd.path()).ok()?;
                Some((n, socket_inode(t.to_str()?)?))
            })
            .collect();
        fds.sort_unstable();
        for (fd, ino) in fds {
            map.entry(ino).or_insert(FdOwner { pid, fd });
        }
    }
    map
}

/// Classifies the sockets the kernel named (`inode0` for GTPv0, `inode1u`
/// for GTPv1-U; see the module docs).
pub fn classify_reported(
    inode0: Option<u64>,
    inode1u: Option<u64>,
    socks: &[UdpSock],
    held: &HashMap<u64, FdOwner>,
) -> (Sockets, SocketsFound) {
    let mut found = SocketsFound {
        by: FoundBy::Kernel,
        sockets: Vec::new(),
    };
    for (which, ino) in [(GtpSocket::Gtp0, inode0), (GtpSocket::Gtp1u, inode1u)] {
        if let Some(inode) = ino {
            found.sockets.push(SocketId {
                which,
                inode,
                owner: held.get(&inode).copied(),
            });
        }
    }
    let local = |ino: Option<u64>| {
        ino.and_then(|i| socks.iter().find(|s| s.inode == i))
            .map(|s| s.local)
    };
    let owned = found.sockets.iter().any(|s| s.owner.is_some());
    let sockets = if found.sockets.len() == 2 && !owned {
        let ip = local(inode1u).or(local(inode0)).map(|a| a.ip());
        Sockets::Kernel {
            local: ip.filter(|l| !l.is_unspecified()),
        }
    } else {
        Sockets::Process {
            gtp0: local(inode0),
            gtp1u: local(inode1u),
        }
    };
    (sockets, found)
}

/// Classifies the sockets on the GTP ports (the guess, see the module
/// docs). `v6`: the device's peers are IPv6 (None: unknown, look at both).
pub fn classify(
    socks: &[UdpSock],
    held: &HashMap<u64, FdOwner>,
    v6: Option<bool>,
) -> (Sockets, SocketsFound) {
    let pick = |port: u16| {
        socks
            .iter()
            .find(|s| s.local.port() == port && v6.map_or(true, |v| s.local.is_ipv6() == v))
    };
    let (s0, s1) = (pick(GTP0_PORT), pick(GTP1U_PORT));
    let found = SocketsFound {
        by: FoundBy::Ports,
        sockets: [(GtpSocket::Gtp0, s0), (GtpSocket::Gtp1u, s1)]
            .into_iter()
            .filter_map(|(which, s)| {
                s.map(|s| SocketId {
                    which,
                    inode: s.inode,
                    owner: held.get(&s.inode).copied(),
                })
            })
            .collect(),
    };
    let present: Vec<&UdpSock> = [s0, s1].into_iter().flatten().collect();
    if !present.is_empty() && found.sockets.iter().all(|s| s.owner.is_none()) {
        let local = present[present.len() - 1].local.ip();
        let sockets = Sockets::Kernel {
            local: (!local.is_unspecified()).then_some(local),
        };
        return (sockets, found);
    }
    let sockets = Sockets::Process {
        gtp0: s0.map(|s| s.local),
        gtp1u: s1.map(|s| s.local),
    };
    (sockets, found)
}

/// Finds the sockets in the calling thread's netns: the ones the kernel
/// named if it did (`reported`: GTPv0 and GTPv1-U inodes), else by the
/// guess. `v6` as for [`classify`].
pub(crate) fn find_here(
    reported: (Option<u64>, Option<u64>),
    v6: Option<bool>,
) -> (Sockets, SocketsFound) {
    let mut socks = Vec::new();
    for f in ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            socks.extend(parse_proc_udp(&t));
        }
    }
    let held = held_inodes();
    match reported {
        (None, None) => classify(&socks, &held, v6),
        (i0, i1) => classify_reported(i0, i1, &socks, &held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0A0200C0:0868 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1234 2 0000000000000000 0
  2: 00000000:0D3A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1235 2 0000000000000000 0
";

    #[test]
    fn parses_and_classifies() {
        let s = parse_proc_udp(UDP);
        assert_eq!(s.len(), 2);
        if cfg!(target_endian = "little") {
            assert_eq!(s[0].local, "192.0.2.10:2152".parse().unwrap());
        }
        assert_eq!(s[1].inode, 1235);
        let none = HashMap::new();
        let (k, f) = classify(&s, &none, Some(false));
        assert!(matches!(k, Sockets::Kernel { .. }));
        assert_eq!(f.by, FoundBy::Ports);
        assert_eq!(f.sockets.len(), 2);
        let held: HashMap<u64, FdOwner> = [(1234, FdOwner { pid: 9, fd: 4 })].into();
        let (p, f) = classify(&s, &held, Some(false));
        assert!(matches!(
            p,
            Sockets::Process {
                gtp0: Some(_),
                gtp1u: Some(_)
            }
        ));
        assert_eq!(f.sockets[1].owner, Some(FdOwner { pid: 9, fd: 4 }));
        assert_eq!(
            classify(&s, &none, Some(true)).0,
            Sockets::Process {
                gtp0: None,
                gtp1u: None
            }
        );
        let v6 = parse_proc_udp(
            "h\n  1: 00000000000000000000000001000000:0868 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0 0\n",
        );
        if cfg!(target_endian = "little") {
            assert_eq!(v6[0].local, "[::1]:2152".parse().unwrap());
        }
    }

    #[test]
    fn reported_inodes_decide() {
        let s = parse_proc_udp(UDP);
        let none = HashMap::new();
        // Both named, neither held: kernel-created, bound to the wildcard.
        let (k, f) = classify_reported(Some(1235), Some(1234), &s, &none);
        assert_eq!(f.by, FoundBy::Kernel);
        if cfg!(target_endian = "little") {
            assert_eq!(
                k,
                Sockets::Kernel {
                    local: Some("192.0.2.10".parse().unwrap())
                }
            );
        }
        // A held one: process-owned, whatever the ports; the owner kept.
        let held: HashMap<u64, FdOwner> = [(77, FdOwner { pid: 3, fd: 8 })].into();
        let (p, f) = classify_reported(None, Some(77), &s, &held);
        assert_eq!(
            p,
            Sockets::Process {
                gtp0: None,
                gtp1u: None
            }
        );
        assert_eq!(
            f.sockets,
            vec![SocketId {
                which: GtpSocket::Gtp1u,
                inode: 77,
                owner: Some(FdOwner { pid: 3, fd: 8 })
            }]
        );
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
    }
}
