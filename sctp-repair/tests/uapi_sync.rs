//! `include/sctp_repair.h` (what this crate binds) must say exactly what
//! the kernel patch adds to include/uapi/linux/sctp.h, or the crate and the
//! kernel drift apart silently.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `#define SCTP_REPAIR... <number>` lines, with a leading `+` if `added`.
fn defines(text: &str, added: bool) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let line = if added {
            match line.strip_prefix('+') {
                Some(l) => l,
                None => continue,
            }
        } else {
            line
        };
        let Some(rest) = line.trim().strip_prefix("#define ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        if !name.starts_with("SCTP_REPAIR") {
            continue;
        }
        if let Ok(v) = val.parse() {
            m.insert(name.to_string(), v);
        }
    }
    m
}

/// What the series adds to include/uapi/linux/sctp.h.
fn kernel_uapi() -> BTreeMap<String, u64> {
    let dir = root().join("kernel-patches");
    let series = std::fs::read_to_string(dir.join("series")).expect("kernel-patches/series");
    let mut m = BTreeMap::new();
    for name in series
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
    {
        let body = std::fs::read_to_string(dir.join(name)).expect("patch listed in series");
        // Only the hunks of the uapi header count.
        for file in body
            .split("\ndiff --git ")
            .filter(|f| f.starts_with("a/include/uapi/linux/sctp.h"))
        {
            m.extend(defines(file, true));
        }
    }
    m
}

#[test]
fn header_matches_the_kernel_patch() {
    let ours = defines(
        &std::fs::read_to_string(root().join("include/sctp_repair.h"))
            .expect("include/sctp_repair.h"),
        false,
    );
    let kernel = kernel_uapi();
    assert!(
        !ours.is_empty(),
        "include/sctp_repair.h defines no SCTP_REPAIR* constant"
    );
    assert_eq!(
        ours, kernel,
        "include/sctp_repair.h and the kernel patch's uapi disagree"
    );
}

#[test]
fn bindings_carry_the_header_values() {
    let ours = defines(
        &std::fs::read_to_string(root().join("include/sctp_repair.h"))
            .expect("include/sctp_repair.h"),
        false,
    );
    use epcmig_sys::sctp_repair as b;
    assert_eq!(ours.get("SCTP_REPAIR"), Some(&u64::from(b::SCTP_REPAIR)));
    assert_eq!(
        ours.get("SCTP_REPAIR_ON"),
        Some(&u64::from(b::SCTP_REPAIR_ON))
    );
    assert_eq!(
        ours.get("SCTP_REPAIR_OFF"),
        Some(&u64::from(b::SCTP_REPAIR_OFF))
    );
}
