//! The in-guest network: hosts A and B (where containers run and land)
//! and peer C, each a network namespace, cabled to one switch like
//! container hosts on a LAN:
//!
//! ```text
//!            netns epc-lan: bridge sw0
//!          /            |             \
//!   epc-a (host A)   epc-b (host B)   epc-c (peer C)
//!   br0 192.0.2.1    br0 192.0.2.2    eth0 192.0.2.3
//!     |                 (restored container's veth lands here)
//!   container netns (eth0 = service address, e.g. 192.0.2.10)
//! ```
//!
//! A container's veth hangs off its host's bridge, so its service address
//! moves with it from A to B (then announced with a gratuitous ARP).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

pub const LAN: &str = "epc-lan";
pub const HOST_A: &str = "epc-a";
pub const HOST_B: &str = "epc-b";
pub const PEER_C: &str = "epc-c";
pub const PREFIX: u8 = 24;

pub fn host_addr(ns: &str) -> Ipv4Addr {
    match ns {
        HOST_A => Ipv4Addr::new(192, 0, 2, 1),
        HOST_B => Ipv4Addr::new(192, 0, 2, 2),
        _ => Ipv4Addr::new(192, 0, 2, 3),
    }
}

/// The fixed MAC address of host `ns`'s bridge: locally administered,
/// ending in the last byte of the host's IPv4 address.
fn bridge_mac(ns: &str) -> String {
    format!("02:00:c0:00:02:{:02x}", host_addr(ns).octets()[3])
}

