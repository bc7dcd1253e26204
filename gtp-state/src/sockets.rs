//! Which UDP sockets a gtp device encapsulates with, found by matching.
//!
//! Linux 6.12 reports neither a gtp device's sockets nor whether the kernel
//! created them (IFLA_GTP_CREATE_SOCKETS) or a process passed them
//! (IFLA_GTP_FD0/FD1). Capture therefore looks, in the device's netns, for
//! UDP sockets bound to the GTP ports (3386 for GTPv0, 2152 for GTPv1-U;
//! `/proc/thread-self/net/udp{,6}`), and for a process holding each of them
//! (`/proc/*/fd`):
//!
//! - found, held by no process: kernel-created, on the address they are
//!   bound to ([`Sockets::Kernel`]);
//! - found, held by a process: process-owned, with their local addresses
//!   ([`Sockets::Process`]);
//! - not found (a process using other ports): process-owned, addresses
//!   unknown.
//!
//! Limits: with several gtp devices in one netns (each on its own local
//! address) the first socket found per port is taken; a process's GTP
//! sockets on non-standard ports are not found; a process holding a UDP
//! socket on a GTP port that no device uses would be taken for the
//! device's. Restore does not depend on this: kernel-created sockets are
//! re-created from the recorded local address, process-owned ones come from
//! the caller as fds.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::model::Sockets;

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

/// Socket inodes held open by any process (`/proc/*/fd`).
fn held_inodes() -> HashSet<u64> {
    let mut set = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return set;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                let t = t.to_string_lossy();
                if let Some(n) = t
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    set.insert(n);
                }
            }
        }
    }
    set
}

/// Classifies the sockets on the GTP ports (see the module docs).
/// `v6`: the device's peers are IPv6 (None: unknown, look at both).
pub fn classify(socks: &[UdpSock], held: &HashSet<u64>, v6: Option<bool>) -> Sockets {
    let pick = |port: u16| {
        socks
            .iter()
            .find(|s| s.local.port() == port && v6.map_or(true, |v| s.local.is_ipv6() == v))
    };
    let (s0, s1) = (pick(GTP0_PORT), pick(GTP1U_PORT));
    let found: Vec<&UdpSock> = [s0, s1].into_iter().flatten().collect();
    if !found.is_empty() && found.iter().all(|s| !held.contains(&s.inode)) {
        let local = found[found.len() - 1].local.ip();
        return Sockets::Kernel {
            local: (!local.is_unspecified()).then_some(local),
        };
    }
    Sockets::Process {
        gtp0: s0.map(|s| s.local),
        gtp1u: s1.map(|s| s.local),
    }
}

/// Finds the sockets in the calling thread's netns.
pub(crate) fn find_here(v6: Option<bool>) -> Sockets {
    let mut socks = Vec::new();
    for f in ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            socks.extend(parse_proc_udp(&t));
        }
    }
    classify(&socks, &held_inodes(), v6)
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
        let none = HashSet::new();
        assert!(matches!(
            classify(&s, &none, Some(false)),
            Sockets::Kernel { .. }
        ));
        let held: HashSet<u64> = [1234].into();
        assert!(matches!(
            classify(&s, &held, Some(false)),
            Sockets::Process {
                gtp0: Some(_),
                gtp1u: Some(_)
            }
        ));
        assert_eq!(
            classify(&s, &none, Some(true)),
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
}
