//! GTP_CMD_NEWPDP and GTP_CMD_NEWPDPS requests written straight into a
//! buffer: installing 100k contexts builds no message per context.

use std::net::IpAddr;

use netlink_packet_core::NLM_F_REQUEST;

use super::family::*;
use crate::model::{Pdp, Tunnel};

pub(super) fn put_nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    // Values here are at most 16 bytes.
    let len = (4 + value.len()) as u16;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&[0; 3][..(4 - value.len() % 4) % 4]);
}

/// Appends the netlink and genl headers of a `cmd` request; the length is
/// filled in by [`end_request`].
pub(super) fn start_request(
    out: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes()); // length
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    out.extend_from_slice(&[cmd, 0, 0, 0]); // genl header
    start
}

pub(super) fn end_request(out: &mut [u8], start: usize) {
    // Requests are at most a few MiB (MAX_BATCH contexts).
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends the attributes of `p` that GTP_CMD_NEWPDP takes besides the
/// device.
pub(super) fn put_pdp_attrs(out: &mut Vec<u8>, p: &Pdp) {
    match p.tunnel {
        Tunnel::V0 { tid, flow } => {
            put_nla(out, GTPA_VERSION, &0u32.to_ne_bytes());
            put_nla(out, GTPA_TID, &tid.to_ne_bytes());
            put_nla(out, GTPA_FLOW, &flow.to_ne_bytes());
        }
        Tunnel::V1 { i_tei, o_tei } => {
            put_nla(out, GTPA_VERSION, &1u32.to_ne_bytes());
            put_nla(out, GTPA_I_TEI, &i_tei.to_ne_bytes());
            put_nla(out, GTPA_O_TEI, &o_tei.to_ne_bytes());
        }
    }
    match p.peer {
        IpAddr::V4(x) => put_nla(out, GTPA_PEER_ADDRESS, &x.octets()),
        IpAddr::V6(x) => put_nla(out, GTPA_PEER_ADDR6, &x.octets()),
    }
    match p.ms {
        IpAddr::V4(x) => {
            put_nla(out, GTPA_FAMILY, &[libc::AF_INET as u8]);
            put_nla(out, GTPA_MS_ADDRESS, &x.octets());
        }
        IpAddr::V6(x) => {
            put_nla(out, GTPA_FAMILY, &[libc::AF_INET6 as u8]);
            put_nla(out, GTPA_MS_ADDR6, &x.octets());
        }
    }
}

/// Appends a GTP_CMD_NEWPDP request for `p` on `ifindex`: the bytes
/// [`GtpNl`]'s generic path would write for `pdp_attrs(ifindex, p)` (see
/// the tests), without building a message per context.
pub(crate) fn put_newpdp(
    out: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    ifindex: u32,
    p: &Pdp,
) {
    let start = start_request(out, family, flags, seq, GTP_CMD_NEWPDP);
    put_nla(out, GTPA_LINK, &ifindex.to_ne_bytes());
    put_pdp_attrs(out, p);
    end_request(out, start);
}

/// Appends one GTP_CMD_NEWPDPS request for all of `pdps` on `ifindex`,
/// each in a GTPA_PDP nest. `nests` gets where each nest starts, from the
/// request's netlink header (what an extended ack's offset points at).
pub(super) fn put_newpdps(
    out: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    ifindex: u32,
    pdps: &[Pdp],
    nests: &mut Vec<usize>,
) {
    let start = start_request(out, family, flags, seq, GTP_CMD_NEWPDPS);
    put_nla(out, GTPA_LINK, &ifindex.to_ne_bytes());
    nests.clear();
    for p in pdps {
        let nest = out.len();
        nests.push(nest - start);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(GTPA_PDP | NLA_F_NESTED).to_ne_bytes());
        put_pdp_attrs(out, p);
        // A nest holds at most PDP_ATTRS_MAX_LEN bytes.
        let len = (out.len() - nest) as u16;
        out[nest..nest + 2].copy_from_slice(&len.to_ne_bytes());
    }
    end_request(out, start);
}

pub(super) const NLA_F_NESTED: u16 = 1 << 15;
