//! The one conversion between `SocketAddr` and the kernel's sockaddr
//! bytes (`sockaddr_in`, `sockaddr_in6`, or a `sockaddr_storage` holding
//! one), done on bytes so that it needs no `unsafe`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use epcmig_sys::sctp_repair as uapi;

/// Bytes of a `sockaddr_in`.
pub(crate) const SIN_LEN: usize = 16;
/// Bytes of a `sockaddr_in6`.
pub(crate) const SIN6_LEN: usize = 28;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The address at the start of `raw` and how many bytes its sockaddr
/// takes; `None` for another family or too few bytes.
pub(crate) fn decode(raw: &[u8]) -> Option<(SocketAddr, usize)> {
    let port = u16::from_be_bytes(array(raw, 2)?);
    match u16::from_ne_bytes(array(raw, 0)?) {
        AF_INET if raw.len() >= SIN_LEN => {
            let ip = Ipv4Addr::from(array::<4>(raw, 4)?);
            Some((SocketAddr::V4(SocketAddrV4::new(ip, port)), SIN_LEN))
        }
        AF_INET6 if raw.len() >= SIN6_LEN => {
            let ip = Ipv6Addr::from(array::<16>(raw, 8)?);
            let scope = u32::from_ne_bytes(array(raw, 24)?);
            // The flow label is per packet, not the address's.
            Some((
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)),
                SIN6_LEN,
            ))
        }
        _ => None,
    }
}

/// The sockaddr bytes of `a`, as bind() and bindx take them.
pub(crate) fn encode(a: &SocketAddr) -> Vec<u8> {
    let mut b = match a {
        SocketAddr::V4(v4) => {
            let mut b = vec![0u8; SIN_LEN];
            b[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
            b[4..8].copy_from_slice(&v4.ip().octets());
            b
        }
        SocketAddr::V6(v6) => {
            let mut b = vec![0u8; SIN6_LEN];
            b[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
            b[8..24].copy_from_slice(&v6.ip().octets());
            b[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            b
        }
    };
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b
}

/// The address a repair structure's `sockaddr_storage` holds, and its
/// family (0 for none).
pub(crate) fn from_uapi(ss: &uapi::sockaddr_storage) -> (Option<SocketAddr>, u16) {
    // The padding (as C chars) is what follows the family.
    let bytes: Vec<u8> = ss
        .ss_family
        .to_ne_bytes()
        .into_iter()
        .chain(ss.__ss_padding.iter().map(|&c| c as u8))
        .collect();
    (decode(&bytes).map(|(a, _)| a), ss.ss_family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip() {
        for a in [
            "192.0.2.1:36412".parse::<SocketAddr>().expect("v4"),
            "[2001:db8::1]:2905".parse().expect("v6"),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0, 3)),
        ] {
            let b = encode(&a);
            assert_eq!(decode(&b), Some((a, b.len())));
        }
        assert_eq!(size_of_sockaddrs(), (SIN_LEN, SIN6_LEN));
    }

    fn size_of_sockaddrs() -> (usize, usize) {
        (
            std::mem::size_of::<libc::sockaddr_in>(),
            std::mem::size_of::<libc::sockaddr_in6>(),
        )
    }

    #[test]
    fn short_or_foreign_bytes_are_no_address() {
        let b = encode(&"[::1]:1".parse().expect("v6"));
        assert_eq!(decode(&b[..SIN6_LEN - 1]), None);
        assert_eq!(decode(&[0u8; 32]), None);
        assert_eq!(decode(&[]), None);
    }
}
