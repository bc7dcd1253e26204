//! The framing of the CRIU plugin's image files, shared by sctp-repair (the
//! SCTP snapshot) and gtp-state (the gtp table): the magic, the version,
//! the typed sections with their critical bit, the trailing CRC-32, and a
//! bounded reader whose every short read is a typed error. What the
//! sections hold, which are required and what may repeat is each format's
//! own; so is the mapping of [`Error`] into the format's error type.
//!
//! # Framing
//!
//! All integers little-endian.
//!
//! ```text
//! magic      8  the format's
//! version    2
//! spare      2  the format's (a byte order, or reserved)
//! count      4  number of sections
//! sections      count x { type u16, flags u16, length u32, payload }
//! crc32      4  CRC-32 (IEEE) of everything before it
//! ```
//!
//! Section flags bit 0 ([`CRITICAL`]): a reader that does not know the
//! type must refuse the image; other unknown sections are skipped, so a
//! newer writer can add optional data without breaking older readers. The
//! other flag bits are the format's.
//!
//! Writing: [`put_header`], [`put_section`] for each section,
//! [`put_checksum`]. Reading: [`open`], then the [`Image::sections`].

use std::ops::RangeInclusive;

/// Bytes before the first section.
pub const HEADER_LEN: usize = 16;
/// Bytes of the trailing checksum.
pub const CRC_LEN: usize = 4;
/// Section flag: a reader that does not know the section's type refuses
/// the image.
pub const CRITICAL: u16 = 1;
const MAGIC_LEN: usize = 8;

/// Why bytes are not a well-framed image (or a section cannot be framed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("image is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The bytes are a beginning of the magic: a file cut short, or no
    /// image at all, as the format prefers to say.
    #[error("image truncated: {have} bytes, too short for the 8-byte magic")]
    ShortMagic { have: usize },
    #[error("not an image of this format (bad magic)")]
    BadMagic,
    #[error("format version {0} is not supported")]
    UnsupportedVersion(u16),
    #[error("image truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("image checksum mismatch (corrupt)")]
    Checksum,
    #[error("image has a critical section of unknown type {0}")]
    UnknownCriticalSection(u16),
    #[error("image section {0} appears twice")]
    DuplicateSection(u16),
    #[error("{0} bytes after the last section")]
    Trailing(usize),
    #[error("section {ty} of {len} bytes is over the 4 GiB a length can say")]
    SectionTooLarge { ty: u16, len: usize },
}

/// What tells one format's images from others, and bounds them.
#[derive(Debug, Clone)]
pub struct Format {
    pub magic: &'static [u8; 8],
    /// The versions this build reads.
    pub versions: RangeInclusive<u16>,
    /// An image larger than this is refused before anything is read.
    pub max_len: usize,
}

// ---------------------------------------------------------------- writing

/// Starts an image: the header, for `count` sections to follow.
pub fn put_header(out: &mut Vec<u8>, magic: &[u8; 8], version: u16, spare: [u8; 2], count: u32) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&spare);
    out.extend_from_slice(&count.to_le_bytes());
}

/// Appends a section; nothing is written for a payload whose length does
/// not fit the u32 of the framing.
pub fn put_section(out: &mut Vec<u8>, ty: u16, flags: u16, payload: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::SectionTooLarge {
        ty,
        len: payload.len(),
    })?;
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Ends an image: the checksum of everything in `out`.
pub fn put_checksum(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

// ---------------------------------------------------------------- reading

/// A bounds-checked little-endian reader; every short read is a typed
/// error naming what was being read.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    /// What is left to read.
    pub buf: &'a [u8],
}

/// `Reader::u16(what)` and the like: one little-endian integer each.
macro_rules! integers {
    ($($t:ident),*) => {$(
        #[inline]
        pub fn $t(&mut self, what: &'static str) -> Result<$t, Error> {
            Ok($t::from_le_bytes(self.arr(what)?))
        }
    )*};
}

// The readers are small and sit in the per-record loops of large tables:
// inline, they are compiled with the caller's optimisation level.
impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Truncated {
                what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    #[inline]
    pub fn arr<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    integers!(u8, u16, u32, i32, u64);
}

/// An image whose size, magic, version and checksum were found good.
#[derive(Debug, Clone)]
pub struct Image<'a> {
    pub version: u16,
    /// The header's two bytes that are the format's own.
    pub spare: [u8; 2],
    pub sections: Sections<'a>,
}

