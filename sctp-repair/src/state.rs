//! Typed views of the kernel's repair blobs (`include/sctp_repair.h`), and
//! the structural checks a snapshot must pass before it reaches the kernel.

use std::mem::{offset_of, size_of};
use std::net::SocketAddr;

use epcmig_sys::sctp_repair as uapi;

use crate::snapshot::{FormatError, Snapshot};

pub(crate) const ASSOC_SIZE: usize = size_of::<uapi::sctp_repair_assoc>();
pub(crate) const PATH_SIZE: usize = size_of::<uapi::sctp_repair_path>();
pub(crate) const PATHS_HDR: usize = size_of::<uapi::sctp_repair_paths>();
pub(crate) const STREAM_SIZE: usize = size_of::<uapi::sctp_repair_stream>();
pub(crate) const STREAMS_HDR: usize = size_of::<uapi::sctp_repair_streams>();
pub(crate) const TSN_MAP_SIZE: usize = size_of::<uapi::sctp_repair_tsn_map>();
pub(crate) const GAP_SIZE: usize = size_of::<uapi::sctp_repair_gap>();
pub(crate) const AUTH_HDR: usize = size_of::<uapi::sctp_repair_auth>();

/// `sra_features` of an association blob (0 if it is too short).
pub(crate) fn assoc_features(assoc: &[u8]) -> u32 {
    ne_u32(assoc, offset_of!(uapi::sctp_repair_assoc, sra_features)).unwrap_or(0)
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

fn bad(section: &'static str, reason: String) -> FormatError {
    FormatError::BadSection { section, reason }
}

/// Size and version checks on the kernel blobs of an established snapshot;
/// the kernel validates the contents again when they are written.
pub(crate) fn check_blobs(s: &Snapshot) -> Result<(), FormatError> {
    let v1 = uapi::SCTP_REPAIR_V1;
    if s.assoc.len() != ASSOC_SIZE {
        return Err(bad(
            "association",
            format!("{} bytes, expected {ASSOC_SIZE}", s.assoc.len()),
        ));
    }
    for (name, blob) in [
        ("association", &s.assoc),
        ("paths", &s.paths),
        ("streams", &s.streams),
        ("TSN map", &s.tsn_map),
    ] {
        match ne_u32(blob, 0) {
            Some(v) if v == v1 => {}
            Some(v) => {
                return Err(bad(
                    name,
                    format!("kernel structure version {v}, expected {v1}"),
                ))
            }
            None => return Err(bad(name, "empty".into())),
        }
    }
    let count = ne_u32(&s.paths, 4).ok_or_else(|| bad("paths", "no count".into()))? as usize;
    if count == 0
        || Some(s.paths.len())
            != count
                .checked_mul(PATH_SIZE)
                .and_then(|n| n.checked_add(PATHS_HDR))
    {
        return Err(bad(
            "paths",
            format!("{} bytes do not hold {count} paths", s.paths.len()),
        ));
    }
    let out = ne_u16(&s.streams, 4).ok_or_else(|| bad("streams", "no counts".into()))? as usize;
    let inc = ne_u16(&s.streams, 6).ok_or_else(|| bad("streams", "no counts".into()))? as usize;
    if s.streams.len() != STREAMS_HDR + out.max(inc) * STREAM_SIZE {
        return Err(bad(
            "streams",
            format!("{} bytes do not hold {out}/{inc} streams", s.streams.len()),
        ));
    }
    let field = |at| ne_u16(&s.tsn_map, at).ok_or_else(|| bad("TSN map", "too short".into()));
    let dups = field(offset_of!(uapi::sctp_repair_tsn_map, srtm_num_dups))? as usize;
    if dups > uapi::SCTP_REPAIR_MAX_DUP_TSNS as usize {
        return Err(bad(
            "TSN map",
            format!(
                "{dups} duplicate TSNs, at most {} fit",
                uapi::SCTP_REPAIR_MAX_DUP_TSNS
            ),
        ));
    }
    let gaps = field(offset_of!(uapi::sctp_repair_tsn_map, srtm_num_gaps))? as usize;
    if s.tsn_map.len() != TSN_MAP_SIZE + gaps * GAP_SIZE {
        return Err(bad(
            "TSN map",
            format!("{} bytes do not hold {gaps} gap blocks", s.tsn_map.len()),
        ));
    }
    check_auth(s)
}

/// The SCTP-AUTH blob is there exactly when the association uses it, and
/// its parameters and keys fill it (the kernel checks their contents).
fn check_auth(s: &Snapshot) -> Result<(), FormatError> {
    let uses_auth = assoc_features(&s.assoc) & uapi::SCTP_REPAIR_FEAT_AUTH != 0;
    match (uses_auth, s.auth.is_empty()) {
        (false, true) => return Ok(()),
        (true, true) => return Err(FormatError::MissingSection("SCTP-AUTH")),
        (false, false) => {
            return Err(bad(
                "SCTP-AUTH",
                "present for an association without SCTP-AUTH".into(),
            ))
        }
        (true, false) => {}
    }
    let b = &s.auth;
    match ne_u32(b, 0) {
        Some(v) if v == uapi::SCTP_REPAIR_V1 => {}
        v => return Err(bad("SCTP-AUTH", format!("kernel structure version {v:?}"))),
    }
    if b.len() < AUTH_HDR {
        return Err(bad("SCTP-AUTH", format!("{} bytes", b.len())));
    }
    let mut at = AUTH_HDR;
    let lens = offset_of!(uapi::sctp_repair_auth, srau_param_len);
    for i in 0..uapi::SCTP_REPAIR_AUTH_PARAMS as usize {
        let l = ne_u16(b, lens + 2 * i).map_or(0, usize::from);
        at += l.next_multiple_of(4);
    }
    let nkeys = ne_u16(b, offset_of!(uapi::sctp_repair_auth, srau_nkeys)).unwrap_or(0);
    let key_hdr = size_of::<uapi::sctp_repair_auth_key>();
    let len_at = offset_of!(uapi::sctp_repair_auth_key, srak_len);
    for k in 0..nkeys {
        let Some(l) = ne_u32(b, at + len_at) else {
            return Err(bad("SCTP-AUTH", format!("key {k} past the end")));
        };
        at = at
            .saturating_add(key_hdr)
            .saturating_add((l as usize).saturating_add(3) & !3);
    }
    if at != b.len() {
        return Err(bad(
            "SCTP-AUTH",
            format!("{} bytes, its parameters and keys take {at}", b.len()),
        ));
    }
    Ok(())
}

/// A few association facts, for logs and `show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssocInfo {
    pub local_port: u16,
    pub peer_port: u16,
    pub primary: Option<SocketAddr>,
    pub my_vtag: u32,
    pub peer_vtag: u32,
    pub next_tsn: u32,
    pub ctsn_ack_point: u32,
    pub peer_ctsn: u32,
    pub outbound_streams: u16,
    pub inbound_streams: u16,
    pub paths: u32,
    pub features: u32,
}

