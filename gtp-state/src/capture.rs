//! Reading a gtp device and its PDP contexts out of a netns.

use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_route::link::InfoGtp;

use crate::model::{peer_families, Device, GtpState, Role};
use crate::netns::Netns;
use crate::nl::{GtpNl, Nl};
use crate::rt::{self, LinkSel};
use crate::{sockets, Error};

/// IFLA_GTP_SOCK0_INODE and IFLA_GTP_SOCK1U_INODE (u32, read-only): the
/// inodes of the device's GTPv0 and GTPv1-U sockets (kernel-patches/gtp/0002).
const IFLA_GTP_SOCK0_INODE: u16 = 9;
const IFLA_GTP_SOCK1U_INODE: u16 = 10;

/// A u32 attribute's value; None if it is not 4 bytes long.
fn nla_u32(n: &DefaultNla) -> Option<u64> {
    if n.value_len() != 4 {
        return None;
    }
    let mut b = [0u8; 4];
    n.emit_value(&mut b);
    Some(u64::from(u32::from_ne_bytes(b)))
}

/// Captures device `dev` in netns `ns`: link, sockets (as the kernel
/// names them, else guessed: see [`crate::sockets`]), addresses, routes
/// through it and every PDP context.
///
/// Needs CAP_NET_ADMIN in `ns` (the gtp family's GETPDP is admin-only) and
/// CAP_SYS_ADMIN to enter another netns.
pub fn capture(ns: &Netns, dev: &str) -> Result<GtpState, Error> {
    let dev = dev.to_string();
    ns.run(move || capture_here(&dev))
}

/// The gtp devices of netns `ns`, as (name, ifindex), lowest ifindex first.
pub fn devices(ns: &Netns) -> Result<Vec<(String, u32)>, Error> {
    ns.run(|| {
        let mut nl = Nl::route()?;
        let mut v: Vec<(String, u32)> = rt::dump_links(&mut nl)?
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some("gtp"))
            .map(|l| (l.name, l.ifindex))
            .collect();
        v.sort_by_key(|d| d.1);
        Ok(v)
    })
}

/// [`capture`] in the calling thread's netns.
pub fn capture_here(dev: &str) -> Result<GtpState, Error> {
    let mut nl = Nl::route()?;
    let link = rt::get_link(&mut nl, LinkSel::Name(dev))?
        .ok_or_else(|| Error::NoSuchDevice(dev.to_string()))?;
    if link.kind.as_deref() != Some("gtp") {
        return Err(Error::NotGtp {
            name: dev.to_string(),
            kind: link.kind.unwrap_or_else(|| "none".into()),
        });
    }
    let (mut role, mut hash_size, mut restart_count) = (None, 1024, 0);
    let (mut inode0, mut inode1u) = (None, None);
    for g in &link.gtp {
        match g {
            InfoGtp::Role(r) => role = Role::from_raw(u32::from(*r)),
            InfoGtp::PdpHashsize(h) => hash_size = *h,
            InfoGtp::RestartCount(c) => restart_count = *c,
            // Not known to netlink-packet-route yet (kernel-patches/gtp/0002).
            InfoGtp::Other(n) if n.kind() == IFLA_GTP_SOCK0_INODE => inode0 = nla_u32(n),
            InfoGtp::Other(n) if n.kind() == IFLA_GTP_SOCK1U_INODE => inode1u = nla_u32(n),
            _ => {}
        }
    }
    let role =
        role.ok_or_else(|| Error::Protocol(format!("{dev}: no or unknown IFLA_GTP_ROLE")))?;
    let mut gtp = GtpNl::open()?;
    let pdps = gtp.dump_pdps(link.ifindex)?;
    let addresses = rt::dump_addresses(&mut nl, link.ifindex)?;
    let routes = rt::dump_routes(&mut nl, Some(link.ifindex))?;
    let fams = peer_families(&pdps);
    let v6 = if fams.len() == 1 {
        fams.into_iter().next()
    } else {
        None
    };
    let (sockets, sockets_found) = sockets::find_here((inode0, inode1u), v6);
    Ok(GtpState {
        device: Device {
            name: link.name,
            ifindex: link.ifindex,
            role,
            hash_size,
            restart_count,
            mtu: link.mtu,
            up: link.up,
        },
        sockets,
        sockets_found,
        addresses,
        routes,
        pdps,
    })
}
