//! The checks the fuzz targets run on each input: decoding never panics,
//! and what decodes encodes again to bytes that decode to an equal value
//! (and re-encode to the same bytes).
//!
//! Each input is tried as it is and with its trailing CRC-32 recomputed:
//! both formats end in a checksum of everything before it, which random
//! mutations almost never satisfy, so the second try is what reaches the
//! section parsers.

use std::borrow::Cow;

use epcmig_tools::decode::Image;
use sctp_repair::Snapshot;

/// The input, then (if long enough to hold a header and a checksum) the
/// input with a valid checksum.
fn variants(data: &[u8]) -> impl Iterator<Item = Cow<'_, [u8]>> {
    let fixed = (data.len() >= 20).then(|| {
        let mut v = data.to_vec();
        let n = v.len() - 4;
        let crc = crc32fast::hash(&v[..n]);
        v[n..].copy_from_slice(&crc.to_le_bytes());
        Cow::Owned(v)
    });
    std::iter::once(Cow::Borrowed(data)).chain(fixed)
}

/// `sctp_snapshot`: [`Snapshot::decode`].
pub fn sctp_snapshot(data: &[u8]) {
    for input in variants(data) {
        let Ok(snap) = Snapshot::decode(&input) else {
            continue;
        };
        let bytes = snap.encode();
        assert_eq!(Snapshot::decode(&bytes).as_ref(), Ok(&snap));
        assert_eq!(
            Snapshot::decode(&bytes).map(|s| s.encode()).as_deref(),
            Ok(&bytes[..])
        );
        let _ = snap.assoc_info();
        check_json(&snap);
    }
}

/// A decoded snapshot passed the structural checks, so its JSON view must
/// read every kernel structure: a blob shown raw means the decoder and
/// the view disagree on the layout (as they did on the TSN map's gap
/// count).
fn check_json(snap: &Snapshot) {
    let j = snap.to_json();
    for blob in ["association", "paths", "streams", "tsn_map", "auth"] {
        assert!(
            j.get(blob).is_none_or(|b| b.get("raw").is_none()),
            "{blob} of a decoded snapshot shown raw: {}",
            j[blob]
        );
    }
    if let Some(queues) = j["queues"].as_array() {
        assert!(queues.iter().all(|q| q.get("raw").is_none()));
    }
}

/// `gtp_table`: [`gtp_state::format::decode`].
pub fn gtp_table(data: &[u8]) {
    use gtp_state::format::{decode, encode};
    for input in variants(data) {
        let Ok(table) = decode(&input) else {
            continue;
        };
        let bytes = match encode(&table) {
            Ok(b) => b,
            Err(e) => panic!("a decoded table does not encode: {e}"),
        };
        assert_eq!(decode(&bytes).as_ref(), Ok(&table));
        assert_eq!(decode(&bytes).map(|t| encode(&t)), Ok(Ok(bytes.clone())));
        let _ = table.pdp_conflict();
        let _ = serde_json::to_string(&table);
    }
}

/// `plugin_image`: what `epcmig-decode` does with a file of the image
/// directory, whichever kind it is.
pub fn plugin_image(data: &[u8]) {
    for input in variants(data) {
        let Ok(img) = Image::decode(&input) else {
            continue;
        };
        let bytes = match img.encode() {
            Ok(b) => b,
            Err(e) => panic!("a decoded {} image does not encode: {e}", img.kind()),
        };
        match Image::decode(&bytes) {
            Ok(again) => assert_eq!(again, img),
            Err(e) => panic!("re-encoded {} image refused: {e}", img.kind()),
        }
        if let Image::Sctp(snap) = &img {
            check_json(snap);
        }
        let _ = img.to_json(Some("fuzz")).to_string();
    }
}
