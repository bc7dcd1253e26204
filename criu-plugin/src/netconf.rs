//! What an SPGW's user plane needs of its network namespace besides the
//! gtp devices, where CRIU does not carry it: the forwarding sysctls, the
//! nftables ruleset (the SGi masquerade) and any iptables-legacy
//! (x_tables) rules, which nft does not list.
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
/// 2 added the iptables-legacy rules; a version 1 image has none.
const VERSION: u32 = 2;
const VERSIONS_READ: &[&str] = &["1", "2"];
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
    #[error(
        "the restored network namespace already has {family} x_tables table {table} \
         (iptables-legacy), which the image carries too: refusing to merge rules into it"
    )]
    LegacyTableExists { family: String, table: String },
    #[error(
        "task {pid}'s netns has iptables-legacy ({family}) tables {tables}, and {tool} \
         failed: {why} (install Debian's iptables package to carry them)"
    )]
    LegacyTool {
        pid: c_int,
        family: &'static str,
        tables: String,
        tool: &'static str,
        why: String,
    },
    #[error(
        "task {pid}'s netns has arptables (legacy) tables {tables}, which the plugin does not \
         carry: failing rather than losing them"
    )]
    ArpTables { tables: String, pid: c_int },
}

/// An x_tables family iptables-legacy reaches, and its tools.
struct Legacy {
    family: &'static str,
    /// Under /proc/PID/net: the tables made in that netns.
    names: &'static str,
    save: &'static str,
    restore: &'static str,
}

const LEGACY: &[Legacy] = &[
    Legacy {
        family: "ip",
        names: "ip_tables_names",
        save: "iptables-legacy-save",
        restore: "iptables-legacy-restore",
    },
    Legacy {
        family: "ip6",
        names: "ip6_tables_names",
        save: "ip6tables-legacy-save",
        restore: "ip6tables-legacy-restore",
    },
];

/// The x_tables tables task `pid`'s netns has in `names` (none if the
/// kernel has no such family). Tables are made in a netns only when used.
fn legacy_tables(pid: c_int, names: &str) -> Result<Vec<String>, Error> {
    let path = format!("/proc/{pid}/net/{names}");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.split_whitespace().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path)(e)),
    }
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
    /// (family, `iptables-legacy-save` output) of each family with
    /// x_tables tables.
    #[serde(default)]
    pub legacy: Vec<(String, String)>,
}

/// What [`apply`] changed, to undo it.
#[derive(Debug, Default)]
pub struct Applied {
    tables: Vec<String>,
    sysctls: Vec<(String, String)>,
    /// (family, an iptables-legacy-restore script emptying what was loaded)
    legacy: Vec<(String, String)>,
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
    let arp = legacy_tables(pid, "arp_tables_names")?;
    if !arp.is_empty() {
        return Err(Error::ArpTables {
            tables: arp.join(", "),
            pid,
        });
    }
    let mut legacy = Vec::new();
    for l in LEGACY {
        let tables = legacy_tables(pid, l.names)?;
        if tables.is_empty() {
            continue;
        }
        let out = legacy_tool(pid, l, l.save, &tables, None, &ns)?;
        legacy.push((l.family.to_string(), out));
    }
    Ok(NetConf {
        sysctls,
        ruleset,
        legacy,
    })
}

/// Runs `tool` (one of `l`'s) in netns `ns` on `tables` of task `pid`'s
/// netns, with `stdin`; its output, or an error naming all of them.
fn legacy_tool(
    pid: c_int,
    l: &Legacy,
    tool: &'static str,
    tables: &[String],
    stdin: Option<&str>,
    ns: &OwnedFd,
) -> Result<String, Error> {
    let failed = |why: String| Error::LegacyTool {
        pid,
        family: l.family,
        tables: tables.join(", "),
        tool,
        why,
    };
    let out = netlock::tool_run(tool, &[], stdin, Some(ns)).map_err(|e| failed(e.to_string()))?;
    if !out.success {
        return Err(failed(out.stderr));
    }
    Ok(out.stdout)
}

/// The tables of an iptables-save output (its `*name` lines).
fn saved_tables(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(|t| t.trim().to_string())
        .collect()
}

