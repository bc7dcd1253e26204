//! `epcmig-decode` and the image decoder on valid images (the samples, as
//! files and as an image directory) and on every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use epcmig_tools::decode::{decode_dir, Image, ImageError, MAX_IMAGE};
use epcmig_tools::samples;
use serde_json::Value;

/// A fresh directory under the target dir, removed first if left over.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("decode-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes every sample into `dir` under its image name.
fn write_samples(dir: &Path) -> Vec<(String, Image)> {
    let all = samples::all();
    for (name, img) in &all {
        std::fs::write(dir.join(name), img.encode().expect("encode sample")).expect("write");
    }
    all
}

fn run(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epcmig-decode"))
        .args(args)
        .output()
        .expect("run epcmig-decode")
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the decoder on one file holding `bytes`; expects a failure whose
/// message contains `cause`, nothing on stdout.
fn expect_refused(name: &str, bytes: &[u8], cause: &str) {
    let dir = scratch(&format!("bad-{name}"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    let o = run(&[&path]);
    assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
    assert!(o.stdout.is_empty(), "{name}: printed something");
    let err = stderr(&o);
    assert!(
        err.contains(cause),
        "{name}: {err:?} does not say {cause:?}"
    );
    assert!(err.contains(name), "{name}: {err:?} does not name the file");
}

/// Runs the decoder on an image directory with one bad entry; expects exit
/// 1, `cause` on stderr and `printed` documents still on stdout.
fn expect_dir_refusal(dir: &Path, cause: &str, printed: usize) {
    let o = run(&[dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(cause), "{}", stderr(&o));
    assert_eq!(stdout_json(&o).as_array().map(Vec::len), Some(printed));
}

fn sctp_sample() -> Vec<u8> {
    samples::sctp_established_v4().encode()
}

fn gtp_sample() -> Vec<u8> {
    gtp_state::format::encode(&samples::gtp_table(6)).expect("encode")
}

#[test]
fn each_sample_file_decodes_with_every_field() {
    let dir = scratch("files");
    for (name, img) in write_samples(&dir) {
        let path = dir.join(&name);
        let o = run(&[&path]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let j = stdout_json(&o);
        assert_eq!(j["file"], path.display().to_string());
        assert_eq!(j["kind"], img.kind());
        let version = match &img {
            Image::Sctp(_) => sctp_repair::snapshot::FORMAT_VERSION,
            Image::Gtp(_) => gtp_state::format::FORMAT_VERSION,
        };
        assert_eq!(j["version"], version);
        assert_eq!(j, img.to_json(Some(&path.display().to_string())));
        match &img {
            Image::Sctp(s) => {
                assert_eq!(j["magic"], "SCTPSNAP");
                assert_eq!(j["entry"]["local_addrs"][0], s.local_addrs[0].to_string());
            }
            Image::Gtp(g) => {
                // The same JSON as `gtp-state show -i FILE`.
                assert_eq!(j["magic"], "GTPSTATE");
                assert_eq!(j["entry"], serde_json::to_value(g).expect("json"));
            }
        }
    }
}

#[test]
fn established_snapshot_shows_the_kernel_structures() {
    let j = Image::Sctp(samples::sctp_established_v4()).to_json(None);
    let e = &j["entry"];
    assert_eq!(e["association"]["primary_addr"], "192.0.2.3:36412");
    assert_eq!(e["association"]["next_tsn"], 1042);
    assert_eq!(e["paths"]["paths"][0]["primary"], true);
    assert_eq!(e["streams"]["streams"].as_array().map(Vec::len), Some(4));
    assert_eq!(e["tsn_map"]["gaps"][1]["start"], 6);
    assert_eq!(e["tsn_map"]["dup_tsns"][0], 77_118);
    assert_eq!(e["queues"][1]["queue"], "in flight");
    assert_eq!(e["queues"][1]["tsn"], 1040);
    assert_eq!(
        e["queues"][2]["flag_names"],
        serde_json::json!(["first", "reasm"])
    );
    let v6 = Image::Sctp(samples::sctp_established_v6()).to_json(None);
    assert_eq!(v6["entry"]["paths"]["count"], 2);
    assert_eq!(
        v6["entry"]["paths"]["paths"][1]["addr"],
        "[2001:db8:1::3]:36412"
    );
    let l = Image::Sctp(samples::sctp_listener()).to_json(None);
    assert_eq!(l["entry"]["kind"], "listen");
    assert!(l["entry"].get("association").is_none());
}

#[test]
fn image_directory_lists_ours_by_name_or_magic_and_skips_criu_images() {
    let dir = scratch("dir");
    let all = write_samples(&dir);
    // CRIU's own images (here: inventory's magic pair) are not ours.
    std::fs::write(
        dir.join("inventory.img"),
        [0x54, 0x46, 0x64, 0x58, 0, 0, 0, 0],
    )
    .expect("w");
    std::fs::write(dir.join("stats-dump"), b"").expect("w");
    let o = run(&[&dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let arr = stdout_json(&o);
    let files: Vec<String> = arr
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["file"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut want: Vec<String> = all
        .iter()
        .map(|(n, _)| dir.join(n).display().to_string())
        .collect();
    want.sort();
    assert_eq!(files, want);
}

#[test]
fn empty_image_directory_is_an_empty_array() {
    let dir = scratch("empty-dir");
    let o = run(&[&dir]);
    assert!(o.status.success());
    assert_eq!(stdout_json(&o), serde_json::json!([]));
}

#[test]
fn empty_file() {
    expect_refused("epcmig-sctp-00000001.img", b"", "empty file");
}

#[test]
fn truncated_images() {
    let s = sctp_sample();
    expect_refused(
        "sctp-half.img",
        &s[..s.len() / 2],
        "truncated sctp-snapshot",
    );
    expect_refused(
        "sctp-no-crc.img",
        &s[..s.len() - 4],
        "truncated sctp-snapshot",
    );
    let g = gtp_sample();
    expect_refused("gtp-short.state", &g[..12], "truncated");
    expect_refused("sctp-magic.img", b"SCTP", "too short for the 8-byte magic");
}

#[test]
fn wrong_magic() {
    expect_refused(
        "epcmig-sctp-00000002.img",
        b"NOTOURS\0 and more bytes",
        "unknown magic",
    );
}

#[test]
fn unknown_versions() {
    let mut s = sctp_sample();
    s[8] = 9;
    expect_refused("sctp-v9.img", &s, "version 9 is not supported");
    let mut g = gtp_sample();
    g[8] = 2;
    expect_refused("gtp-v2.state", &g, "version 2 is not supported");
}

#[test]
fn corrupt_images() {
    let mut s = sctp_sample();
    let mid = s.len() / 2;
    s[mid] ^= 0x10;
    expect_refused("sctp-flip.img", &s, "checksum mismatch");
    let mut g = gtp_sample();
    let mid = g.len() / 2;
    g[mid] ^= 1;
    expect_refused("gtp-flip.state", &g, "checksum mismatch");
}

#[test]
fn oversized_file_is_refused_before_reading() {
    let dir = scratch("big");
    let path = dir.join("epcmig-sctp-00000003.img");
    let f = std::fs::File::create(&path).expect("create");
    // Sparse: no disk used.
    f.set_len(MAX_IMAGE + 1).expect("set_len");
    let o = run(&[&path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("over the"), "{}", stderr(&o));
}

#[test]
fn missing_path_names_the_cause() {
    let o = run(&[Path::new("/nonexistent/epcmig-sctp-00000004.img")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such file"), "{}", stderr(&o));
}

#[test]
fn symlink_in_image_directory_is_not_followed() {
    let dir = scratch("symlink");
    write_samples(&dir);
    let target = dir.join("elsewhere");
    std::fs::write(&target, sctp_sample()).expect("w");
    std::os::unix::fs::symlink(&target, dir.join("epcmig-sctp-00000099.img")).expect("symlink");
    // The others are still printed, and the link's target by its own magic.
    expect_dir_refusal(
        &dir,
        "epcmig-sctp-00000099.img: a symlink",
        samples::all().len() + 1,
    );
    let r = decode_dir(&dir).expect("dir");
    assert!(r
        .iter()
        .any(|(_, r)| matches!(r, Err(ImageError::Symlink(_)))));
}

#[test]
fn fifo_or_device_is_refused_without_blocking() {
    let dir = scratch("fifo");
    write_samples(&dir);
    let fifo = dir.join("epcmig-sctp-00000042.img");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    expect_dir_refusal(
        &dir,
        "epcmig-sctp-00000042.img: not a regular file",
        samples::all().len(),
    );
    let o = run(&[Path::new("/dev/zero")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/dev/zero: not a regular file"));
}

#[test]
fn one_bad_file_in_a_directory_fails_the_run_but_not_the_others() {
    let dir = scratch("mixed");
    write_samples(&dir);
    std::fs::write(dir.join("epcmig-sctp-000000ff.img"), b"garbage!").expect("w");
    expect_dir_refusal(
        &dir,
        "epcmig-sctp-000000ff.img: unknown magic",
        samples::all().len(),
    );
}

#[test]
fn errors_are_typed() {
    assert!(matches!(Image::decode(b""), Err(ImageError::Empty)));
    assert!(matches!(
        Image::decode(b"GTPST"),
        Err(ImageError::TruncatedMagic {
            kind: "gtp-state",
            have: 5
        })
    ));
    assert!(matches!(
        Image::decode(b"ABCDEFGHIJ"),
        Err(ImageError::UnknownMagic(m)) if m == "ABCDEFGH"
    ));
    let s = sctp_sample();
    assert!(matches!(
        Image::decode(&s[..s.len() - 1]),
        Err(ImageError::Truncated { kind: "sctp-snapshot", need, have }) if need == s.len() && have == s.len() - 1
    ));
    let mut c = s.clone();
    c[40] ^= 4;
    assert!(matches!(
        Image::decode(&c),
        Err(ImageError::Sctp(sctp_repair::FormatError::Checksum))
    ));
    let g = gtp_sample();
    assert!(matches!(
        Image::decode(&g[..30]),
        Err(ImageError::Truncated {
            kind: "gtp-state",
            ..
        })
    ));
    let mut v = g.clone();
    v[8] = 7;
    assert!(matches!(
        Image::decode(&v),
        Err(ImageError::Gtp(gtp_state::FormatError::UnsupportedVersion(
            7
        )))
    ));
}

#[test]
fn samples_round_trip() {
    for (name, img) in samples::all() {
        let b = img.encode().expect("encode");
        assert_eq!(Image::decode(&b).expect(&name), img, "{name}");
    }
}