/// A host's IPv6 address (2001:db8::/64, documentation prefix).
pub fn host_addr6(ns: &str) -> std::net::Ipv6Addr {
    let last = match ns {
        HOST_A => 1,
        HOST_B => 2,
        _ => 3,
    };
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

/// Adds an address (`ADDR/PREFIX`) to `dev` in `ns`; IPv6 without DAD so
/// it is usable at once.
pub fn add_addr(ns: &str, dev: &str, cidr: &str) -> Result<()> {
    if cidr.contains(':') {
        ip(&["-n", ns, "addr", "add", cidr, "dev", dev, "nodad"])
    } else {
        ip(&["-n", ns, "addr", "add", cidr, "dev", dev])
    }
}

/// What the hosts `nss` and the switch know of each other: neighbour
/// caches, links with counters, TCP sockets and IP/TCP counters, the
/// switch's forwarding table and the kernel log's tail. For errors about
/// traffic between hosts that went missing.
pub fn link_report(nss: &[&str]) -> String {
    let run = |ns: Option<&str>, prog: &str, args: &[&str]| -> String {
        let cmd = match ns {
            Some(ns) => command_in(ns, prog),
            None => Ok(Command::new(prog)),
        };
        match cmd.and_then(|mut c| Ok(c.args(args).output()?)) {
            Ok(o) => format!(
                "$ {prog} {}{}\n{}{}",
                args.join(" "),
                ns.map(|n| format!("  (in {n})")).unwrap_or_default(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("$ {prog} {}: {e:#}\n", args.join(" ")),
        }
    };
    let mut out = String::from("state of the hosts' link:\n");
    for &ns in nss {
        out += &run(Some(ns), "ip", &["neigh", "show"]);
        out += &run(Some(ns), "ip", &["-s", "link", "show"]);
        out += &run(Some(ns), "ss", &["-tan"]);
        out += &run(Some(ns), "cat", &["/proc/net/snmp"]);
    }
    out += &run(None, "bridge", &["-n", LAN, "fdb", "show", "br", "sw0"]);
    out += &run(None, "sh", &["-c", "dmesg | tail -n 30"]);
    out
}

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// The fd of a named netns (`/run/netns/NAME`) or a path.
pub fn ns_file(ns: &str) -> Result<File> {
    let p = if ns.starts_with('/') {
        ns.to_string()
    } else {
        format!("/run/netns/{ns}")
    };
    File::open(&p).with_context(|| format!("opening netns {p}"))
}

/// Runs `f` on a thread that lives in netns `ns`; sockets it creates stay
/// in that netns wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let file = ns_file(ns)?;
    std::thread::spawn(move || {
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).context("setns")?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in netns panicked"))?
}

/// A command that will run in netns `ns` (only the netns changes; mount
/// namespace and the rest stay, unlike `ip netns exec`).
pub fn command_in(ns: &str, program: &str) -> Result<Command> {
    let file = ns_file(ns)?;
    let mut c = Command::new(program);
    // SAFETY: setns(2) on an fd opened before fork; async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(c)
}

/// The topology; torn down on drop.
pub struct Topology {
    extra: Vec<String>,
}

impl Topology {
    pub fn build() -> Result<Topology> {
        teardown(&[]);
        for ns in [LAN, HOST_A, HOST_B, PEER_C] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", LAN, "link", "add", "name", "sw0", "type", "bridge"])?;
        ip(&["-n", LAN, "link", "set", "sw0", "up"])?;
        for (ns, port) in [(HOST_A, "port-a"), (HOST_B, "port-b"), (PEER_C, "port-c")] {
            ip(&[
                "-n", LAN, "link", "add", "name", port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ])?;
            ip(&["-n", LAN, "link", "set", port, "master", "sw0", "up"])?;
            let addr = format!("{}/{PREFIX}", host_addr(ns));
            if ns == PEER_C {
                ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
                add_addr(ns, "eth0", &format!("{}/64", host_addr6(ns)))?;
                ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            } else {
                // A fixed address: a bridge without one takes the lowest
                // of its ports' and changes it as container veths come and
                // go. The other host's ARP cache then holds an address
                // nobody answers to, and the A-B link is silent until the
                // entry fails (a soak's image transfer timed out on it: A
                // cached B's bridge as a veth's MAC after that veth left).
                let mac = bridge_mac(ns);
                ip(&[
                    "-n", ns, "link", "add", "name", "br0", "address", &mac, "type", "bridge",
                ])?;
                ip(&["-n", ns, "link", "set", "eth0", "master", "br0", "up"])?;
                ip(&["-n", ns, "addr", "add", &addr, "dev", "br0"])?;
                add_addr(ns, "br0", &format!("{}/64", host_addr6(ns)))?;
                ip(&["-n", ns, "link", "set", "br0", "up"])?;
            }
        }
        Ok(Topology { extra: Vec::new() })
    }

    /// A container netns `name` on `host` with `eth0` = `addr`, its veth
    /// peer `outer` on the host's bridge. Returns the netns name.
    pub fn container(
        &mut self,
        host: &str,
        name: &str,
        outer: &str,
        addr: Ipv4Addr,
    ) -> Result<String> {
        self.container_with(host, name, outer, addr, false)
    }

    /// [`Topology::container`], locked (see [`lock`]) before it is cabled
    /// and takes the address: a container that is the target of a move
    /// must not answer the peer (with ARP, then ABORT) before the
    /// association is restored in it.
    pub fn container_locked(
        &mut self,
        host: &str,
        name: &str,
        outer: &str,
        addr: Ipv4Addr,
    ) -> Result<String> {
        self.container_with(host, name, outer, addr, true)
    }

    fn container_with(
        &mut self,
        host: &str,
        name: &str,
        outer: &str,
        addr: Ipv4Addr,
        locked: bool,
    ) -> Result<String> {
        let ns = format!("epc-ctr-{name}");
        ip(&["netns", "add", &ns])?;
        self.extra.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        if locked {
            lock(&ns)?;
        }
        ip(&[
            "-n", host, "link", "add", "name", outer, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ])?;
        ip(&["-n", host, "link", "set", outer, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/{PREFIX}"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(ns)
    }
}

impl Topology {
    /// Destroys a container netns made by [`Topology::container`] (its
    /// veth goes with it).
    pub fn remove_container(&mut self, ns: &str) -> Result<()> {
        // Unplugged first, while its lock holds: the netns itself goes
        // away asynchronously, and on the way its nftables lock can be
        // gone before its devices and SCTP are, long enough to answer a
        // peer's packet with an ABORT.
        ip(&["-n", ns, "link", "del", "eth0"])?;
        ip(&["netns", "del", ns])?;
        self.extra.retain(|n| n != ns);
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        teardown(&extra);
    }
}

fn teardown(extra: &[&str]) {
    for ns in extra.iter().copied().chain([LAN, HOST_A, HOST_B, PEER_C]) {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
}

/// Announces that `addr` now lives behind `dev` in netns `ns` (gratuitous
/// ARP), as an orchestrator does after moving a service address.
pub fn announce(ns: &str, dev: &str, addr: Ipv4Addr) -> Result<()> {
    let st = command_in(ns, "arping")?
        .args(["-q", "-U", "-c", "1", "-w", "1", "-I", dev])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        // It may outlive the netns it announces into; its complaint then
        // is noise.
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running arping")?;
    // Don't wait for arping's reply timeout; reap it in the background.
    std::thread::spawn(move || {
        let mut st = st;
        let _ = st.wait();
    });
    Ok(())
}

/// Drops every packet entering netns `ns` (as CRIU's network lock does), so
/// a host that holds an address but not yet (or no longer) the association
/// does not answer the peer with an ABORT.
pub fn lock(ns: &str) -> Result<()> {
    nft(ns, "add table inet epcmig_lock\nadd chain inet epcmig_lock input { type filter hook input priority -300; policy drop; }\n")
}

/// Removes [`lock`].
pub fn unlock(ns: &str) -> Result<()> {
    nft(ns, "delete table inet epcmig_lock\n")
}

fn nft(ns: &str, script: &str) -> Result<()> {
    use std::io::Write;
    let mut child = command_in(ns, "nft")?
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!("nft in {ns}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}
