//! What an SPGW's user plane needs of its network namespace besides the
//! gtp devices, where CRIU does not carry it: the forwarding sysctls and
//! the nftables ruleset (the SGi masquerade).
//!
//! CRIU dumps both itself for a netns it owns. For one a container
//! runtime made (runc hands it to CRIU as external) it dumps and restores
//! neither, and the runtime only sets up the container's own interface:
//! so the plugin captures them with the gtp devices, before the network
//! lock, and puts them back in the runtime's netns on the destination
//! before the tasks run (only there: in a netns CRIU made, CRIU's copy
//! wins).
//!
//! The image (`epcmig-netconf.img`) is a header line, `EPCMIG-NETCONF
//! <version> <crc32 of the body, hex> <body length>`, then a JSON body.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::os::raw::c_int;

use serde::{Deserialize, Serialize};

use crate::images;
use crate::netlock;

/// Image file name.
pub const IMAGE: &str = "epcmig-netconf.img";
const MAGIC: &str = "EPCMIG-NETCONF";
const VERSION: u32 = 1;
/// Largest image read back (a ruleset of a few thousand rules).
const MAX_IMAGE: u64 = 16 << 20;

/// The sysctls carried, as paths under /proc/sys.
const SYSCTLS: &[&str] = &[
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/default/forwarding",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{IMAGE}: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Nft(#[from] netlock::Error),
    #[error(
        "the restored network namespace already has nftables table {0}, which the image \
         carries too: refusing to merge rules into it"
    )]
    TableExists(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A netns's forwarding sysctls and ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConf {
    /// (path under /proc/sys, value)
    pub sysctls: Vec<(String, String)>,
    /// `nft list ruleset` output.
    pub ruleset: String,
}

/// What [`apply`] changed, to undo it.
#[derive(Debug, Default)]
pub struct Applied {
    tables: Vec<String>,
    sysctls: Vec<(String, String)>,
}

