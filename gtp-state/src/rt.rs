//! rtnetlink requests: links, addresses, routes (netlink-packet-route).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    GtpRole, InfoData, InfoGtp, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::model::{Address, Route};
use crate::nl::Nl;
use crate::Error;

/// How to find a link.
pub(crate) enum LinkSel<'a> {
    Name(&'a str),
    Index(u32),
}

/// What capture needs of a link.
pub(crate) struct LinkInfoOut {
    pub name: String,
    pub ifindex: u32,
    pub kind: Option<String>,
    pub mtu: u32,
    pub up: bool,
    pub gtp: Vec<InfoGtp>,
}

pub(crate) fn get_link(nl: &mut Nl, sel: LinkSel<'_>) -> Result<Option<LinkInfoOut>, Error> {
    let mut m = LinkMessage::default();
    match sel {
        LinkSel::Name(n) => m.attributes.push(LinkAttribute::IfName(n.to_string())),
        LinkSel::Index(i) => m.header.index = i,
    }
    let replies = match nl.request(RouteNetlinkMessage::GetLink(m), 0, "looking up the link") {
        Ok(r) => r,
        Err(Error::Netlink { errno, .. }) if errno == libc::ENODEV => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(replies.into_iter().find_map(|r| match r {
        RouteNetlinkMessage::NewLink(l) => Some(link_out(l)),
        _ => None,
    }))
}

/// Every link of the netns (RTM_GETLINK dump).
pub(crate) fn dump_links(nl: &mut Nl) -> Result<Vec<LinkInfoOut>, Error> {
    let req = RouteNetlinkMessage::GetLink(LinkMessage::default());
    let replies = nl.request(req, NLM_F_DUMP, "listing the links")?;
    Ok(replies
        .into_iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(link_out(l)),
            _ => None,
        })
        .collect())
}

fn link_out(l: LinkMessage) -> LinkInfoOut {
    let mut out = LinkInfoOut {
        name: String::new(),
        ifindex: l.header.index,
        kind: None,
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        gtp: Vec::new(),
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n,
            LinkAttribute::Mtu(m) => out.mtu = m,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => out.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Gtp(g)) => out.gtp = g,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// What RTM_NEWLINK for a gtp device carries.
pub(crate) struct NewGtp<'a> {
    pub name: &'a str,
    pub ifindex: u32,
    pub role: GtpRole,
    pub hash_size: u32,
    pub restart_count: u8,
    pub sockets: Vec<InfoGtp>,
}

pub(crate) fn create_gtp(nl: &mut Nl, g: &NewGtp<'_>) -> Result<(), Error> {
    let mut m = LinkMessage::default();
    m.header.index = g.ifindex;
    m.attributes.push(LinkAttribute::IfName(g.name.to_string()));
    let mut data = vec![
        InfoGtp::Role(g.role),
        InfoGtp::PdpHashsize(g.hash_size),
        InfoGtp::RestartCount(g.restart_count),
    ];
    data.extend(g.sockets.iter().cloned());
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Gtp),
        LinkInfo::Data(InfoData::Gtp(data)),
    ]));
    let kernel_sockets = g
        .sockets
        .iter()
        .any(|s| matches!(s, InfoGtp::CreateSockets(_)));
    let op = if kernel_sockets {
        "creating the gtp device with kernel sockets on UDP 3386 and 2152"
    } else {
        "creating the gtp device on the given sockets"
    };
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        op,
    )
    .map(|_| ())
}

/// Creates a `dummy` link named `name` with `ifindex`: a stand-in that holds
/// a gtp device's name and index until the device itself can be made.
pub(crate) fn create_dummy(nl: &mut Nl, name: &str, ifindex: u32, mtu: u32) -> Result<(), Error> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    if mtu != 0 {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Dummy,
        )]));
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        "creating the placeholder link",
    )
    .map(|_| ())
}

pub(crate) fn set_link(nl: &mut Nl, ifindex: u32, mtu: u32, up: bool) -> Result<(), Error> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    m.header.change_mask = LinkFlags::Up;
    if mtu != 0 {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    nl.request(RouteNetlinkMessage::SetLink(m), 0, "setting MTU and state")
        .map(|_| ())
}

pub(crate) fn del_link(nl: &mut Nl, ifindex: u32) -> Result<(), Error> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    nl.request(RouteNetlinkMessage::DelLink(m), 0, "deleting the device")
        .map(|_| ())
}

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