/// Checks the frame of `data` and returns its sections, unread. The
/// checks go from the cheapest and most telling: size, magic, version,
/// then the checksum over the whole.
pub fn open<'a>(data: &'a [u8], format: &Format) -> Result<Image<'a>, Error> {
    if data.len() > format.max_len {
        return Err(Error::TooLarge {
            len: data.len(),
            max: format.max_len,
        });
    }
    if !data.starts_with(format.magic) {
        return Err(if format.magic.starts_with(data) {
            Error::ShortMagic { have: data.len() }
        } else {
            Error::BadMagic
        });
    }
    let mut r = Reader::new(&data[MAGIC_LEN..]);
    let version = r.u16("version")?;
    if !format.versions.contains(&version) {
        return Err(Error::UnsupportedVersion(version));
    }
    if data.len() < HEADER_LEN + CRC_LEN {
        return Err(Error::Truncated {
            what: "header and checksum",
            need: HEADER_LEN + CRC_LEN,
            have: data.len(),
        });
    }
    let (covered, crc) = data.split_at(data.len() - CRC_LEN);
    if crc32fast::hash(covered) != Reader::new(crc).u32("checksum")? {
        return Err(Error::Checksum);
    }
    // Past the magic and version; the header is whole (checked above).
    let mut r = Reader::new(&covered[MAGIC_LEN + 2..]);
    let spare = r.arr("spare")?;
    let count = r.u32("section count")?;
    Ok(Image {
        version,
        spare,
        sections: Sections {
            r,
            left: count,
            done: false,
        },
    })
}

/// One section, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    pub ty: u16,
    pub flags: u16,
    pub payload: &'a [u8],
}

impl Section<'_> {
    pub fn is_critical(&self) -> bool {
        self.flags & CRITICAL != 0
    }

    /// For a section of a type the reader does not know: skipped, unless
    /// it is critical.
    pub fn skip_unknown(&self) -> Result<(), Error> {
        if self.is_critical() {
            return Err(Error::UnknownCriticalSection(self.ty));
        }
        Ok(())
    }
}

/// The sections of an image in their order. A section that runs past the
/// end is an error, and so, after the last section, are bytes left over;
/// nothing follows an error.
#[derive(Debug, Clone)]
pub struct Sections<'a> {
    r: Reader<'a>,
    left: u32,
    done: bool,
}

impl<'a> Sections<'a> {
    fn read(&mut self) -> Result<Section<'a>, Error> {
        let ty = self.r.u16("section type")?;
        let flags = self.r.u16("section flags")?;
        let len = self.r.u32("section length")? as usize;
        let payload = self.r.take(len, "section payload")?;
        Ok(Section { ty, flags, payload })
    }
}

impl<'a> Iterator for Sections<'a> {
    type Item = Result<Section<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            let stray = self.r.buf.len();
            return (stray != 0).then_some(Err(Error::Trailing(stray)));
        }
        self.left -= 1;
        let s = self.read();
        self.done = s.is_err();
        Some(s)
    }
}

