//! The `gtp` generic-netlink family (include/uapi/linux/gtp.h): its
//! commands and attributes, as netlink-packet-generic messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    emit_u16, emit_u32, emit_u64, parse_u16, parse_u32, parse_u64, parse_u8, DecodeError,
    DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::model::{Pdp, Tunnel};
use crate::Error;

pub(crate) const GTP_CMD_NEWPDP: u8 = 0;
pub(crate) const GTP_CMD_GETPDP: u8 = 2;
/// Many PDP contexts in one request (kernel-patches/gtp/0005).
pub(super) const GTP_CMD_NEWPDPS: u8 = 4;

pub(super) const GTPA_LINK: u16 = 1;
pub(super) const GTPA_VERSION: u16 = 2;
pub(super) const GTPA_TID: u16 = 3;
pub(super) const GTPA_PEER_ADDRESS: u16 = 4;
pub(super) const GTPA_MS_ADDRESS: u16 = 5;
pub(super) const GTPA_FLOW: u16 = 6;
pub(super) const GTPA_I_TEI: u16 = 8;
pub(super) const GTPA_O_TEI: u16 = 9;
pub(super) const GTPA_PEER_ADDR6: u16 = 11;
pub(super) const GTPA_MS_ADDR6: u16 = 12;
pub(super) const GTPA_FAMILY: u16 = 13;
pub(super) const GTPA_PDP: u16 = 14;

/// One `gtp` family attribute (include/uapi/linux/gtp.h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GtpAttr {
    Link(u32),
    Version(u32),
    Tid(u64),
    PeerAddress(Ipv4Addr),
    MsAddress(Ipv4Addr),
    Flow(u16),
    ITei(u32),
    OTei(u32),
    PeerAddr6(Ipv6Addr),
    MsAddr6(Ipv6Addr),
    Family(u8),
    Other(DefaultNla),
}

