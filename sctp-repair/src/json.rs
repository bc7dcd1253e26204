//! A snapshot as JSON (feature `serde`), for `epcmig-decode` and logs.
//!
//! Every field is shown: the framing ([`Snapshot`]'s own fields) and the
//! kernel repair structures inside the blobs, field by field, named as in
//! `include/sctp_repair.h` without their prefix (`sra_next_tsn` is
//! `next_tsn` under `association`). Addresses are strings, socket option
//! values and queued payloads are hex. A blob that does not hold the
//! structure it should (only possible for a snapshot built by hand:
//! [`Snapshot::decode`] checks them) is shown as `{"raw": hex}`.

use std::mem::size_of;
use std::net::SocketAddr;

use epcmig_sys::sctp_repair as uapi;
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::snapshot::{Kind, Snapshot};
use crate::state::{GAP_SIZE, PATHS_HDR, PATH_SIZE, STREAMS_HDR, STREAM_SIZE, TSN_MAP_SIZE};
use crate::sys::{read, Plain};

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        // Writing to a String cannot fail.
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn raw(b: &[u8]) -> Value {
    json!({ "raw": hex(b) })
}

/// `sra_next_tsn` -> `next_tsn`.
fn unprefixed(name: &'static str) -> &'static str {
    name.split_once('_').map_or(name, |(_, rest)| rest)
}

/// A field of a kernel structure, as JSON.
trait Field {
    fn json(&self) -> Value;
}

macro_rules! plain_field {
    ($($t:ty),*) => { $( impl Field for $t { fn json(&self) -> Value { json!(self) } } )* };
}
plain_field!(u8, u16, u32, [u8; 3], [u16; 6], [u32; 2], [u32; 16]);

impl Field for uapi::sockaddr_storage {
    fn json(&self) -> Value {
        sockaddr(self)
    }
}

/// An ordered JSON object of every field of `$s`, a `$t`: the pattern is
/// exhaustive, so a field added to the header and not listed here (or
/// among the flexible arrays after `;`) does not compile.
macro_rules! fields {
    ($s:expr, $t:path { $($f:ident),* $(,)? ; $($skip:ident),* }) => {{
        let $t { $($f,)* $($skip: _,)* } = $s;
        let mut m = Map::new();
        $( m.insert(unprefixed(stringify!($f)).to_string(), Field::json(&$f)); )*
        m
    }};
}

/// A kernel `sockaddr_storage`: the address as a string, `null` for
/// AF_UNSPEC, `{"family": n}` for anything else.
fn sockaddr(ss: &uapi::sockaddr_storage) -> Value {
    match crate::sockaddr::from_uapi(ss) {
        (Some(a), _) => json!(a.to_string()),
        (None, 0) => Value::Null,
        (None, family) => json!({ "family": family }),
    }
}

const FEATURES: &[(u32, &str)] = &[
    (uapi::SCTP_REPAIR_FEAT_ECN, "ecn"),
    (uapi::SCTP_REPAIR_FEAT_PRSCTP, "prsctp"),
    (uapi::SCTP_REPAIR_FEAT_ASCONF, "asconf"),
    (uapi::SCTP_REPAIR_FEAT_RECONF, "reconf"),
    (uapi::SCTP_REPAIR_FEAT_INTL, "intl"),
    (uapi::SCTP_REPAIR_FEAT_AUTH, "auth"),
    (uapi::SCTP_REPAIR_FEAT_IPV4, "ipv4"),
    (uapi::SCTP_REPAIR_FEAT_IPV6, "ipv6"),
    (uapi::SCTP_REPAIR_FEAT_NEED_ECNE, "need_ecne"),
    (uapi::SCTP_REPAIR_FEAT_SACK_DUE, "sack_due"),
];

const CHUNK_FLAGS: &[(u32, &str)] = &[
    (uapi::SCTP_REPAIR_CHUNK_UNORDERED, "unordered"),
    (uapi::SCTP_REPAIR_CHUNK_FIRST, "first"),
    (uapi::SCTP_REPAIR_CHUNK_LAST, "last"),
    (uapi::SCTP_REPAIR_CHUNK_SACK_IMM, "sack_imm"),
    (uapi::SCTP_REPAIR_CHUNK_HAS_MID, "has_mid"),
    (uapi::SCTP_REPAIR_CHUNK_GAP_ACKED, "gap_acked"),
    (uapi::SCTP_REPAIR_CHUNK_RETRANSMIT, "retransmit"),
    (uapi::SCTP_REPAIR_CHUNK_NOTIFICATION, "notification"),
    (uapi::SCTP_REPAIR_CHUNK_ORDER, "order"),
    (uapi::SCTP_REPAIR_CHUNK_REASM, "reasm"),
    (uapi::SCTP_REPAIR_CHUNK_PD_OPEN, "pd_open"),
    (uapi::SCTP_REPAIR_CHUNK_PD_LOBBY, "pd_lobby"),
];

/// The names of the bits set in `v`, and `0x..` for unknown ones.
fn flag_names(v: u32, names: &[(u32, &str)]) -> Value {
    let mut out: Vec<String> = names
        .iter()
        .filter(|(bit, _)| v & bit != 0)
        .map(|(_, n)| (*n).to_string())
        .collect();
    let unknown = names.iter().fold(v, |v, (bit, _)| v & !bit);
    if unknown != 0 {
        out.push(format!("{unknown:#x}"));
    }
    json!(out)
}

fn association(b: &[u8]) -> Value {
    let Some(a) = read::<uapi::sctp_repair_assoc>(b, 0).filter(|_| b.len() == size_of_assoc())
    else {
        return raw(b);
    };
    let mut m = fields!(a, uapi::sctp_repair_assoc {
        sra_version, sra_features, sra_primary_addr,
        sra_local_port, sra_peer_port, sra_outcnt, sra_incnt, sra_npaths,
        sra_my_vtag, sra_peer_vtag, sra_my_ttag, sra_peer_ttag,
        sra_initial_tsn, sra_next_tsn, sra_ctsn_ack_point, sra_adv_peer_ack_point,
        sra_highest_sacked, sra_last_cwr_tsn,
        sra_peer_initial_tsn, sra_peer_ctsn, sra_last_ecne_tsn,
        sra_rwnd, sra_a_rwnd, sra_peer_rwnd, sra_rwnd_over, sra_rwnd_press,
        sra_addip_serial, sra_peer_addip_serial,
        sra_strreset_outseq, sra_strreset_inseq, sra_strreset_result,
        sra_strreset_enable, sra_dscp, sra_addip_disabled_mask,
        sra_peer_adaptation_ind, sra_overall_error_count,
        sra_max_retrans, sra_rto_initial, sra_rto_min, sra_rto_max,
        sra_hbinterval, sra_probe_interval, sra_sackdelay, sra_sackfreq,
        sra_param_flags, sra_pathmtu, sra_flowlabel, sra_max_burst,
        sra_pathmaxrxt, sra_pf_retrans, sra_ps_retrans, sra_encap_port;
    });
    m.insert("feature_names".into(), flag_names(a.sra_features, FEATURES));
    Value::Object(m)
}

/// SCTP-AUTH: the parameters in hex (they went over the wire in clear) and
/// the keys by id and flags, with the length of their secret only.
fn auth(b: &[u8]) -> Value {
    let Some(a) = read::<uapi::sctp_repair_auth>(b, 0) else {
        return raw(b);
    };
    let mut m = fields!(a, uapi::sctp_repair_auth {
        srau_version, srau_active_key_id, srau_nkeys, srau_param_len, srau_reserved;
        srau_data
    });
    const NAMES: [&str; 6] = [
        "random",
        "chunks",
        "hmacs",
        "peer_random",
        "peer_chunks",
        "peer_hmacs",
    ];
    let mut at = size_of::<uapi::sctp_repair_auth>();
    let mut params = Map::new();
    for (name, len) in NAMES.iter().zip(a.srau_param_len) {
        let len = usize::from(len);
        let Some(p) = b.get(at..at + len) else {
            return raw(b);
        };
        params.insert((*name).to_string(), json!(hex(p)));
        at += len.next_multiple_of(4);
    }
    m.insert("params".into(), Value::Object(params));
    let mut keys = Vec::new();
    for _ in 0..a.srau_nkeys {
        let Some(k) = read::<uapi::sctp_repair_auth_key>(b, at) else {
            return raw(b);
        };
        keys.push(json!({
            "id": k.srak_id,
            "flags": k.srak_flags,
            "secret_len": k.srak_len,
        }));
        at = at
            .saturating_add(size_of::<uapi::sctp_repair_auth_key>())
            .saturating_add((k.srak_len as usize).saturating_add(3) & !3);
    }
    m.insert("keys".into(), json!(keys));
    Value::Object(m)
}

fn size_of_assoc() -> usize {
    size_of::<uapi::sctp_repair_assoc>()
}

/// The u32 header words of a blob (version, count...), native order.
fn word(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn half(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)
        .map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

/// `n` records of `T`, `size` bytes apart from `at`, if `b` holds exactly
/// them.
fn records<T: Plain>(b: &[u8], at: usize, n: usize, size: usize) -> Option<Vec<T>> {
    if n.checked_mul(size)?.checked_add(at)? != b.len() {
        return None;
    }
    (0..n).map(|i| read::<T>(b, at + i * size)).collect()
}

fn paths(b: &[u8]) -> Value {
    let (Some(version), Some(count)) = (word(b, 0), word(b, 4)) else {
        return raw(b);
    };
    let Some(list) = records::<uapi::sctp_repair_path>(b, PATHS_HDR, count as usize, PATH_SIZE)
    else {
        return raw(b);
    };
    let list: Vec<Value> = list
        .iter()
        .map(|p| {
            let mut m = fields!(*p, uapi::sctp_repair_path {
                srp_addr, srp_state, srp_flags, srp_pathmtu, srp_rto, srp_srtt, srp_rttvar,
                srp_cwnd, srp_ssthresh, srp_partial_bytes_acked, srp_error_count,
                srp_hbinterval, srp_sackdelay, srp_sackfreq, srp_param_flags,
                srp_flowlabel, srp_pathmaxrxt, srp_pf_retrans, srp_ps_retrans,
                srp_encap_port, srp_dscp, srp_pl_state, srp_pl_pmtu;
            });
            m.insert(
                "primary".into(),
                json!(p.srp_flags & uapi::SCTP_REPAIR_PATH_PRIMARY != 0),
            );
            Value::Object(m)
        })
        .collect();
    json!({ "version": version, "count": count, "paths": list })
}

fn streams(b: &[u8]) -> Value {
    let (Some(version), Some(outcnt), Some(incnt)) = (word(b, 0), half(b, 4), half(b, 6)) else {
        return raw(b);
    };
    let n = usize::from(outcnt.max(incnt));
    let Some(list) = records::<uapi::sctp_repair_stream>(b, STREAMS_HDR, n, STREAM_SIZE) else {
        return raw(b);
    };
    let list: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(sid, s)| {
            let mut m = Map::new();
            m.insert("sid".into(), json!(sid));
            m.extend(fields!(*s, uapi::sctp_repair_stream {
                srs_out_mid, srs_out_mid_uo, srs_in_mid, srs_in_mid_uo,
                srs_out_state, srs_reserved;
            }));
            Value::Object(m)
        })
        .collect();
    json!({ "version": version, "outcnt": outcnt, "incnt": incnt, "streams": list })
}

fn tsn_map(b: &[u8]) -> Value {
    let Some(t) = read::<uapi::sctp_repair_tsn_map>(b, 0) else {
        return raw(b);
    };
    let n = usize::from(t.srtm_num_gaps);
    let Some(gaps) = records::<uapi::sctp_repair_gap>(b, TSN_MAP_SIZE, n, GAP_SIZE) else {
        return raw(b);
    };
    let mut m = fields!(t, uapi::sctp_repair_tsn_map {
        srtm_version, srtm_cum_tsn, srtm_max_tsn_seen, srtm_num_dups, srtm_num_gaps,
        srtm_dup_tsns;
        srtm_gaps
    });
    let gaps: Vec<Value> = gaps
        .iter()
        .map(|g| Value::Object(fields!(*g, uapi::sctp_repair_gap { srg_start, srg_end; })))
        .collect();
    m.insert("gaps".into(), json!(gaps));
    Value::Object(m)
}

fn queue_name(q: u8) -> Value {
    match u32::from(q) {
        uapi::SCTP_REPAIR_QUEUE_SEND_UNSENT => json!("unsent"),
        uapi::SCTP_REPAIR_QUEUE_SEND_INFLIGHT => json!("in flight"),
        uapi::SCTP_REPAIR_QUEUE_RECV => json!("received"),
        _ => json!(q),
    }
}

fn queue_record(queue: u8, b: &[u8]) -> Value {
    let hdr = size_of::<uapi::sctp_repair_chunk>();
    let Some(c) = read::<uapi::sctp_repair_chunk>(b, 0) else {
        return json!({ "queue": queue_name(queue), "raw": hex(b) });
    };
    let mut m = Map::new();
    m.insert("queue".into(), queue_name(queue));
    m.extend(fields!(c, uapi::sctp_repair_chunk {
        src_version, src_len, src_flags,
        src_tsn, src_mid, src_fsn, src_ppid, src_context, src_timetolive,
        src_sid, src_pr_policy;
    }));
    m.insert("flag_names".into(), flag_names(c.src_flags, CHUNK_FLAGS));
    let payload = b.get(hdr..).unwrap_or_default();
    m.insert("payload_len".into(), json!(payload.len()));
    m.insert("payload".into(), json!(hex(payload)));
    Value::Object(m)
}

fn family_name(f: u16) -> Value {
    match i32::from(f) {
        libc::AF_INET => json!("AF_INET"),
        libc::AF_INET6 => json!("AF_INET6"),
        _ => json!(f),
    }
}

impl Snapshot {
    /// The snapshot as a JSON object (see the module docs).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "kind".into(),
            json!(match self.kind {
                Kind::Established => "established",
                Kind::Listen => "listen",
                Kind::OneToMany { listening: false } => "one-to-many",
                Kind::OneToMany { listening: true } => "one-to-many listening",
                Kind::PeeledOff => "peeled off",
            }),
        );
        m.insert("family".into(), family_name(self.family));
        m.insert("backlog".into(), json!(self.backlog));
        let addrs: Vec<String> = self.local_addrs.iter().map(SocketAddr::to_string).collect();
        m.insert("local_addrs".into(), json!(addrs));
        if self.kind == Kind::Established {
            m.insert("association".into(), association(&self.assoc));
            m.insert("paths".into(), paths(&self.paths));
            m.insert("streams".into(), streams(&self.streams));
            m.insert("tsn_map".into(), tsn_map(&self.tsn_map));
            if !self.auth.is_empty() {
                m.insert("auth".into(), auth(&self.auth));
            }
        }
        let opts: Vec<Value> = self
            .sockopts
            .iter()
            .map(|o| json!({ "level": o.level, "name": o.name, "value": hex(&o.value) }))
            .collect();
        m.insert("sockopts".into(), json!(opts));
        let queues: Vec<Value> = self
            .queues
            .iter()
            .map(|r| queue_record(r.queue, &r.data))
            .collect();
        m.insert("queues".into(), json!(queues));
        if !self.members.is_empty() {
            let members: Vec<Value> = self
                .members
                .iter()
                .map(|a| json!({ "id": a.id, "association": a.snap.to_json() }))
                .collect();
            m.insert("associations".into(), json!(members));
        }
        Value::Object(m)
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::sample;

    #[test]
    fn every_structure_is_shown_field_by_field() {
        let j = sample().to_json();
        assert_eq!(j["kind"], "established");
        assert_eq!(j["family"], "AF_INET6");
        assert_eq!(j["local_addrs"][0], "192.0.2.10:36412");
        assert_eq!(j["association"]["version"], 1);
        assert_eq!(j["association"]["primary_addr"], Value::Null);
        assert_eq!(j["association"]["strreset_result"], json!([0, 0]));
        // Every field of struct sctp_repair_assoc, plus the flag names.
        let assoc = j["association"].as_object().expect("object");
        assert_eq!(assoc.len(), 53);
        assert_eq!(j["paths"]["count"], 1);
        assert_eq!(j["paths"]["paths"][0]["primary"], false);
        assert_eq!(j["streams"]["streams"], json!([]));
        assert_eq!(j["tsn_map"]["dup_tsns"].as_array().map(Vec::len), Some(16));
        assert_eq!(j["sockopts"][0]["value"], "01000000");
        assert_eq!(j["queues"][0]["queue"], "in flight");
        assert_eq!(j["queues"][0]["payload"], "0707070707");
        assert_eq!(j["queues"][1]["payload_len"], 0);
    }

    #[test]
    fn auth_shows_keys_without_their_secrets() {
        let mut s = sample();
        s.auth = crate::state::tests::auth_blob(&[0, 16]);
        let j = s.to_json();
        assert_eq!(j["auth"]["nkeys"], 2);
        assert_eq!(j["auth"]["param_len"], json!([36, 5, 6, 36, 0, 8]));
        assert_eq!(j["auth"]["params"]["peer_chunks"], "");
        assert_eq!(j["auth"]["keys"][1]["secret_len"], 16);
        assert!(!j.to_string().contains("3c3c"), "a secret is shown");
    }

    #[test]
    fn misshapen_blobs_are_shown_raw() {
        let mut s = sample();
        s.assoc = vec![1, 2];
        s.paths.pop();
        s.tsn_map.clear();
        s.queues[0].data.truncate(3);
        let j = s.to_json();
        assert_eq!(j["association"]["raw"], "0102");
        assert!(j["paths"]["raw"].is_string());
        assert_eq!(j["tsn_map"]["raw"], "");
        assert_eq!(j["queues"][0]["raw"], "010000");
    }

    #[test]
    fn flags_are_named_and_unknown_bits_kept() {
        let v = flag_names(
            uapi::SCTP_REPAIR_FEAT_IPV4 | uapi::SCTP_REPAIR_FEAT_IPV6 | 0x8000,
            FEATURES,
        );
        assert_eq!(v, json!(["ipv4", "ipv6", "0x8000"]));
    }
}
