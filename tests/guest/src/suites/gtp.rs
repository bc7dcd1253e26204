//! gtp-state in the guest: an SPGW netns with gtp0 (role ggsn) and 1,000
//! PDP contexts (GTPv1 IPv4, GTPv1 IPv6, GTPv0), an eNB on peer C with a
//! gtp device in role sgsn and the UEs behind it, an SGi host behind the
//! SPGW (masquerade on SGi). UE traffic flows; the SPGW's gtp state is
//! captured, its netns destroyed, a new one takes over its addresses and
//! the state is restored there; every tunnel must carry traffic again and
//! the re-captured table must equal the original.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use gtp_state::{
    Device, Error, FdOwner, FoundBy, GtpSocket, GtpState, Install, Netns, Pdp, RestoreOptions,
    Role, SocketSource, Sockets, SocketsFound, Tunnel,
};

use crate::bench::Figure;
use crate::net::{self, ip, Topology, HOST_A, HOST_B, PEER_C};

pub(crate) const SGI_NS: &str = "epc-sgi";
pub(crate) const SPGW_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The SPGW's address on the SGi LAN (sgi0).
pub(crate) const SGI_SPGW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ENB_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const SGI_HOST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SGI_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 2);
const ECHO_PORT: u16 = 7777;
pub(crate) const GTP0_INDEX: u32 = 4242;
pub(crate) const N_UES: usize = 1000;

/// One UE: the SPGW's context, and the address the UE sends from.
#[derive(Clone, Copy)]
pub(crate) struct Ue {
    pub(crate) spgw: Pdp,
    addr: IpAddr,
}

impl Ue {
    /// The eNB's mirror of the SPGW context.
    fn enb(&self) -> Pdp {
        Pdp {
            tunnel: match self.spgw.tunnel {
                Tunnel::V1 { i_tei, o_tei } => Tunnel::V1 {
                    i_tei: o_tei,
                    o_tei: i_tei,
                },
                v0 => v0,
            },
            peer: IpAddr::V4(SPGW_ADDR),
            ms: self.spgw.ms,
        }
    }
}

/// `n` UEs: k%3 == 0 GTPv1 IPv4, 1 GTPv1 IPv6, 2 GTPv0 IPv4.
pub(crate) fn ues(n: usize) -> Vec<Ue> {
    (0..n as u32)
        .map(|k| {
            let peer = IpAddr::V4(ENB_ADDR);
            match k % 3 {
                0 => {
                    let a = IpAddr::V4(Ipv4Addr::from(0x0a2d_0000 + k + 1));
                    Ue {
                        spgw: Pdp {
                            tunnel: Tunnel::V1 {
                                i_tei: 0x0010_0000 + k,
                                o_tei: 0x0020_0000 + k,
                            },
                            peer,
                            ms: a,
                        },
                        addr: a,
                    }
                }
                1 => {
                    let hi = (k >> 16) as u16;
                    let lo = k as u16;
                    Ue {
                        spgw: Pdp {
                            tunnel: Tunnel::V1 {
                                i_tei: 0x0010_0000 + k,
                                o_tei: 0x0020_0000 + k,
                            },
                            peer,
                            ms: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45 + hi, lo, 0, 0, 0, 0)),
                        },
                        addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45 + hi, lo, 0, 0, 0, 1)),
                    }
                }
                _ => {
                    let a = IpAddr::V4(Ipv4Addr::from(0x0a2f_0000 + k + 1));
                    Ue {
                        spgw: Pdp {
                            tunnel: Tunnel::V0 {
                                tid: 0x1000_0000_0000 + u64::from(k),
                                flow: k as u16,
                            },
                            peer,
                            ms: a,
                        },
                        addr: a,
                    }
                }
            }
        })
        .collect()
}

fn sh_in(ns: &str, program: &str, args: &[&str]) -> Result<()> {
    let o = net::command_in(ns, program)?
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !o.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn ns_path(ns: &str) -> Netns {
    Netns::named(ns)
}

/// The bridge of the SGi LAN on hosts A and B, where an SPGW container's
/// sgi0 is plugged (CRIU's `--external veth[sgi0]:OUTER@sgi-br` plugs a
/// restored one in as it makes the link, before the tasks run).
pub(crate) const SGI_BRIDGE: &str = "sgi-br";

/// The SGi host: a netns with a UDP echo server on a LAN it shares with
/// hosts A and B (its bridge holds 198.51.100.2 and 2001:db8:51::2, a
/// link to each host's [`SGI_BRIDGE`]), as an operator's SGi network
/// reaches every host a PGW may run on. Call after [`Topology::build`].
pub(crate) fn sgi_host() -> Result<()> {
    let _ = ip(&["netns", "del", SGI_NS]);
    ip(&["netns", "add", SGI_NS])?;
    ip(&["-n", SGI_NS, "link", "set", "lo", "up"])?;
    // A fixed MAC: a bridge takes its lowest port's otherwise.
    ip(&[
        "-n",
        SGI_NS,
        "link",
        "add",
        SGI_BRIDGE,
        "address",
        "02:00:c6:33:64:02",
        "type",
        "bridge",
    ])?;
    sgi_addrs(SGI_NS, SGI_BRIDGE, 2)?;
    ip(&["-n", SGI_NS, "link", "set", SGI_BRIDGE, "up"])?;
    for (host, port) in [(net::HOST_A, "sgi-a"), (net::HOST_B, "sgi-b")] {
        let _ = ip(&["-n", host, "link", "del", SGI_BRIDGE]);
        ip(&["-n", host, "link", "add", SGI_BRIDGE, "type", "bridge"])?;
        ip(&["-n", host, "link", "set", SGI_BRIDGE, "up"])?;
        ip(&[
            "-n", host, "link", "add", "sgi-up", "type", "veth", "peer", "name", port, "netns",
            SGI_NS,
        ])?;
        ip(&[
            "-n", host, "link", "set", "sgi-up", "master", SGI_BRIDGE, "up",
        ])?;
        ip(&[
            "-n", SGI_NS, "link", "set", port, "master", SGI_BRIDGE, "up",
        ])?;
    }
    Ok(())
}

/// Cables SPGW netns `spgw` on `host` to the SGi LAN (sgi0 198.51.100.1
/// and 2001:db8:51::1, its peer `outer` on the host's [`SGI_BRIDGE`]),
/// forwarding on, masquerade out of sgi0.
pub(crate) fn cable_spgw(spgw: &str, host: &str, outer: &str) -> Result<()> {
    cable_sgi_link(spgw, host, outer)?;
    spgw_forwarding(spgw)
}

/// The SGi link of [`cable_spgw`] alone: what a container runtime makes
/// (a second network), not the SPGW's forwarding and masquerade.
pub(crate) fn cable_sgi_link(spgw: &str, host: &str, outer: &str) -> Result<()> {
    ip(&[
        "-n", spgw, "link", "add", "name", "sgi0", "type", "veth", "peer", "name", outer, "netns",
        host,
    ])?;
    ip(&["-n", host, "link", "set", outer, "master", SGI_BRIDGE, "up"])?;
    sgi_addrs(spgw, "sgi0", 1)?;
    ip(&["-n", spgw, "link", "set", "sgi0", "up"])
}

/// Host `host` of the SGi LAN (1: the SPGW, 2: the SGi host) on `dev` in
/// `ns`: 198.51.100.`host`/24 and 2001:db8:51::`host`/64 (no DAD: the
/// address is in use the moment it is set).
fn sgi_addrs(ns: &str, dev: &str, host: u8) -> Result<()> {
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("198.51.100.{host}/24"),
        "dev",
        dev,
    ])?;
    let v6 = format!("2001:db8:51::{host}/64");
    ip(&["-n", ns, "addr", "add", &v6, "dev", dev, "nodad"])
}