/// Fills `slot` with what a section held, refusing the section's type a
/// second time.
pub fn set_once<T>(slot: &mut Option<T>, value: T, ty: u16) -> Result<(), Error> {
    if slot.replace(value).is_some() {
        return Err(Error::DuplicateSection(ty));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Format = Format {
        magic: b"TESTIMG1",
        versions: 2..=3,
        max_len: 1024,
    };

    fn image(count: u32, sections: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, TEST.magic, 3, [7, 9], count);
        for (ty, flags, payload) in sections {
            put_section(&mut out, *ty, *flags, payload).unwrap();
        }
        put_checksum(&mut out);
        out
    }

    fn sample() -> Vec<u8> {
        image(2, &[(1, CRITICAL, b"one"), (40, 0, b"")])
    }

    fn sections(data: &[u8]) -> Result<Vec<Section<'_>>, Error> {
        open(data, &TEST)?.sections.collect()
    }

    /// `data` with its checksum made right again.
    fn resealed(data: &[u8]) -> Vec<u8> {
        let mut v = data[..data.len() - CRC_LEN].to_vec();
        put_checksum(&mut v);
        v
    }

    #[test]
    fn round_trip() {
        let b = sample();
        assert_eq!(b.len(), HEADER_LEN + 8 + 3 + 8 + CRC_LEN);
        assert_eq!(&b[..12], b"TESTIMG1\x03\x00\x07\x09");
        let img = open(&b, &TEST).unwrap();
        assert_eq!((img.version, img.spare), (3, [7, 9]));
        assert_eq!(
            img.sections.collect::<Result<Vec<_>, _>>().unwrap(),
            [
                Section {
                    ty: 1,
                    flags: CRITICAL,
                    payload: b"one"
                },
                Section {
                    ty: 40,
                    flags: 0,
                    payload: b""
                },
            ]
        );
        assert_eq!(sections(&image(0, &[])).unwrap(), []);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        for n in 0..b.len() {
            assert!(sections(&b[..n]).is_err(), "prefix of {n} bytes read");
        }
        // Cut inside the sections, with the checksum made right.
        for n in HEADER_LEN + CRC_LEN..b.len() {
            assert!(sections(&resealed(&b[..n])).is_err(), "resealed {n} bytes");
        }
        assert_eq!(
            open(b"TEST", &TEST).unwrap_err(),
            Error::ShortMagic { have: 4 }
        );
        assert_eq!(open(b"", &TEST).unwrap_err(), Error::ShortMagic { have: 0 });
        assert_eq!(
            open(&b[..9], &TEST).unwrap_err(),
            Error::Truncated {
                what: "version",
                need: 2,
                have: 1
            }
        );
        assert_eq!(
            open(&b[..19], &TEST).unwrap_err(),
            Error::Truncated {
                what: "header and checksum",
                need: 20,
                have: 19
            }
        );
    }

    #[test]
    fn bad_magic() {
        assert_eq!(
            open(b"TESTIMG2 and more bytes", &TEST).unwrap_err(),
            Error::BadMagic
        );
        assert_eq!(open(b"X", &TEST).unwrap_err(), Error::BadMagic);
    }

    #[test]
    fn versions_outside_the_range_are_refused() {
        for v in [0u16, 1, 4, 0xffff] {
            let mut b = sample();
            b[8..10].copy_from_slice(&v.to_le_bytes());
            // Before the checksum: the version names the cause better.
            assert_eq!(open(&b, &TEST).unwrap_err(), Error::UnsupportedVersion(v));
        }
        let mut b = sample();
        b[8] = 2;
        assert_eq!(open(&resealed(&b), &TEST).unwrap().version, 2);
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let b = sample();
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(sections(&c).is_err(), "flip of bit {bit} in byte {i}");
            }
        }
        let mut c = b.clone();
        c[HEADER_LEN + 8] ^= 1;
        assert_eq!(sections(&c).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn unknown_sections_follow_the_critical_bit() {
        let b = image(2, &[(99, 0, b"later"), (98, CRITICAL | 2, b"")]);
        let s = sections(&b).unwrap();
        assert!(!s[0].is_critical());
        assert_eq!(s[0].skip_unknown(), Ok(()));
        assert_eq!(s[1].skip_unknown(), Err(Error::UnknownCriticalSection(98)));
    }

    #[test]
    fn sizes_past_the_bounds_are_refused() {
        let big = vec![1u8; TEST.max_len + 1];
        assert_eq!(
            open(&big, &TEST).unwrap_err(),
            Error::TooLarge {
                len: 1025,
                max: 1024
            }
        );
        // A section length past the end, with a good checksum.
        let mut b = sample();
        b[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(
            sections(&resealed(&b)).unwrap_err(),
            Error::Truncated {
                what: "section payload",
                need: 0xffff_fff0,
                have: 3 + 8
            }
        );
        // More sections counted than there are, and fewer.
        let more = image(3, &[(1, CRITICAL, b"one"), (40, 0, b"")]);
        assert!(matches!(
            sections(&more),
            Err(Error::Truncated {
                what: "section type",
                ..
            })
        ));
        let fewer = image(1, &[(1, CRITICAL, b"one"), (40, 0, b"")]);
        assert_eq!(sections(&fewer).unwrap_err(), Error::Trailing(8));
    }

    #[test]
    fn sections_stop_at_the_first_error() {
        let fewer = image(1, &[(1, CRITICAL, b"one"), (40, 0, b"x")]);
        let mut s = open(&fewer, &TEST).unwrap().sections;
        assert!(matches!(s.next(), Some(Ok(Section { ty: 1, .. }))));
        assert_eq!(s.next(), Some(Err(Error::Trailing(9))));
        assert_eq!(s.next(), None);
        let huge = image(u32::MAX, &[]);
        assert_eq!(open(&huge, &TEST).unwrap().sections.count(), 1);
    }

    #[test]
    fn set_once_refuses_a_second_section() {
        let mut slot = None;
        assert_eq!(set_once(&mut slot, 1, 5), Ok(()));
        assert_eq!(set_once(&mut slot, 2, 5), Err(Error::DuplicateSection(5)));
    }

    #[test]
    fn the_reader_names_what_it_could_not_read() {
        let mut r = Reader::new(&[1, 2, 0, 0xff, 0xfe, 0xff, 0xff, 8, 9]);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(2));
        assert_eq!(r.i32("c"), Ok(-257));
        assert_eq!(
            r.u64("d"),
            Err(Error::Truncated {
                what: "d",
                need: 8,
                have: 2
            })
        );
        // A failed read takes nothing.
        assert_eq!(r.arr::<2>("e"), Ok([8, 9]));
        assert_eq!(r.take(0, "f"), Ok(&[][..]));
        assert!(r.buf.is_empty());
    }
}