/// An iptables-restore script that empties the tables of `save`: every
/// rule and user chain gone, built-in chains back to ACCEPT (what a table
/// made on first use has).
fn emptying_script(save: &str) -> String {
    let mut out = String::new();
    for l in save.lines() {
        if l.starts_with('*') {
            out.push_str(l.trim());
            out.push('\n');
        } else if let Some(chain) = l.strip_prefix(':') {
            let mut w = chain.split_whitespace();
            if let (Some(name), Some(policy)) = (w.next(), w.next()) {
                if policy != "-" {
                    out.push_str(&format!(":{name} ACCEPT [0:0]\n"));
                }
            }
        } else if l.trim() == "COMMIT" {
            out.push_str("COMMIT\n");
        }
    }
    out
}

/// The number of lines of rules the image carries (nft and legacy).
pub fn rule_lines(c: &NetConf) -> usize {
    c.ruleset.lines().count()
        + c.legacy
            .iter()
            .map(|(_, s)| s.lines().count())
            .sum::<usize>()
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
    if !VERSIONS_READ.contains(&f[1]) {
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
    if let Err(e) = apply_legacy(pid, &ns, c, &mut done) {
        undo(pid, done);
        return Err(e);
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

/// Loads the iptables-legacy rules of `c`, refusing a table the netns has
/// already; what it loaded goes to `done`.
fn apply_legacy(pid: c_int, ns: &OwnedFd, c: &NetConf, done: &mut Applied) -> Result<(), Error> {
    for (family, save) in &c.legacy {
        let l = LEGACY
            .iter()
            .find(|l| l.family == family)
            .ok_or_else(|| Error::Corrupt(format!("unknown x_tables family {family:?}")))?;
        let there = legacy_tables(pid, l.names)?;
        if let Some(t) = saved_tables(save).into_iter().find(|t| there.contains(t)) {
            return Err(Error::LegacyTableExists {
                family: family.clone(),
                table: t,
            });
        }
        legacy_tool(pid, l, l.restore, &saved_tables(save), Some(save), ns)?;
        done.legacy.push((family.clone(), emptying_script(save)));
    }
    Ok(())
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
    for (family, script) in &a.legacy {
        let Some(l) = LEGACY.iter().find(|l| l.family == family) else {
            continue;
        };
        match netlock::tool_run(l.restore, &[], Some(script), Some(&ns)) {
            Ok(o) if o.success => {}
            Ok(o) => out.push(format!(
                "emptying the {family} x_tables tables again: {}",
                o.stderr
            )),
            Err(e) => out.push(format!("emptying the {family} x_tables tables again: {e}")),
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
            legacy: vec![("ip".into(), LEGACY_SAVE.into())],
        }
    }

    const LEGACY_SAVE: &str = "# Generated by iptables-save v1.8.9 on Mon Dec  7 19:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:SGI - [0:0]
-A POSTROUTING -o sgi0 -j SGI
-A SGI -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [3:180]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [3:180]
-A FORWARD -i gtp0 -j ACCEPT
COMMIT
";

    #[test]
    fn legacy_tables_are_read_and_emptied() {
        assert_eq!(saved_tables(LEGACY_SAVE), vec!["nat", "filter"]);
        let e = emptying_script(LEGACY_SAVE);
        assert_eq!(
            e,
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n\
             :FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
        assert_eq!(rule_lines(&sample()), 6 + LEGACY_SAVE.lines().count());
    }

    #[test]
    fn version_1_images_are_read_without_legacy_rules() {
        let body = br#"{"sysctls":[["net/ipv4/ip_forward","1"]],"ruleset":""}"#;
        let mut img =
            format!("{MAGIC} 1 {:08x} {}\n", crc32fast::hash(body), body.len()).into_bytes();
        img.extend_from_slice(body);
        let c = decode(&img).expect("version 1");
        assert!(c.legacy.is_empty());
        assert_eq!(c.sysctls.len(), 1);
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
        let v3 = String::from_utf8_lossy(&b).replacen(" 2 ", " 3 ", 1);
        assert!(decode(v3.as_bytes())
            .expect_err("v3")
            .to_string()
            .contains("version 3"));
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