/// An SGi link made anew (by a runtime) has a new MAC address: the SGi
/// host forgets the old one, as a gratuitous ARP and an unsolicited
/// neighbour advertisement would make it.
pub(crate) fn sgi_host_forgets_the_spgw() -> Result<()> {
    ip(&["-n", SGI_NS, "neigh", "flush", "dev", SGI_BRIDGE])
}

/// The SPGW's own netns settings: forwarding on, masquerade out of sgi0.
pub(crate) fn spgw_forwarding(spgw: &str) -> Result<()> {
    sh_in(spgw, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    sh_in(spgw, "sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"])?;
    let script = "/tmp/gtp-nat.nft";
    std::fs::write(
        script,
        "table inet nat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname \"sgi0\" masquerade\n }\n}\n",
    )?;
    sh_in(spgw, "nft", &["-f", script])?;
    Ok(())
}

/// The eNB on peer C: gtp1 in role sgsn, the UEs' addresses local, the
/// SGi networks routed into the tunnel, and the mirror contexts.
pub(crate) fn enb(ues: &[Ue]) -> Result<()> {
    ip(&[
        "-n", PEER_C, "link", "add", "gtp1", "type", "gtp", "role", "sgsn", "hsize", "4096",
    ])?;
    ip(&["-n", PEER_C, "link", "set", "gtp1", "up"])?;
    for r in ["10.45.0.0/16", "10.47.0.0/16"] {
        ip(&["-n", PEER_C, "route", "add", "local", r, "dev", "lo"])?;
    }
    ip(&[
        "-n",
        PEER_C,
        "-6",
        "route",
        "add",
        "local",
        "2001:db8:45::/48",
        "dev",
        "lo",
    ])?;
    // Bind to UE addresses covered by the local routes (IPv4 allows it
    // already; IPv6 needs non-local bind).
    sh_in(PEER_C, "sysctl", &["-qw", "net.ipv6.ip_nonlocal_bind=1"])?;
    ip(&[
        "-n",
        PEER_C,
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "gtp1",
    ])?;
    ip(&[
        "-n",
        PEER_C,
        "-6",
        "route",
        "add",
        "2001:db8:51::/64",
        "dev",
        "gtp1",
    ])?;
    let st = gtp_state::capture(&ns_path(PEER_C), "gtp1").context("capturing the eNB's gtp1")?;
    let pdps: Vec<Pdp> = ues.iter().map(Ue::enb).collect();
    gtp_state::add_pdps(
        &ns_path(PEER_C),
        st.device.ifindex,
        &pdps,
        Install::default(),
    )
    .context("adding the eNB's contexts")?;
    Ok(())
}

/// The SPGW's routes and address on gtp0 (the UE pools).
pub(crate) fn spgw_gtp_routes(spgw: &str) -> Result<()> {
    ip(&["-n", spgw, "addr", "add", "10.46.255.254/32", "dev", "gtp0"])?;
    ip(&["-n", spgw, "link", "set", "gtp0", "up"])?;
    ip(&["-n", spgw, "route", "add", "10.45.0.0/16", "dev", "gtp0"])?;
    ip(&["-n", spgw, "route", "add", "10.47.0.0/16", "dev", "gtp0"])?;
    ip(&[
        "-n",
        spgw,
        "-6",
        "route",
        "add",
        "2001:db8:45::/48",
        "dev",
        "gtp0",
    ])?;
    Ok(())
}