impl Nla for GtpAttr {
    fn value_len(&self) -> usize {
        use GtpAttr::*;
        match self {
            Link(_) | Version(_) | PeerAddress(_) | MsAddress(_) | ITei(_) | OTei(_) => 4,
            Tid(_) => 8,
            Flow(_) => 2,
            PeerAddr6(_) | MsAddr6(_) => 16,
            Family(_) => 1,
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use GtpAttr::*;
        match self {
            Link(_) => GTPA_LINK,
            Version(_) => GTPA_VERSION,
            Tid(_) => GTPA_TID,
            PeerAddress(_) => GTPA_PEER_ADDRESS,
            MsAddress(_) => GTPA_MS_ADDRESS,
            Flow(_) => GTPA_FLOW,
            ITei(_) => GTPA_I_TEI,
            OTei(_) => GTPA_O_TEI,
            PeerAddr6(_) => GTPA_PEER_ADDR6,
            MsAddr6(_) => GTPA_MS_ADDR6,
            Family(_) => GTPA_FAMILY,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        use GtpAttr::*;
        // The emit_* helpers only fail on a short buffer, which value_len()
        // rules out.
        let _ = match self {
            Link(v) | Version(v) | ITei(v) | OTei(v) => emit_u32(b, *v),
            Tid(v) => emit_u64(b, *v),
            Flow(v) => emit_u16(b, *v),
            PeerAddress(a) | MsAddress(a) => {
                b[..4].copy_from_slice(&a.octets());
                Ok(())
            }
            PeerAddr6(a) | MsAddr6(a) => {
                b[..16].copy_from_slice(&a.octets());
                Ok(())
            }
            Family(v) => {
                b[0] = *v;
                Ok(())
            }
            Other(n) => {
                n.emit_value(b);
                Ok(())
            }
        };
    }
}

pub(super) fn arr<const N: usize>(p: &[u8]) -> Result<[u8; N], DecodeError> {
    p.try_into()
        .map_err(|_| DecodeError::from(format!("attribute of {} bytes, {N} expected", p.len())))
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for GtpAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            GTPA_LINK => GtpAttr::Link(parse_u32(p)?),
            GTPA_VERSION => GtpAttr::Version(parse_u32(p)?),
            GTPA_TID => GtpAttr::Tid(parse_u64(p)?),
            GTPA_PEER_ADDRESS => GtpAttr::PeerAddress(Ipv4Addr::from(arr::<4>(p)?)),
            GTPA_MS_ADDRESS => GtpAttr::MsAddress(Ipv4Addr::from(arr::<4>(p)?)),
            GTPA_FLOW => GtpAttr::Flow(parse_u16(p)?),
            GTPA_I_TEI => GtpAttr::ITei(parse_u32(p)?),
            GTPA_O_TEI => GtpAttr::OTei(parse_u32(p)?),
            GTPA_PEER_ADDR6 => GtpAttr::PeerAddr6(Ipv6Addr::from(arr::<16>(p)?)),
            GTPA_MS_ADDR6 => GtpAttr::MsAddr6(Ipv6Addr::from(arr::<16>(p)?)),
            GTPA_FAMILY => GtpAttr::Family(parse_u8(p)?),
            _ => GtpAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A message of the `gtp` generic-netlink family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GtpMsg {
    pub cmd: u8,
    pub attrs: Vec<GtpAttr>,
}

impl GenlFamily for GtpMsg {
    fn family_name() -> &'static str {
        "gtp"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        0
    }
}

impl Emitable for GtpMsg {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for GtpMsg {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| GtpAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GtpMsg {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// The NEWPDP attributes of `p` on device `ifindex` (the reference for
/// [`put_newpdp`], and to test the GETPDP decoding).
#[cfg(test)]
pub(crate) fn pdp_attrs(ifindex: u32, p: &Pdp) -> Vec<GtpAttr> {
    let mut a = Vec::with_capacity(7);
    a.push(GtpAttr::Link(ifindex));
    match p.tunnel {
        Tunnel::V0 { tid, flow } => {
            a.push(GtpAttr::Version(0));
            a.push(GtpAttr::Tid(tid));
            a.push(GtpAttr::Flow(flow));
        }
        Tunnel::V1 { i_tei, o_tei } => {
            a.push(GtpAttr::Version(1));
            a.push(GtpAttr::ITei(i_tei));
            a.push(GtpAttr::OTei(o_tei));
        }
    }
    match p.peer {
        IpAddr::V4(x) => a.push(GtpAttr::PeerAddress(x)),
        IpAddr::V6(x) => a.push(GtpAttr::PeerAddr6(x)),
    }
    match p.ms {
        IpAddr::V4(x) => {
            a.push(GtpAttr::Family(libc::AF_INET as u8));
            a.push(GtpAttr::MsAddress(x));
        }
        IpAddr::V6(x) => {
            a.push(GtpAttr::Family(libc::AF_INET6 as u8));
            a.push(GtpAttr::MsAddr6(x));
        }
    }
    a
}

/// Decodes a GETPDP reply into (ifindex, context).
pub(crate) fn pdp_from_attrs(attrs: &[GtpAttr]) -> Result<(u32, Pdp), Error> {
    let (mut link, mut version, mut tid, mut flow, mut itei, mut otei) =
        (None, None, None, None, None, None);
    let (mut peer, mut ms) = (None, None);
    for a in attrs {
        match a {
            GtpAttr::Link(v) => link = Some(*v),
            GtpAttr::Version(v) => version = Some(*v),
            GtpAttr::Tid(v) => tid = Some(*v),
            GtpAttr::Flow(v) => flow = Some(*v),
            GtpAttr::ITei(v) => itei = Some(*v),
            GtpAttr::OTei(v) => otei = Some(*v),
            GtpAttr::PeerAddress(x) => peer = Some(IpAddr::V4(*x)),
            GtpAttr::PeerAddr6(x) => peer = Some(IpAddr::V6(*x)),
            GtpAttr::MsAddress(x) => ms = Some(IpAddr::V4(*x)),
            GtpAttr::MsAddr6(x) => ms = Some(IpAddr::V6(*x)),
            _ => {}
        }
    }
    let missing = |what: &str| Error::Protocol(format!("GETPDP reply without {what}"));
    let tunnel = match version {
        Some(0) => Tunnel::V0 {
            tid: tid.ok_or_else(|| missing("GTPA_TID"))?,
            flow: flow.ok_or_else(|| missing("GTPA_FLOW"))?,
        },
        Some(1) => Tunnel::V1 {
            i_tei: itei.ok_or_else(|| missing("GTPA_I_TEI"))?,
            o_tei: otei.ok_or_else(|| missing("GTPA_O_TEI"))?,
        },
        Some(v) => {
            return Err(Error::Protocol(format!(
                "GETPDP reply with GTP version {v}"
            )))
        }
        None => return Err(missing("GTPA_VERSION")),
    };
    Ok((
        link.ok_or_else(|| missing("GTPA_LINK"))?,
        Pdp {
            tunnel,
            peer: peer.ok_or_else(|| missing("the peer address"))?,
            ms: ms.ok_or_else(|| missing("the MS address"))?,
        },
    ))
}