impl Snapshot {
    /// The main facts of each association the snapshot holds: its own (an
    /// established socket) or its members' (a one-to-many socket).
    pub fn assoc_infos(&self) -> Vec<AssocInfo> {
        self.assoc_info()
            .into_iter()
            .chain(self.members.iter().filter_map(|m| m.snap.assoc_info()))
            .collect()
    }

    /// The association's main facts, if this is an established snapshot.
    pub fn assoc_info(&self) -> Option<AssocInfo> {
        if self.assoc.len() != ASSOC_SIZE {
            return None;
        }
        let a: uapi::sctp_repair_assoc = crate::sys::read(&self.assoc, 0)?;
        Some(AssocInfo {
            local_port: a.sra_local_port,
            peer_port: a.sra_peer_port,
            primary: crate::sockaddr::from_uapi(&a.sra_primary_addr).0,
            my_vtag: a.sra_my_vtag,
            peer_vtag: a.sra_peer_vtag,
            next_tsn: a.sra_next_tsn,
            ctsn_ack_point: a.sra_ctsn_ack_point,
            peer_ctsn: a.sra_peer_ctsn,
            outbound_streams: a.sra_outcnt,
            inbound_streams: a.sra_incnt,
            paths: a.sra_npaths,
            features: a.sra_features,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_uapi_comments() {
        // The kernel patch documents these sizes; a mismatch means the
        // header and bindgen disagree with it.
        assert_eq!(ASSOC_SIZE, 312);
        assert_eq!(PATH_SIZE, 200);
        assert_eq!(STREAM_SIZE, 20);
        assert_eq!(TSN_MAP_SIZE, 80);
        assert_eq!(
            size_of::<uapi::sockaddr_storage>(),
            size_of::<libc::sockaddr_storage>()
        );
    }

    /// A TSN map with its gap blocks (and duplicate TSNs) after it.
    fn with_tsn_map(dups: u16, gaps: u16) -> Snapshot {
        let mut s = crate::snapshot::tests::sample();
        let mut t = vec![0u8; TSN_MAP_SIZE + usize::from(gaps) * GAP_SIZE];
        t[..4].copy_from_slice(&uapi::SCTP_REPAIR_V1.to_ne_bytes());
        let at = offset_of!(uapi::sctp_repair_tsn_map, srtm_num_dups);
        t[at..at + 2].copy_from_slice(&dups.to_ne_bytes());
        let at = offset_of!(uapi::sctp_repair_tsn_map, srtm_num_gaps);
        t[at..at + 2].copy_from_slice(&gaps.to_ne_bytes());
        s.tsn_map = t;
        s
    }

    /// Regression: the gap count was read from srtm_num_dups, so a TSN map
    /// with gaps and no duplicates (or the reverse) was refused as corrupt.
    #[test]
    fn gap_blocks_are_counted_by_num_gaps() {
        for (dups, gaps) in [(0, 0), (0, 2), (1, 0), (1, 2), (16, 3)] {
            let s = with_tsn_map(dups, gaps);
            assert_eq!(check_blobs(&s), Ok(()), "{dups} dups, {gaps} gaps");
            assert_eq!(Snapshot::decode(&s.encode()), Ok(s));
        }
        let mut s = with_tsn_map(0, 2);
        s.tsn_map.truncate(TSN_MAP_SIZE + GAP_SIZE);
        assert!(check_blobs(&s).is_err());
    }

    /// An SCTP-AUTH blob: RANDOMs, our CHUNKS and both HMAC lists, and
    /// keys with secrets of `secrets` bytes.
    pub(crate) fn auth_blob(secrets: &[u32]) -> Vec<u8> {
        let lens: [u16; 6] = [36, 5, 6, 36, 0, 8];
        let mut b = vec![0u8; AUTH_HDR];
        b[..4].copy_from_slice(&uapi::SCTP_REPAIR_V1.to_ne_bytes());
        let at = offset_of!(uapi::sctp_repair_auth, srau_nkeys);
        b[at..at + 2].copy_from_slice(&(secrets.len() as u16).to_ne_bytes());
        let at = offset_of!(uapi::sctp_repair_auth, srau_param_len);
        for (i, l) in lens.iter().enumerate() {
            b[at + 2 * i..at + 2 * i + 2].copy_from_slice(&l.to_ne_bytes());
            b.resize(b.len() + usize::from(*l).next_multiple_of(4), 0xa5);
        }
        for (id, l) in secrets.iter().enumerate() {
            b.extend_from_slice(&(id as u16).to_ne_bytes());
            b.extend_from_slice(&0u16.to_ne_bytes());
            b.extend_from_slice(&l.to_ne_bytes());
            b.resize(b.len() + (*l as usize).next_multiple_of(4), 0x3c);
        }
        b
    }

    fn with_auth(auth: Vec<u8>) -> Snapshot {
        let mut s = crate::snapshot::tests::sample();
        let at = offset_of!(uapi::sctp_repair_assoc, sra_features);
        s.assoc[at..at + 4].copy_from_slice(&uapi::SCTP_REPAIR_FEAT_AUTH.to_ne_bytes());
        s.auth = auth;
        s
    }

    #[test]
    fn auth_goes_with_the_feature_and_fills_its_blob() {
        let s = with_auth(auth_blob(&[0, 16, 3]));
        assert_eq!(check_blobs(&s), Ok(()));
        assert_eq!(Snapshot::decode(&s.encode()), Ok(s.clone()));
        // The feature without the keys, or the keys without the feature
        let mut t = s.clone();
        t.auth.clear();
        assert_eq!(
            check_blobs(&t),
            Err(FormatError::MissingSection("SCTP-AUTH"))
        );
        assert_eq!(
            Snapshot::decode(&t.encode()),
            Err(FormatError::MissingSection("SCTP-AUTH"))
        );
        let mut t = crate::snapshot::tests::sample();
        t.auth = s.auth.clone();
        assert!(check_blobs(&t).is_err());
        // Short, long, and a key claiming more than there is
        for cut in [1, 4, s.auth.len() - AUTH_HDR] {
            let mut t = s.clone();
            t.auth.truncate(t.auth.len() - cut);
            assert!(check_blobs(&t).is_err(), "{cut} bytes short accepted");
        }
        let mut t = s.clone();
        t.auth.extend_from_slice(&[0; 4]);
        assert!(check_blobs(&t).is_err());
        let mut t = with_auth(auth_blob(&[4]));
        let at = t.auth.len() - 4 - 4;
        t.auth[at..at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(check_blobs(&t).is_err());
    }

    #[test]
    fn too_many_duplicate_tsns_are_refused() {
        let s = with_tsn_map(17, 0);
        assert!(matches!(
            check_blobs(&s),
            Err(FormatError::BadSection {
                section: "TSN map",
                ..
            })
        ));
    }
}
