//! Our image files, read back for people and tools (`epcmig-decode`, the
//! counterpart of `crit decode` for what the plugin writes).
//!
//! The kind of a file is told by its magic, not its name:
//!
//! | magic | kind | written as | content |
//! |---|---|---|---|
//! | `SCTPSNAP` | `sctp-snapshot` | `epcmig-sctp-<id>.img` | [`sctp_repair::Snapshot`] |
//! | `GTPSTATE` | `gtp-state` | a gtp capture | [`gtp_state::GtpState`] |
//!
//! Both formats carry their version and a checksum; decoding never panics
//! and names what is wrong ([`ImageError`]).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use gtp_state::GtpState;
use sctp_repair::Snapshot;
use serde_json::{json, Value};

/// Largest file read: the larger of the two formats' own limits.
pub const MAX_IMAGE: u64 = gtp_state::format::MAX_FILE as u64;

/// Prefix of the names the plugin gives its files in CRIU's image dir.
pub const NAME_PREFIX: &str = "epcmig-";

/// Why a file is not an image we can show.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("empty file: not an epcmig image")]
    Empty,
    #[error("truncated: {have} bytes, too short for the 8-byte magic of {kind}")]
    TruncatedMagic { kind: &'static str, have: usize },
    #[error("truncated {kind} (or a corrupt length): its sections need at least {need} bytes, the file has {have}")]
    Truncated {
        kind: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unknown magic {0:?}: not an epcmig image (SCTPSNAP or GTPSTATE expected)")]
    UnknownMagic(String),
    #[error("SCTP snapshot: {0}")]
    Sctp(#[from] sctp_repair::FormatError),
    #[error("gtp table: {0}")]
    Gtp(#[from] gtp_state::FormatError),
    #[error("{path}: {size} bytes, over the {MAX_IMAGE}-byte limit")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{0}: not a regular file")]
    NotAFile(PathBuf),
    #[error("{0}: a symlink in the image directory; not followed")]
    Symlink(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A decoded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Sctp(Snapshot),
    Gtp(GtpState),
}

/// Kind of an SCTP snapshot image.
pub const SCTP_KIND: &str = "sctp-snapshot";
/// Kind of a gtp table image.
pub const GTP_KIND: &str = "gtp-state";

const KINDS: &[(&[u8; 8], &str)] = &[
    (sctp_repair::snapshot::MAGIC, SCTP_KIND),
    (gtp_state::format::MAGIC, GTP_KIND),
];

/// The kind name for a file starting with `head`, if it is one of ours.
pub fn kind_of(head: &[u8]) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(m, _)| head.starts_with(&m[..]))
        .map(|(_, k)| *k)
}

impl Image {
    /// Decodes a whole file, telling its kind by the magic.
    pub fn decode(data: &[u8]) -> Result<Image, ImageError> {
        if data.starts_with(sctp_repair::snapshot::MAGIC) {
            return match Snapshot::decode(data) {
                Ok(s) => Ok(Image::Sctp(s)),
                Err(sctp_repair::FormatError::Checksum) => Err(truncation(SCTP_KIND, data)
                    .unwrap_or(sctp_repair::FormatError::Checksum.into())),
                Err(e) => Err(e.into()),
            };
        }
        if data.starts_with(gtp_state::format::MAGIC) {
            return match gtp_state::format::decode(data) {
                Ok(g) => Ok(Image::Gtp(g)),
                Err(gtp_state::FormatError::Checksum) => {
                    Err(truncation(GTP_KIND, data)
                        .unwrap_or(gtp_state::FormatError::Checksum.into()))
                }
                Err(e) => Err(e.into()),
            };
        }
        if data.is_empty() {
            return Err(ImageError::Empty);
        }
        if let Some((_, kind)) = KINDS.iter().find(|(m, _)| m.starts_with(data)) {
            return Err(ImageError::TruncatedMagic {
                kind,
                have: data.len(),
            });
        }
        let magic = data.get(..8).unwrap_or(data);
        Err(ImageError::UnknownMagic(
            String::from_utf8_lossy(magic).into_owned(),
        ))
    }

    /// Encodes the image again (the plugin's writers' output).
    pub fn encode(&self) -> Result<Vec<u8>, ImageError> {
        match self {
            Image::Sctp(s) => Ok(s.encode()),
            Image::Gtp(g) => Ok(gtp_state::format::encode(g)?),
        }
    }

    /// `sctp-snapshot` or `gtp-state`.
    pub fn kind(&self) -> &'static str {
        match self {
            Image::Sctp(_) => SCTP_KIND,
            Image::Gtp(_) => GTP_KIND,
        }
    }

    /// The image as JSON: `{"file", "kind", "magic", "version", "entry"}`,
    /// with every field of the content under `entry` (the gtp table as
    /// `gtp-state show` prints it).
    pub fn to_json(&self, file: Option<&str>) -> Value {
        let (magic, version, entry) = match self {
            Image::Sctp(s) => (
                sctp_repair::snapshot::MAGIC,
                sctp_repair::snapshot::FORMAT_VERSION,
                s.to_json(),
            ),
            Image::Gtp(g) => (
                gtp_state::format::MAGIC,
                gtp_state::format::FORMAT_VERSION,
                // GtpState's derived Serialize cannot fail (no maps with
                // non-string keys); Null would only hide a bug, never input.
                serde_json::to_value(g).unwrap_or(Value::Null),
            ),
        };
        json!({
            "file": file,
            "kind": self.kind(),
            "magic": String::from_utf8_lossy(magic),
            "version": version,
            "entry": entry,
        })
    }
}

/// Both formats frame their content the same way: a 16-byte header
/// ending in the section count (u32 LE at 12), sections of a u16 type, u16
/// flags and u32 LE length before the payload, and a 4-byte checksum. A
/// file whose checksum fails is named truncated rather than corrupt when
/// its sections run past its end.
fn truncation(kind: &'static str, data: &[u8]) -> Option<ImageError> {
    const HEADER: usize = 16;
    const SECTION: usize = 8;
    const CRC: usize = 4;
    let word = |at: usize| -> Option<usize> {
        let b = data.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let have = data.len();
    let truncated = |need: usize| ImageError::Truncated { kind, need, have };
    let Some(count) = word(12) else {
        return Some(truncated(HEADER + CRC));
    };
    let mut at = HEADER;
    for _ in 0..count {
        let Some(len) = word(at + 4) else {
            return Some(truncated(at + SECTION + CRC));
        };
        at = at.checked_add(SECTION)?.checked_add(len)?;
        if at > have {
            return Some(truncated(at.checked_add(CRC)?));
        }
    }
    (at + CRC > have).then(|| truncated(at + CRC))
}

/// Reads a regular file of at most [`MAX_IMAGE`] bytes; `nofollow`
/// refuses a symlink as the last component (as the plugin does in the
/// image dir).
fn read_file(path: &Path, nofollow: bool) -> Result<Vec<u8>, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    // O_NONBLOCK: opening a FIFO planted in the directory must not hang.
    let mut flags = libc::O_NONBLOCK;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    opts.read(true).custom_flags(flags);
    let f = match opts.open(path) {
        Err(e) if nofollow && e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ImageError::Symlink(path.to_path_buf()))
        }
        r => r.map_err(io)?,
    };
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ImageError::NotAFile(path.to_path_buf()));
    }
    let size = meta.len();
    if size > MAX_IMAGE {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut v = Vec::new();
    f.take(MAX_IMAGE + 1).read_to_end(&mut v).map_err(io)?;
    Ok(v)
}

/// Decodes one file.
pub fn decode_file(path: &Path) -> Result<Image, ImageError> {
    Image::decode(&read_file(path, false)?)
}

/// The files of an image directory that are ours: named `epcmig-*`, or
/// starting with one of our magics (whatever their name), sorted by name.
/// CRIU's own images are passed over.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let io = |source| ImageError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let path = e.path();
        let ours_by_name = e.file_name().to_string_lossy().starts_with(NAME_PREFIX);
        let ty = e.file_type().map_err(io)?;
        let ours_by_magic = ty.is_file() && {
            let mut head = [0u8; 8];
            File::open(&path)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok()
                && kind_of(&head).is_some()
        };
        if ours_by_name || ours_by_magic {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// One file of an image directory and what decoding it gave.
pub type DirEntry = (PathBuf, Result<Image, ImageError>);

/// Decodes every image of a directory (see [`image_files`]).
pub fn decode_dir(dir: &Path) -> Result<Vec<DirEntry>, ImageError> {
    Ok(image_files(dir)?
        .into_iter()
        .map(|p| {
            let r = read_file(&p, true).and_then(|b| Image::decode(&b));
            (p, r)
        })
        .collect())
}