/// Runs `f` on a thread in netns `ns` (for /proc/sys/net, which shows the
/// netns of the thread that opens it), with gtp-state's netns runner.
fn in_netns<T: Send>(
    ns: &OwnedFd,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", ns.as_raw_fd());
    gtp_state::Netns::Path(path.into())
        .run(|| Ok(f()))
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

fn netns_of(pid: c_int) -> Result<OwnedFd, Error> {
    let path = format!("/proc/{pid}/ns/net");
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(io(path))
}

/// Reads task `pid`'s netns's forwarding sysctls and ruleset.
pub fn capture(pid: c_int) -> Result<NetConf, Error> {
    let ns = netns_of(pid)?;
    let sysctls = in_netns(&ns, || {
        let mut v = Vec::new();
        for k in SYSCTLS {
            match std::fs::read_to_string(format!("/proc/sys/{k}")) {
                Ok(val) => v.push((k.to_string(), val.trim().to_string())),
                // IPv6 off in this kernel or netns: nothing to carry.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    })
    .map_err(io(format!(
        "reading the forwarding sysctls of task {pid}'s netns"
    )))?;
    let ruleset = netlock::nft_run(&["list", "ruleset"], None, Some(&ns))?;
    Ok(NetConf { sysctls, ruleset })
}

/// The image bytes.
pub fn encode(c: &NetConf) -> Vec<u8> {
    // A derived Serialize of strings cannot fail.
    let body = serde_json::to_vec(c).unwrap_or_default();
    let mut out = format!(
        "{MAGIC} {VERSION} {:08x} {}\n",
        crc32fast::hash(&body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Parses image bytes, checking magic, version, length and checksum.
pub fn decode(data: &[u8]) -> Result<NetConf, Error> {
    let bad = |m: &str| Error::Corrupt(m.to_string());
    let nl = data
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let header = std::str::from_utf8(&data[..nl]).map_err(|_| bad("header is not text"))?;
    let body = &data[nl + 1..];
    let f: Vec<&str> = header.split(' ').collect();
    if f.len() != 4 || f[0] != MAGIC {
        return Err(bad("not an epcmig netconf image"));
    }
    if f[1] != VERSION.to_string() {
        return Err(Error::Corrupt(format!(
            "format version {} (this plugin reads {VERSION})",
            f[1]
        )));
    }
    let crc = u32::from_str_radix(f[2], 16).map_err(|_| bad("bad checksum field"))?;
    let len: usize = f[3].parse().map_err(|_| bad("bad length field"))?;
    if body.len() != len {
        return Err(Error::Corrupt(format!(
            "body is {} bytes, the header says {len} (truncated?)",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    serde_json::from_slice(body).map_err(|e| Error::Corrupt(e.to_string()))
}

pub fn write(dir: c_int, c: &NetConf) -> Result<usize, Error> {
    let bytes = encode(c);
    images::write(dir, IMAGE, &bytes).map_err(io(IMAGE))?;
    Ok(bytes.len())
}

/// The image, if the dump wrote one.
pub fn load(dir: c_int) -> Result<Option<NetConf>, Error> {
    match images::read(dir, IMAGE, MAX_IMAGE) {
        Ok(d) => decode(&d).map(Some),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(io(IMAGE)(e)),
    }
}

/// The tables of a ruleset, as "FAMILY NAME".
fn tables(ruleset: &str) -> BTreeSet<String> {
    ruleset
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("table")).then(|| {
                let fam = w.next().unwrap_or_default();
                let name = w.next().unwrap_or_default();
                format!("{fam} {name}")
            })
        })
        .collect()
}

/// Puts `c` into task `pid`'s netns: refuses a table the netns has
/// already, then loads the ruleset and sets the sysctls. On error nothing
/// it changed stays.
pub fn apply(pid: c_int, c: &NetConf) -> Result<Applied, Error> {
    let ns = netns_of(pid)?;
    let mut done = Applied::default();
    let ours = tables(&c.ruleset);
    if !ours.is_empty() {
        let there = tables(&netlock::nft_run(&["list", "tables"], None, Some(&ns))?);
        if let Some(t) = ours.intersection(&there).next() {
            return Err(Error::TableExists(t.clone()));
        }
        netlock::nft_run(&["-f", "-"], Some(&c.ruleset), Some(&ns))?;
        done.tables = ours.into_iter().collect();
    }
    let sysctls = c.sysctls.clone();
    let set = in_netns(&ns, move || {
        let mut old = Vec::new();
        for (k, v) in &sysctls {
            let p = format!("/proc/sys/{k}");
            let was = std::fs::read_to_string(&p)?.trim().to_string();
            if let Err(e) = std::fs::write(&p, v) {
                return Err(std::io::Error::new(e.kind(), format!("{k}={v}: {e}")));
            }
            old.push((k.clone(), was));
        }
        Ok(old)
    });
    match set {
        Ok(old) => {
            done.sysctls = old;
            Ok(done)
        }
        Err(e) => {
            undo(pid, done);
            Err(io(format!("setting the sysctls of task {pid}'s netns"))(e))
        }
    }
}

/// Takes back what [`apply`] did; what could not be undone, as messages.
pub fn undo(pid: c_int, a: Applied) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(ns) = netns_of(pid) else {
        return out;
    };
    for t in &a.tables {
        let script = format!("delete table {t}\n");
        if let Err(e) = netlock::nft_run(&["-f", "-"], Some(&script), Some(&ns)) {
            out.push(format!("removing table {t} again: {e}"));
        }
    }
    let sysctls = a.sysctls;
    if let Err(e) = in_netns(&ns, move || {
        for (k, v) in &sysctls {
            std::fs::write(format!("/proc/sys/{k}"), v)?;
        }
        Ok(())
    }) {
        out.push(format!("setting the sysctls back: {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NetConf {
        NetConf {
            sysctls: vec![("net/ipv4/ip_forward".into(), "1".into())],
            ruleset: "table inet nat {\n\tchain post {\n\t}\n}\ntable ip filter {\n}\n".into(),
        }
    }

    #[test]
    fn image_round_trips_and_damage_is_named() {
        let c = sample();
        let b = encode(&c);
        assert_eq!(decode(&b).expect("decode"), c);
        let e = decode(&b[..b.len() - 1]).expect_err("truncated");
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut flipped = b.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert!(decode(&flipped)
            .expect_err("flipped")
            .to_string()
            .contains("checksum"));
        let v2 = String::from_utf8_lossy(&b).replacen(" 1 ", " 2 ", 1);
        assert!(decode(v2.as_bytes())
            .expect_err("v2")
            .to_string()
            .contains("version 2"));
        assert!(decode(b"GTPSTATE").is_err());
        assert!(decode(b"").is_err());
    }

    #[test]
    fn tables_are_read_from_a_ruleset() {
        let t = tables(&sample().ruleset);
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec!["inet nat".to_string(), "ip filter".to_string()]
        );
    }
}