pub(crate) fn dump_addresses(nl: &mut Nl, ifindex: u32) -> Result<Vec<Address>, Error> {
    let replies = nl.request(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_DUMP,
        "dumping addresses",
    )?;
    let mut out = Vec::new();
    for r in replies {
        let RouteNetlinkMessage::NewAddress(a) = r else {
            continue;
        };
        if a.header.index != ifindex {
            continue;
        }
        let (mut local, mut address, mut flags) = (None, None, u32::from(a.header.flags.bits()));
        for at in a.attributes {
            match at {
                AddressAttribute::Local(x) => local = Some(x),
                AddressAttribute::Address(x) => address = Some(x),
                AddressAttribute::Flags(f) => flags = f.bits(),
                _ => {}
            }
        }
        let Some(l) = local.or(address) else {
            continue;
        };
        // IPv6 link-local addresses are generated by the kernel per device
        // (a gtp device gets a random one): not configuration.
        if let IpAddr::V6(v6) = l {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        out.push(Address {
            local: l,
            prefix_len: a.header.prefix_len,
            peer: address.filter(|p| *p != l),
            scope: u8::from(a.header.scope),
            flags,
        });
    }
    Ok(out)
}

/// Flags an address may be created with (the rest are kernel state).
const ADDR_FLAGS_SETTABLE: u32 = 0x02 | 0x10 | 0x100 | 0x200 | 0x400; // NODAD HOMEADDRESS MANAGETEMPADDR NOPREFIXROUTE MCAUTOJOIN

pub(crate) fn add_address(nl: &mut Nl, ifindex: u32, a: &Address) -> Result<(), Error> {
    let mut m = AddressMessage::default();
    m.header.family = family(&a.local);
    m.header.prefix_len = a.prefix_len;
    m.header.scope = AddressScope::from(a.scope);
    m.header.index = ifindex;
    let flags = a.flags & ADDR_FLAGS_SETTABLE;
    m.header.flags = AddressHeaderFlags::from_bits_retain(flags as u8);
    m.attributes.push(AddressAttribute::Local(a.local));
    m.attributes
        .push(AddressAttribute::Address(a.peer.unwrap_or(a.local)));
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    match nl.request(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_EXCL,
        "adding an address",
    ) {
        Ok(_) => Ok(()),
        // An address the kernel made by itself when the link came up.
        Err(Error::Netlink { errno, .. }) if errno == libc::EEXIST => Ok(()),
        Err(e) => Err(e),
    }
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(x) => Some(IpAddr::V4(*x)),
        RouteAddress::Inet6(x) => Some(IpAddr::V6(*x)),
        _ => None,
    }
}

const RT_TABLE_LOCAL: u32 = 255;
const RTPROT_KERNEL: u8 = 2;

/// Every route out of `ifindex` (all tables), or every route when
/// `ifindex` is None. Routes the kernel makes by itself (proto kernel, the
/// local table) are left out: they come back with the addresses.
pub(crate) fn dump_routes(nl: &mut Nl, ifindex: Option<u32>) -> Result<Vec<Route>, Error> {
    let mut out = Vec::new();
    for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut m = RouteMessage::default();
        m.header.address_family = fam;
        let replies = nl.request(
            RouteNetlinkMessage::GetRoute(m),
            NLM_F_DUMP,
            "dumping routes",
        )?;
        for r in replies {
            let RouteNetlinkMessage::NewRoute(r) = r else {
                continue;
            };
            let h = &r.header;
            // Cached clones (PMTU/redirect exceptions) are not configuration.
            if h.flags.contains(RouteFlags::Cloned) {
                continue;
            }
            let mut route = Route {
                dst: if fam == AddressFamily::Inet6 {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                },
                dst_len: h.destination_prefix_length,
                gateway: None,
                pref_src: None,
                table: u32::from(h.table),
                protocol: u8::from(h.protocol),
                scope: u8::from(h.scope),
                kind: u8::from(h.kind),
                priority: None,
            };
            let mut oif = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(d) => {
                        if let Some(ip) = route_addr(d) {
                            route.dst = ip;
                        }
                    }
                    RouteAttribute::Gateway(g) => route.gateway = route_addr(g),
                    RouteAttribute::PrefSource(p) => route.pref_src = route_addr(p),
                    RouteAttribute::Table(t) => route.table = *t,
                    RouteAttribute::Priority(p) => route.priority = Some(*p),
                    RouteAttribute::Oif(o) => oif = Some(*o),
                    _ => {}
                }
            }
            if ifindex.is_some() && oif != ifindex {
                continue;
            }
            if ifindex.is_some()
                && (route.table == RT_TABLE_LOCAL || route.protocol == RTPROT_KERNEL)
            {
                continue;
            }
            out.push(route);
        }
    }
    Ok(out)
}

pub(crate) fn add_route(nl: &mut Nl, ifindex: u32, r: &Route) -> Result<(), Error> {
    let mut m = RouteMessage::default();
    m.header.address_family = family(&r.dst);
    m.header.destination_prefix_length = r.dst_len;
    m.header.table = u8::try_from(r.table).unwrap_or(0);
    m.header.protocol = RouteProtocol::from(r.protocol);
    m.header.scope = RouteScope::from(r.scope);
    m.header.kind = RouteType::from(r.kind);
    if r.dst_len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst)));
    }
    m.attributes.push(RouteAttribute::Oif(ifindex));
    if let Some(g) = r.gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if let Some(p) = r.pref_src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(p)));
    }
    if let Some(p) = r.priority {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    match nl.request(
        RouteNetlinkMessage::NewRoute(m),
        NLM_F_CREATE | NLM_F_EXCL,
        "adding a route",
    ) {
        Err(Error::Netlink { errno, .. }) if errno == libc::EEXIST => Err(Error::RouteConflict(
            format!("{}/{} (table {}) exists", r.dst, r.dst_len, r.table),
        )),
        other => other.map(|_| ()),
    }
}

/// Whether two routes would collide in the FIB (same table, family,
/// destination prefix and metric).
pub(crate) fn same_slot(a: &Route, b: &Route) -> bool {
    a.table == b.table
        && a.dst == b.dst
        && a.dst_len == b.dst_len
        && a.priority.unwrap_or(0) == b.priority.unwrap_or(0)
        && a.dst.is_ipv6() == b.dst.is_ipv6()
}
