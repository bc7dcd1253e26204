//! Reading a gtp device and its PDP contexts out of a netns.

use netlink_packet_route::link::InfoGtp;

use crate::model::{peer_families, Device, GtpState, Role};
use crate::netns::Netns;
use crate::nl::{GtpNl, Nl};
use crate::rt::{self, LinkSel};
use crate::{sockets, Error};

/// Captures device `dev` in netns `ns`: link, sockets (best effort, see
/// [`crate::sockets`]), addresses, routes through it and every PDP context.
///
/// Needs CAP_NET_ADMIN in `ns` (the gtp family's GETPDP is admin-only) and
/// CAP_SYS_ADMIN to enter another netns.
pub fn capture(ns: &Netns, dev: &str) -> Result<GtpState, Error> {
    let dev = dev.to_string();
    ns.run(move || capture_here(&dev))
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
    for g in &link.gtp {
        match g {
            InfoGtp::Role(r) => role = Role::from_raw(u32::from(*r)),
            InfoGtp::PdpHashsize(h) => hash_size = *h,
            InfoGtp::RestartCount(c) => restart_count = *c,
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
    let sockets = sockets::find_here(v6);
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
        addresses,
        routes,
        pdps,
    })
}
