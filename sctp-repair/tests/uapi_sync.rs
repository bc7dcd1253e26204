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

/// The uapi text the series adds to include/uapi/linux/sctp.h (the `+`
/// lines, without the `+`).
fn kernel_uapi_text() -> String {
    let dir = root().join("kernel-patches");
    let series = std::fs::read_to_string(dir.join("series")).expect("kernel-patches/series");
    let mut out = String::new();
    for name in series
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
    {
        let body = std::fs::read_to_string(dir.join(name)).expect("patch listed in series");
        for file in body
            .split("\ndiff --git ")
            .filter(|f| f.starts_with("a/include/uapi/linux/sctp.h"))
        {
            for l in file
                .lines()
                .filter_map(|l| l.strip_prefix('+'))
                .filter(|l| !l.starts_with("++"))
            {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// `struct sctp_repair_* { ... };` definitions, comments and whitespace
/// stripped, by name.
fn structs(text: &str) -> BTreeMap<String, String> {
    // Drop comments first.
    let mut clean = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        clean.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    clean.push_str(rest);
    let mut m = BTreeMap::new();
    let mut at = 0;
    while let Some(i) = clean[at..].find("struct sctp_repair_") {
        let start = at + i;
        let head_end = clean[start..].find(['{', ';']).map(|j| start + j);
        match head_end {
            Some(h) if clean.as_bytes()[h] == b'{' => {
                let name = clean[start..h].trim().to_string();
                let end = clean[h..].find("};").map_or(clean.len(), |j| h + j + 2);
                let body: String = clean[h..end]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                m.insert(name, body);
                at = end;
            }
            Some(h) => at = h + 1,
            None => break,
        }
    }
    m
}

#[test]
fn structs_match_the_kernel_patch() {
    let ours =
        structs(&std::fs::read_to_string(root().join("include/sctp_repair.h")).expect("header"));
    let kernel = structs(&kernel_uapi_text());
    assert!(
        kernel.len() >= 4,
        "expected the repair structs in the kernel patch, found {:?}",
        kernel.keys()
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        kernel.keys().collect::<Vec<_>>(),
        "struct sctp_repair_* sets differ"
    );
    for (name, body) in &kernel {
        assert_eq!(
            ours.get(name),
            Some(body),
            "{name} differs between include/sctp_repair.h and the kernel patch"
        );
    }
}

/// The defines the series adds to include/uapi/linux/sctp.h.
fn kernel_uapi() -> BTreeMap<String, u64> {
    defines(&kernel_uapi_text(), false)
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