/// A UDP echo server in the SGi host until dropped.
pub(crate) struct Echo {
    stop: Arc<AtomicBool>,
    pub(crate) count: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    pub(crate) fn start() -> Result<Echo> {
        let file = net::ns_file(SGI_NS)?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (stop.clone(), count.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let sock = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(anyhow::Error::from)
                .and_then(|_| {
                    // [::]:7777, dual stack.
                    UdpSocket::bind(SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                        ECHO_PORT,
                    ))
                    .map_err(anyhow::Error::from)
                });
            let sock = match sock {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    c2.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        rx.recv().context("echo server thread")??;
        Ok(Echo {
            stop,
            count,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sgi_for(a: &IpAddr) -> SocketAddr {
    match a {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(SGI_HOST4), ECHO_PORT),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(SGI_HOST6), ECHO_PORT),
    }
}

/// Sends one UDP datagram from every UE address (through the eNB's
/// tunnel, its TEID chosen by the UE address) to the SGi echo server and
/// waits for the echo (back through the SPGW's context for that UE).
/// Returns the UEs that never got an answer after `rounds` tries.
pub(crate) fn udp_per_ue(ues: &[Ue], rounds: usize) -> Result<Vec<usize>> {
    let ues: Vec<Ue> = ues.to_vec();
    net::in_netns(PEER_C, move || {
        let mut missing: Vec<usize> = (0..ues.len()).collect();
        for _ in 0..rounds {
            let mut still = Vec::new();
            for chunk in missing.chunks(200) {
                let mut socks = Vec::with_capacity(chunk.len());
                for &k in chunk {
                    let s = UdpSocket::bind(SocketAddr::new(ues[k].addr, 0))
                        .with_context(|| format!("binding UE {}", ues[k].addr))?;
                    s.send_to(format!("ue {k}").as_bytes(), sgi_for(&ues[k].addr))
                        .with_context(|| format!("sending from UE {}", ues[k].addr))?;
                    socks.push((k, s));
                }
                let deadline = Instant::now() + Duration::from_secs(3);
                for (k, s) in socks {
                    let left = deadline.saturating_duration_since(Instant::now());
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                    let mut buf = [0u8; 64];
                    let want = format!("ue {k}");
                    match s.recv(&mut buf) {
                        Ok(n) if &buf[..n] == want.as_bytes() => {}
                        _ => still.push(k),
                    }
                }
            }
            missing = still;
            if missing.is_empty() {
                break;
            }
        }
        Ok(missing)
    })
}

/// Pings the SGi host from a sample of UE addresses, all at once.
fn ping_sample(ues: &[Ue], n: usize) -> Result<()> {
    let step = (ues.len() / n).max(1);
    let mut kids = Vec::new();
    for (k, ue) in ues.iter().enumerate().step_by(step).take(n) {
        let dst = sgi_for(&ue.addr).ip().to_string();
        let mut c = net::command_in(PEER_C, "ping")?;
        if ue.addr.is_ipv6() {
            c.arg("-6");
        }
        c.args(["-c", "2", "-i", "0.3", "-W", "5", "-I"])
            .arg(ue.addr.to_string())
            .arg(&dst)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        kids.push((k, ue.addr, c.spawn().context("spawning ping")?));
    }
    let mut failed = Vec::new();
    let total = kids.len();
    for (k, a, mut c) in kids {
        if !c.wait()?.success() {
            failed.push(format!("{k} ({a})"));
        }
    }
    ensure!(
        failed.is_empty(),
        "ping failed from {} of {total} UEs: {}",
        failed.len(),
        failed.join(", ")
    );
    println!("  ping: {total} sampled UEs reach the SGi host");
    Ok(())
}

/// What a UE's UDP traffic saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UeStream {
    pub sent: usize,
    pub echoed: usize,
    /// Longest time without an echo to a new flow (a datagram from a new
    /// source port): the UE's service interruption.
    pub max_gap: Duration,
    /// Whether a flow that existed before (one socket all along) got
    /// echoes again before the end: its conntrack entry must survive the
    /// move too (the SGi masquerade).
    pub old_flow_recovered: bool,
    /// When the longest gap began (the last echo before it) and ended.
    pub gap_at: Option<(Instant, Instant)>,
}

/// UDP traffic from one UE while `f` runs (a datagram every ~10 ms, from
/// a new source port each time, and one long-lived flow beside), and
/// after it until the new flows get echoes again (at most 20 s), so that
/// the longest gap covers the whole interruption.
pub(crate) fn with_stream<T>(ue: Ue, f: impl FnOnce() -> Result<T>) -> Result<(T, UeStream)> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || -> Result<UeStream> {
        let file = net::ns_file(PEER_C)?;
        use std::os::fd::AsFd;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        let old = UdpSocket::bind(SocketAddr::new(ue.addr, 0))?;
        old.set_nonblocking(true)?;
        let mut st = UeStream::default();
        let mut buf = [0u8; 64];
        let mut last = Instant::now();
        let (mut stopped_at, mut old_last) = (None, None);
        loop {
            let stopping = s2.load(Ordering::Relaxed) && st.sent >= 20;
            if stopping {
                let at = *stopped_at.get_or_insert_with(Instant::now);
                // Done once an echo came after the stop, or given up.
                if last >= at || at.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
            let s = UdpSocket::bind(SocketAddr::new(ue.addr, 0))?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            s.send_to(format!("stream {}", st.sent).as_bytes(), sgi_for(&ue.addr))?;
            let _ = old.send_to(b"old flow", sgi_for(&ue.addr));
            st.sent += 1;
            if s.recv(&mut buf).is_ok() {
                st.echoed += 1;
                let now = Instant::now();
                if now - last > st.max_gap {
                    st.max_gap = now - last;
                    st.gap_at = Some((last, now));
                }
                last = now;
            }
            while old.recv(&mut buf).is_ok() {
                old_last = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        st.max_gap = st.max_gap.max(last.elapsed().min(Duration::from_secs(20)));
        // Give the old flow the same chance after the stop.
        let at = stopped_at.unwrap_or_else(Instant::now);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !old_last.is_some_and(|t| t >= at) && Instant::now() < deadline {
            let _ = old.send_to(b"old flow", sgi_for(&ue.addr));
            std::thread::sleep(Duration::from_millis(100));
            while old.recv(&mut buf).is_ok() {
                old_last = Some(Instant::now());
            }
        }
        st.old_flow_recovered = old_last.is_some_and(|t| t >= at);
        Ok(st)
    });
    let r = f();
    stop.store(true, Ordering::Relaxed);
    let st = h
        .join()
        .map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
    Ok((r?, st))
}

pub(crate) fn check_traffic(ues: &[Ue], what: &str) -> Result<()> {
    let t = Instant::now();
    let missing = udp_per_ue(ues, 3)?;
    ensure!(
        missing.is_empty(),
        "{what}: {} of {} tunnels carried no UDP round trip (first: {})",
        missing.len(),
        ues.len(),
        missing
            .iter()
            .take(10)
            .map(|k| ues[*k].spgw.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "  {what}: UDP round trip through every one of {} tunnels ({:.2}s)",
        ues.len(),
        t.elapsed().as_secs_f64()
    );
    ping_sample(ues, 60)
}

/// Sorts what the kernel dumps in no particular order.
pub(crate) fn normalised(mut s: GtpState) -> GtpState {
    s.pdps.sort();
    s.addresses.sort_by_key(|a| format!("{a:?}"));
    s.routes.sort_by_key(|r| format!("{r:?}"));
    s
}

pub(crate) fn compare(a: &GtpState, b: &GtpState) -> Result<()> {
    let (a, b) = (normalised(a.clone()), normalised(b.clone()));
    ensure!(
        a.device == b.device,
        "device differs: {:?} vs {:?}",
        a.device,
        b.device
    );
    ensure!(
        a.sockets == b.sockets,
        "sockets differ: {:?} vs {:?}",
        a.sockets,
        b.sockets
    );
    ensure!(
        a.addresses == b.addresses,
        "addresses differ: {:?} vs {:?}",
        a.addresses,
        b.addresses
    );
    ensure!(
        a.routes == b.routes,
        "routes differ: {:?} vs {:?}",
        a.routes,
        b.routes
    );
    ensure!(
        a.pdps.len() == b.pdps.len(),
        "{} vs {} PDP contexts",
        a.pdps.len(),
        b.pdps.len()
    );
    for (x, y) in a.pdps.iter().zip(&b.pdps) {
        ensure!(x == y, "PDP context differs: {x} vs {y}");
    }
    Ok(())
}

/// The gtp-state CLI of the same build (debug or release) as this binary.
fn gtp_bin() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("gtp-state")))
        .unwrap_or_default()
}

/// Runs the CLI; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> Result<(bool, String, String)> {
    let o = Command::new(gtp_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", gtp_bin().display()))?;
    Ok((
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

/// UDP sockets bound to 3386 and 2152 in netns `ns`, as an SPGW process
/// (OAI, OsmoGGSN via libgtpnl) holds them.
fn process_sockets(ns: &str) -> Result<(OwnedFd, OwnedFd)> {
    net::in_netns(ns, || {
        let s0 = UdpSocket::bind("0.0.0.0:3386").context("binding 3386")?;
        let s1 = UdpSocket::bind("0.0.0.0:2152").context("binding 2152")?;
        Ok((OwnedFd::from(s0), OwnedFd::from(s1)))
    })
}

/// What capture found about the sockets: found `by` as expected, both
/// sockets named, and owned by this process's fds `held` (process-owned
/// sockets) or by no process (kernel-created ones).
fn check_sockets_found(
    f: &SocketsFound,
    by: FoundBy,
    held: Option<&(OwnedFd, OwnedFd)>,
) -> Result<()> {
    ensure!(f.by == by, "sockets found by {:?}, not {by:?}", f.by);
    ensure!(f.sockets.len() == 2, "sockets found: {f:?}");
    let me = std::process::id();
    for id in &f.sockets {
        let want = held.map(|(s0, s1)| {
            let fd = match id.which {
                GtpSocket::Gtp0 => s0.as_raw_fd(),
                GtpSocket::Gtp1u => s1.as_raw_fd(),
            };
            FdOwner {
                pid: me,
                fd: fd as u32,
            }
        });
        ensure!(
            id.owner == want,
            "{:?} socket (inode {}): owner {:?}, expected {want:?}",
            id.which,
            id.inode,
            id.owner
        );
    }
    println!("  sockets found by {by:?}: {:?}", f.sockets);
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Kernel,
    Process,
}

fn migrate(mode: Mode) -> Result<()> {
    let mut topo = Topology::build()?;
    sgi_host()?;
    let _sgi = scopeguard(SGI_NS);
    let ues = ues(N_UES);
    let spgw = topo.container(HOST_A, "spgw", "veth-spgw", SPGW_ADDR)?;
    cable_spgw(&spgw, HOST_A, "sgi-spgw")?;

    // The SPGW's gtp0, made as the SPGW would.
    let mut held = None;
    match mode {
        Mode::Kernel => {
            // iproute2 creates it with IFLA_GTP_CREATE_SOCKETS.
            ip(&[
                "-n",
                &spgw,
                "link",
                "add",
                "gtp0",
                "index",
                &GTP0_INDEX.to_string(),
                "type",
                "gtp",
                "role",
                "ggsn",
                "hsize",
                "2048",
                "restart_count",
                "7",
            ])?;
        }
        Mode::Process => {
            let (s0, s1) = process_sockets(&spgw)?;
            device_on_fds(&ns_path(&spgw), &s0, &s1, 2048, 7)
                .context("creating gtp0 on process-owned sockets")?;
            held = Some((s0, s1));
        }
    }
    spgw_gtp_routes(&spgw)?;
    let pdps: Vec<Pdp> = ues.iter().map(|u| u.spgw).collect();
    gtp_state::add_pdps(&ns_path(&spgw), GTP0_INDEX, &pdps, Install::default())
        .context("adding contexts")?;
    enb(&ues)?;
    let _echo = Echo::start()?;
    check_traffic(&ues, "before")?;

    // Capture while a UE streams.
    let file = "/tmp/gtp-spgw.bin";
    let t = Instant::now();
    let (orig, stream) = with_stream(ues[0], || {
        if mode == Mode::Kernel {
            let (ok, _, err) = cli(&["capture", "--netns", &spgw, "--dev", "gtp0", "-o", file])?;
            ensure!(ok, "gtp-state capture failed: {err}");
            print!("  cli: {err}");
            Ok(gtp_state::format::decode(&std::fs::read(file)?)?)
        } else {
            let st = gtp_state::capture(&ns_path(&spgw), "gtp0")?;
            std::fs::write(file, gtp_state::format::encode(&st)?)?;
            Ok(st)
        }
    })?;
    println!(
        "  captured {} contexts in {:.3}s ({} bytes, sockets {:?}); stream during capture: {}/{} echoed",
        orig.pdps.len(),
        t.elapsed().as_secs_f64(),
        std::fs::metadata(file)?.len(),
        orig.sockets,
        stream.echoed,
        stream.sent
    );
    ensure!(
        stream.echoed > 0,
        "the UDP stream saw no echo during capture"
    );
    ensure!(
        orig.pdps.len() == N_UES,
        "captured {} contexts",
        orig.pdps.len()
    );
    ensure!(
        orig.device.role == Role::Ggsn
            && orig.device.hash_size == 2048
            && orig.device.restart_count == 7
    );
    check_sockets_found(&orig.sockets_found, FoundBy::Kernel, held.as_ref())?;
    match (mode, &orig.sockets) {
        (Mode::Kernel, Sockets::Kernel { local: None }) => {}
        (
            Mode::Process,
            Sockets::Process {
                gtp0: Some(a),
                gtp1u: Some(b),
            },
        ) if a.port() == 3386 && b.port() == 2152 => {}
        (_, s) => bail!("socket mode not recognised: {s:?}"),
    }
    ensure!(orig.routes.len() == 3, "captured routes: {:?}", orig.routes);
    ensure!(
        orig.addresses.len() == 1,
        "captured addresses: {:?}",
        orig.addresses
    );

    // The SPGW goes away (its process's sockets with it).
    drop(held);
    if mode == Mode::Process {
        // Each PDP context holds a reference on its process-owned socket,
        // and the socket on its netns: a netns whose gtp device still has
        // contexts on such sockets is never freed (6.12). The source side
        // must delete the device (as an orchestrator would after the dump).
        gtp_state::delete_device(&ns_path(&spgw), "gtp0")?;
    }
    topo.remove_container(&spgw)?;
    let spgw2 = topo.container(HOST_B, "spgw2", "veth-spgw2", SPGW_ADDR)?;
    cable_spgw(&spgw2, HOST_B, "sgi-spgw2")?;
    sgi_host_forgets_the_spgw()?;
    net::announce(&spgw2, "eth0", SPGW_ADDR)?;
    let _ = ip(&["-n", PEER_C, "neigh", "flush", "dev", "eth0"]);

    let t = Instant::now();
    let mut held2 = None;
    match mode {
        Mode::Kernel => {
            let (ok, _, err) = cli(&["restore", "--netns", &spgw2, "-i", file])?;
            ensure!(ok, "gtp-state restore failed: {err}");
        }
        Mode::Process => {
            let (s0, s1) = process_sockets(&spgw2)?;
            let opts = RestoreOptions {
                sockets: SocketSource::Fds {
                    fd0: Some(s0.as_raw_fd()),
                    fd1: Some(s1.as_raw_fd()),
                },
                ..Default::default()
            };
            let back = gtp_state::format::decode(&std::fs::read(file)?)?;
            gtp_state::restore(&ns_path(&spgw2), &back, &opts)?;
            held2 = Some((s0, s1));
        }
    }
    println!("  restored in {:.3}s", t.elapsed().as_secs_f64());
    let again = gtp_state::capture(&ns_path(&spgw2), "gtp0")?;
    compare(&orig, &again)?;
    println!(
        "  re-captured table equals the original field for field ({} contexts)",
        again.pdps.len()
    );
    check_traffic(&ues, "after restore")?;
    println!(
        "  the SGi echo server answered {} datagrams in all",
        _echo.count.load(Ordering::Relaxed)
    );
    drop(held2);
    Ok(())
}

/// The SPGW's gtp0 as made before any context: role ggsn, our hash size
/// and restart count.
pub(crate) fn gtp0_device(hash_size: u32, restart_count: u8) -> GtpState {
    GtpState {
        device: Device {
            name: "gtp0".into(),
            ifindex: GTP0_INDEX,
            role: Role::Ggsn,
            hash_size,
            restart_count,
            mtu: 1500,
            up: false,
        },
        sockets: Sockets::Process {
            gtp0: None,
            gtp1u: None,
        },
        sockets_found: Default::default(),
        addresses: vec![],
        routes: vec![],
        pdps: vec![],
    }
}

/// A gtp device `gtp0` in `ns` on the given sockets of this process.
pub(crate) fn device_on_fds(
    ns: &Netns,
    s0: &OwnedFd,
    s1: &OwnedFd,
    hash_size: u32,
    restart_count: u8,
) -> Result<()> {
    let opts = RestoreOptions {
        sockets: SocketSource::Fds {
            fd0: Some(s0.as_raw_fd()),
            fd1: Some(s1.as_raw_fd()),
        },
        ..Default::default()
    };
    gtp_state::restore(ns, &gtp0_device(hash_size, restart_count), &opts)?;
    Ok(())
}

/// A netns with lo up, removed on drop.
fn scratch_ns(ns: &'static str) -> Result<NsGuard> {
    let _ = ip(&["netns", "del", ns]);
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    Ok(NsGuard(ns))
}

/// With the kernel naming a device's sockets, capture finds a process's
/// sockets on ports other than the GTP ones, and is not fooled by a
/// socket of the same process on port 2152 that the device does not use
/// (the port guess would take that one).
pub fn gtp_sockets_named_by_kernel() -> Result<()> {
    let ns = "epc-gtp-socks";
    let _g = scratch_ns(ns)?;
    let (s0, s1, decoy) = net::in_netns(ns, || {
        let s0 = UdpSocket::bind("127.0.0.1:40386").context("binding 40386")?;
        let s1 = UdpSocket::bind("127.0.0.1:40152").context("binding 40152")?;
        let decoy = UdpSocket::bind("0.0.0.0:2152").context("binding 2152")?;
        Ok((OwnedFd::from(s0), OwnedFd::from(s1), decoy))
    })?;
    device_on_fds(&ns_path(ns), &s0, &s1, 1024, 0)?;
    let held = (s0, s1);
    let st = gtp_state::capture(&ns_path(ns), "gtp0")?;
    check_sockets_found(&st.sockets_found, FoundBy::Kernel, Some(&held))?;
    ensure!(
        st.sockets
            == Sockets::Process {
                gtp0: Some("127.0.0.1:40386".parse()?),
                gtp1u: Some("127.0.0.1:40152".parse()?),
            },
        "sockets: {:?}",
        st.sockets
    );
    drop(decoy);
    gtp_state::delete_device(&ns_path(ns), "gtp0")?;
    Ok(())
}

/// On a kernel that does not name a device's sockets (stock 6.12),
/// capture falls back to the GTP ports, in both socket modes; restore
/// falls back from GTP_CMD_NEWPDPS to batched GTP_CMD_NEWPDP.
pub fn stock_gtp_sockets_guessed() -> Result<()> {
    let ns = "epc-gtp-stock";
    let _g = scratch_ns(ns)?;
    ip(&[
        "-n", ns, "link", "add", "gtp0", "type", "gtp", "role", "ggsn",
    ])?;
    let st = gtp_state::capture(&ns_path(ns), "gtp0")?;
    check_sockets_found(&st.sockets_found, FoundBy::Ports, None)?;
    ensure!(
        st.sockets == Sockets::Kernel { local: None },
        "kernel-created sockets taken for {:?}",
        st.sockets
    );
    gtp_state::delete_device(&ns_path(ns), "gtp0")?;

    // No GTP_CMD_NEWPDPS: the default restore falls back to batches of
    // GTP_CMD_NEWPDP.
    ensure!(
        !gtp_state::kernel_has_bulk_install(&ns_path(ns))?,
        "a stock kernel lists GTP_CMD_NEWPDPS"
    );
    let small = small_state();
    gtp_state::restore(&ns_path(ns), &small, &RestoreOptions::default())
        .context("restore on a stock kernel")?;
    let back = gtp_state::capture(&ns_path(ns), "gtp0")?;
    ensure!(
        back.pdps.len() == small.pdps.len(),
        "restored {} of {} contexts",
        back.pdps.len(),
        small.pdps.len()
    );
    gtp_state::delete_device(&ns_path(ns), "gtp0")?;

    let (s0, s1) = process_sockets(ns)?;
    device_on_fds(&ns_path(ns), &s0, &s1, 1024, 0)?;
    let held = (s0, s1);
    let st = gtp_state::capture(&ns_path(ns), "gtp0")?;
    check_sockets_found(&st.sockets_found, FoundBy::Ports, Some(&held))?;
    ensure!(
        matches!(
            st.sockets,
            Sockets::Process {
                gtp0: Some(a),
                gtp1u: Some(b)
            } if a.port() == 3386 && b.port() == 2152
        ),
        "process-owned sockets taken for {:?}",
        st.sockets
    );
    gtp_state::delete_device(&ns_path(ns), "gtp0")?;
    Ok(())
}

/// GTP_CMD_NEWPDPS (kernel-patches/gtp/0005): the kernel lists it, a restore
/// through it equals one through batched GTP_CMD_NEWPDP field for field,
/// and a refused context is named exactly, with the kernel's own
/// semantics (the ones before it stay, the ones after it are not added).
pub fn gtp_bulk_install() -> Result<()> {
    let ns = "epc-gtp-bulk";
    let _g = scratch_ns(ns)?;
    let n = ns_path(ns);
    ensure!(
        gtp_state::kernel_has_bulk_install(&n)?,
        "the patched kernel does not list GTP_CMD_NEWPDPS"
    );
    let mut st = small_state();
    st.pdps = ues(1000).iter().map(|u| u.spgw).collect();
    let mut seen = Vec::new();
    for install in [Install::Bulk(300), Install::Batched(300), Install::OneByOne] {
        let opts = RestoreOptions {
            install,
            ..Default::default()
        };
        gtp_state::restore(&n, &st, &opts).with_context(|| format!("{install:?}"))?;
        let mut back = gtp_state::capture(&n, "gtp0")?.pdps;
        back.sort_by_key(|p| p.to_string());
        ensure!(back.len() == st.pdps.len(), "{install:?}: {}", back.len());
        seen.push(back);
        gtp_state::delete_device(&n, "gtp0")?;
    }
    let mut want = st.pdps.clone();
    want.sort_by_key(|p| p.to_string());
    ensure!(
        seen.iter().all(|s| *s == want),
        "the three ways installed different tables"
    );

    // A conflict in the middle of a request: [fresh, dup, fresh].
    let mut base = small_state();
    base.pdps.truncate(10);
    // The kernel keys tunnels by TEI (or TID) and MS family: a context
    // that exists, as it is, collides both ways.
    let dup = base.pdps[4];
    let extra = |i: u8| Pdp {
        tunnel: Tunnel::V1 {
            i_tei: 0xb0000 + u32::from(i),
            o_tei: 7,
        },
        peer: "192.0.2.99".parse().expect("literal"),
        ms: IpAddr::from([10, 98, 0, i]),
    };
    for install in [Install::Bulk(64), Install::Batched(64)] {
        gtp_state::restore(&n, &base, &RestoreOptions::default())?;
        let r = gtp_state::add_pdps(&n, GTP0_INDEX, &[extra(1), dup, extra(2)], install);
        match &r {
            Err(Error::PdpConflict(what)) if what.starts_with(&dup.to_string()) => {
                println!("  {install:?}: {what}")
            }
            other => bail!("{install:?}: a duplicate I-TEI gave {other:?}"),
        }
        let now = gtp_state::capture(&n, "gtp0")?.pdps;
        ensure!(
            now.contains(&extra(1)),
            "{install:?}: the context before went"
        );
        // Batched requests are separate: the kernel still adds the one
        // after; a bulk request ends at the refused one.
        let after = now.contains(&extra(2));
        ensure!(
            after == matches!(install, Install::Batched(_)),
            "{install:?}: context after the refused one added: {after}"
        );
        gtp_state::delete_device(&n, "gtp0")?;
    }
    Ok(())
}

/// Removes a netns on drop.
pub(crate) struct NsGuard(&'static str);
pub(crate) fn scopeguard(ns: &'static str) -> NsGuard {
    NsGuard(ns)
}
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).output();
    }
}

pub fn gtp_migrate_kernel_sockets() -> Result<()> {
    migrate(Mode::Kernel)
}

pub fn gtp_migrate_process_sockets() -> Result<()> {
    migrate(Mode::Process)
}

/// `ip -o link` of a netns: to check that a refused restore changed
/// nothing.
fn links(ns: &str) -> Result<String> {
    let o = Command::new("ip").args(["-n", ns, "-o", "link"]).output()?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn small_state() -> GtpState {
    let ues = ues(30);
    GtpState {
        device: Device {
            name: "gtp0".into(),
            ifindex: GTP0_INDEX,
            role: Role::Ggsn,
            hash_size: 1024,
            restart_count: 0,
            mtu: 1500,
            up: true,
        },
        sockets: Sockets::Kernel { local: None },
        sockets_found: Default::default(),
        addresses: vec![],
        routes: vec![],
        pdps: ues.iter().map(|u| u.spgw).collect(),
    }
}

fn expect(what: &str, r: Result<(), Error>, ok: impl Fn(&Error) -> bool) -> Result<()> {
    match r {
        Err(e) if ok(&e) => {
            println!("  {what}: {e}");
            Ok(())
        }
        other => bail!("{what}: unexpected {other:?}"),
    }
}

pub fn gtp_bad_input() -> Result<()> {
    let ns = "epc-gtp-bad";
    let _ = ip(&["netns", "del", ns]);
    ip(&["netns", "add", ns])?;
    let _g = NsGuard(ns);
    ip(&["-n", ns, "link", "add", "dum0", "type", "dummy"])?;
    let n = ns_path(ns);

    expect(
        "no such device",
        gtp_state::capture(&n, "nope").map(|_| ()),
        |e| matches!(e, Error::NoSuchDevice(_)),
    )?;
    expect(
        "not a gtp device",
        gtp_state::capture(&n, "dum0").map(|_| ()),
        |e| matches!(e, Error::NotGtp { kind, .. } if kind == "dummy"),
    )?;
    expect(
        "no such netns",
        gtp_state::capture(&Netns::named("epc-none"), "gtp0").map(|_| ()),
        |e| matches!(e, Error::Netns { .. }),
    )?;

    // Corrupt files, through the CLI.
    let good = gtp_state::format::encode(&small_state())?;
    let mut bad = good.clone();
    bad[40] ^= 0x10;
    std::fs::write("/tmp/gtp-corrupt.bin", &bad)?;
    std::fs::write("/tmp/gtp-trunc.bin", &good[..good.len() / 2])?;
    for f in ["/tmp/gtp-corrupt.bin", "/tmp/gtp-trunc.bin"] {
        let before = links(ns)?;
        let (ok, _, err) = cli(&["restore", "--netns", ns, "-i", f])?;
        ensure!(
            !ok && err.contains("corrupt"),
            "restore of {f}: ok={ok} {err}"
        );
        ensure!(links(ns)? == before, "the netns changed");
        println!("  cli: {}", err.trim());
    }
    let (ok, out, err) = cli(&["show", "-i", "/tmp/gtp-corrupt.bin"])?;
    ensure!(!ok && out.is_empty(), "show of a corrupt file: {err}");
    let (ok, _, err) = cli(&[
        "capture",
        "--netns",
        ns,
        "--dev",
        "dum0",
        "-o",
        "/tmp/x.bin",
    ])?;
    ensure!(
        !ok && err.contains("not a gtp device"),
        "cli capture of dum0: {err}"
    );
    println!("  cli: {}", err.trim());

    // Name and ifindex taken: refused, nothing changed.
    let st = small_state();
    ip(&["-n", ns, "link", "add", "gtp0", "type", "dummy"])?;
    let before = links(ns)?;
    expect(
        "name taken",
        gtp_state::restore(&n, &st, &RestoreOptions::default()),
        |e| matches!(e, Error::NameTaken(_)),
    )?;
    ensure!(links(ns)? == before, "the netns changed");
    ip(&["-n", ns, "link", "del", "gtp0"])?;
    ip(&[
        "-n",
        ns,
        "link",
        "add",
        "dum1",
        "index",
        &GTP0_INDEX.to_string(),
        "type",
        "dummy",
    ])?;
    let before = links(ns)?;
    expect(
        "ifindex taken",
        gtp_state::restore(&n, &st, &RestoreOptions::default()),
        |e| matches!(e, Error::IfindexTaken { .. }),
    )?;
    ensure!(links(ns)? == before, "the netns changed");
    ip(&["-n", ns, "link", "del", "dum1"])?;

    // A hash size chosen at restore: the rest as captured.
    let resized = RestoreOptions {
        hash_size: Some(4096),
        ..Default::default()
    };
    gtp_state::restore(&n, &small_state(), &resized).context("restore with --hash-size")?;
    let back = gtp_state::capture(&n, "gtp0")?;
    ensure!(
        back.device.hash_size == 4096 && back.pdps.len() == small_state().pdps.len(),
        "restored with hash size {} and {} contexts",
        back.device.hash_size,
        back.pdps.len()
    );
    gtp_state::delete_device(&n, "gtp0")?;
    expect(
        "hash size 0",
        gtp_state::restore(
            &n,
            &small_state(),
            &RestoreOptions {
                hash_size: Some(0),
                ..Default::default()
            },
        ),
        |e| matches!(e, Error::Invalid(_)),
    )?;

    // PDP conflict within the capture: refused before anything is made.
    let mut dup = small_state();
    let mut p = dup.pdps[0];
    p.tunnel = Tunnel::V1 {
        i_tei: 0xdead,
        o_tei: 1,
    };
    dup.pdps.push(p);
    let before = links(ns)?;
    expect(
        "PDP conflict",
        gtp_state::restore(&n, &dup, &RestoreOptions::default()),
        |e| matches!(e, Error::PdpConflict(_)),
    )?;
    ensure!(links(ns)? == before, "the netns changed");

    // The kernel refuses a context midway (an IPv6 MS address with its
    // lower 64 bits set): the half-made device is removed.
    let mut mid = small_state();
    mid.pdps.push(Pdp {
        tunnel: Tunnel::V1 {
            i_tei: 0xbeef,
            o_tei: 2,
        },
        peer: IpAddr::V4(ENB_ADDR),
        ms: "2001:db8:99::5".parse()?,
    });
    expect(
        "refused midway",
        gtp_state::restore(&n, &mid, &RestoreOptions::default()),
        |e| matches!(e, Error::PdpRejected { pdp, .. } if pdp.contains("2001:db8:99::5")),
    )?;
    ensure!(
        links(ns)? == before,
        "a half-made device is left: {}",
        links(ns)?
    );

    // Process-owned sockets without fds.
    let mut proc_st = small_state();
    proc_st.sockets = Sockets::Process {
        gtp0: None,
        gtp1u: None,
    };
    expect(
        "no fds",
        gtp_state::restore(&n, &proc_st, &RestoreOptions::default()),
        |e| matches!(e, Error::NeedsSocketFds(_)),
    )?;

    // Without CAP_NET_ADMIN (a thread with uid 65534, raw syscall so only
    // this thread changes).
    ip(&[
        "-n", ns, "link", "add", "gtpx", "type", "gtp", "role", "ggsn",
    ])?;
    let before = links(ns)?;
    let st2 = small_state();
    let res = std::thread::spawn(move || {
        // SAFETY: changes only this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        if rc != 0 {
            return Err(anyhow::anyhow!(
                "setresuid: {}",
                std::io::Error::last_os_error()
            ));
        }
        let a = gtp_state::capture(&Netns::named("epc-gtp-bad"), "gtpx").map(|_| ());
        let b = gtp_state::capture(&Netns::Current, "lo").map(|_| ());
        let c = gtp_state::restore(
            &Netns::named("epc-gtp-bad"),
            &st2,
            &RestoreOptions::default(),
        );
        Ok((a, b, c))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread panicked"))??;
    let perm = |e: &Error| matches!(e, Error::PermissionDenied(_));
    expect("unprivileged capture", res.0, perm)?;
    expect("unprivileged restore", res.2, perm)?;
    // In its own netns, lo is not gtp: that is found out first.
    expect("unprivileged capture of lo", res.1, |e| {
        matches!(e, Error::NotGtp { .. })
    })?;
    ensure!(links(ns)? == before, "the netns changed");
    Ok(())
}

// ------------------------------------------------------------------ bench

fn bench_ns() -> Result<(String, NsGuard)> {
    let ns = "epc-gtp-bench";
    let _ = ip(&["netns", "del", ns]);
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    Ok((ns.to_string(), NsGuard(ns)))
}

/// The benchmark device's PDP hash size: what libgtpnl (osmo-ggsn,
/// OpenAirInterface's SPGW-U) gives every gtp device it creates.
const BENCH_HASH_SIZE: u32 = 131_072;

/// Capture and restore of 1k, 10k and 100k contexts; restore (with
/// GTP_CMD_NEWPDPS, and with batched GTP_CMD_NEWPDP as on a stock kernel)
/// against the same contexts added one request+ack at a time.
pub fn bench() -> Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let (ns, _g) = bench_ns()?;
    let n = ns_path(&ns);
    // The device is made over rtnetlink as libgtpnl does: iproute2 refuses
    // a hash size this big. Kernel-created sockets, as `ip link add` makes.
    let kernel_sockets = RestoreOptions {
        sockets: SocketSource::Kernel { local: None },
        ..Default::default()
    };
    const ONE_BY_ONE: &str = "one NEWPDP request+ack at a time, same contexts";
    for count in [1_000usize, 10_000, 100_000] {
        let ues = ues(count);
        gtp_state::restore(&n, &gtp0_device(BENCH_HASH_SIZE, 0), &kernel_sockets)?;
        let pdps: Vec<Pdp> = ues.iter().map(|u| u.spgw).collect();
        gtp_state::add_pdps(&n, GTP0_INDEX, &pdps, Install::default())?;
        let t = Instant::now();
        let st = gtp_state::capture(&n, "gtp0")?;
        let capture = t.elapsed().as_secs_f64();
        ensure!(st.pdps.len() == count, "captured {}", st.pdps.len());
        let t = Instant::now();
        let bytes = gtp_state::format::encode(&st)?;
        let encode = t.elapsed().as_secs_f64();
        let empty = gtp_state::format::encode(&GtpState {
            pdps: vec![],
            ..st.clone()
        })?;
        let per = (bytes.len() - empty.len()) as f64 / count as f64;

        // GTP_CMD_NEWPDPS, batched GTP_CMD_NEWPDP (all a stock kernel
        // allows), and one request+ack at a time (per-tunnel tools), in
        // turn over several rounds: TCG's timing is noisy (the host's
        // other load, flushes of its translation cache), so medians are
        // reported. A warm-up round comes first, untimed: TCG translates
        // each path on its first use, which would count against whichever
        // way ran first.
        let ways = [
            Install::default(),
            Install::Batched(gtp_state::DEFAULT_BATCH),
            Install::OneByOne,
        ];
        let rounds = if count == 1_000 { 6 } else { 5 };
        let mut times = vec![Vec::new(); ways.len()];
        for r in 0..rounds {
            for (i, install) in ways.into_iter().enumerate() {
                gtp_state::delete_device(&n, "gtp0")?;
                // The deleted device's contexts are freed after an RCU
                // grace period, while the next restore runs: that would
                // charge one device's teardown to the other's set-up (all
                // of it to the short NEWPDPS restore, a sliver of the
                // one-by-one one).
                std::thread::sleep(Duration::from_secs(1));
                let opts = RestoreOptions {
                    install,
                    ..Default::default()
                };
                let t = Instant::now();
                gtp_state::restore(&n, &st, &opts)?;
                let took = t.elapsed().as_secs_f64();
                let again = gtp_state::capture(&n, "gtp0")?;
                ensure!(
                    again.pdps.len() == count,
                    "{install:?}: restored {}",
                    again.pdps.len()
                );
                if count != 1_000 || r > 0 {
                    times[i].push(took);
                }
            }
        }
        gtp_state::delete_device(&n, "gtp0")?;
        let median = |v: &[f64]| crate::bench::median(v.iter().copied());
        let (restore, batched, one_by_one) =
            (median(&times[0]), median(&times[1]), median(&times[2]));
        let mut ratios: Vec<f64> = times[2]
            .iter()
            .zip(&times[0])
            .map(|(one, bulk)| one / bulk)
            .collect();
        ratios.sort_by(f64::total_cmp);
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.1}")).collect();
        println!(
            "  {count} contexts: restore {restore:.3} s, batched NEWPDP {batched:.3} s, one by one {one_by_one:.3} s (medians of {} rounds); one-by-one/restore per round, sorted: {}",
            times[0].len(),
            each.join(", ")
        );

        let k = if count >= 1000 {
            format!("{}k", count / 1000)
        } else {
            count.to_string()
        };
        let x = count as f64;
        figs.push(Figure::secs(format!("gtp.capture_{k}"), capture).at("gtp capture", x));
        figs.push(Figure::secs(format!("gtp.encode_{k}"), encode));
        figs.push(
            Figure::secs(format!("gtp.restore_{k}"), restore)
                .against(one_by_one, ONE_BY_ONE)
                .at("gtp restore (GTP_CMD_NEWPDPS)", x),
        );
        figs.push(
            Figure::secs(format!("gtp.restore_batched_{k}"), batched)
                .against(one_by_one, ONE_BY_ONE)
                .at("gtp restore (batched GTP_CMD_NEWPDP, stock kernel)", x),
        );
        figs.push(
            Figure::secs(format!("gtp.restore_one_by_one_{k}"), one_by_one)
                .at("gtp restore (one request at a time)", x),
        );
        // A fixed bound, not a measurement (gtp-state's `compact` test
        // holds the format under it).
        figs.push(
            Figure::amount(format!("gtp.bytes_per_pdp_{k}"), "B", per)
                .against(64.0, "fixed 64 B per context, not measured"),
        );
    }
    Ok(figs)
}
