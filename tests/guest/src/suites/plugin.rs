//! The CRIU plugin with our patched CRIU: real `criu dump/restore --lib`
//! of processes holding SCTP associations, between hosts A and B.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::sys::socket::{self, SockaddrIn};

use crate::criu;
use crate::net::{self, Topology, HOST_A, HOST_B, PEER_C};
use crate::sctp_traffic::{self, Sent, Tally};

pub(crate) const MME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 40);
pub(crate) const S1AP_PORT: u16 = 36412;

pub(crate) fn plugin_dir() -> String {
    crate::vm_dir()
        .join("lib")
        .join("criu")
        .to_string_lossy()
        .into_owned()
}

/// Ends a process CRIU restored (not our child: no wait).
pub(crate) fn kill_restored(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Streams the eNBs use (the echo server answers on the same one).
pub(crate) const STREAMS: u16 = 4;

pub(crate) fn connect_from_c(to: SocketAddrV4) -> Result<OwnedFd> {
    net::in_netns(PEER_C, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = crate::suites::sctp_repair::sctp_socket()?;
            crate::suites::sctp_repair::set_streams(&s, STREAMS)?;
            match socket::connect(s.as_raw_fd(), &SockaddrIn::from(to)) {
                Ok(()) => return Ok(s),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context("connecting to the MME")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

pub(crate) fn echo_round(s: &OwnedFd, sent: &mut Sent, tally: &mut Tally, n: u64) -> Result<()> {
    for _ in 0..n {
        let i = sent.count;
        sent.send_next(s.as_fd(), STREAMS, i)?;
    }
    let mut buf = vec![0u8; 65536];
    let tv = nix::sys::time::TimeVal::new(0, 200_000);
    socket::setsockopt(s, socket::sockopt::ReceiveTimeout, &tv)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.received < sent.count {
        ensure!(
            Instant::now() < deadline,
            "only {} of {} echoes came back",
            tally.received,
            sent.count
        );
        if let Some(m) = sctp_traffic::recv(s.as_fd(), &mut buf)? {
            tally.check(&m);
        }
    }
    tally.complete(&sent.next)
}

/// A base station streaming numbered messages to the MME on several
/// streams, ordered and unordered, and checking the echoes, until told to
/// stop. Any association event (COMM_LOST, RESTART, ABORT) fails it.
pub(crate) struct Enb {
    pub(crate) sock: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    /// Set once the writer is done: the reader then drains what is due.
    drain: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Result<Sent>>,
    reader: std::thread::JoinHandle<Result<(Tally, Duration)>>,
    /// Why the reader stopped early (an association event), and when
    /// after the start, for a failure report while it is still joined.
    failed: Arc<std::sync::Mutex<Option<String>>>,
    /// Echoes received so far.
    echoed: Arc<AtomicU64>,
}

impl Enb {
    pub(crate) fn start(sock: OwnedFd) -> Result<Enb> {
        // S1-style timers (RTO 100..1000 ms), as base stations tune SCTP:
        // with the defaults (up to 60 s) the eNB's retransmission timer
        // backs off so far during the migration that it resumes long
        // after the MME is back.
        crate::suites::sctp_repair::tune_timers(&sock)?;
        sctp_traffic::watch(sock.as_fd())?;
        let tv = nix::sys::time::TimeVal::new(0, 200_000);
        socket::setsockopt(&sock, socket::sockopt::ReceiveTimeout, &tv)?;
        socket::setsockopt(&sock, socket::sockopt::SendTimeout, &tv)?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        // Messages sent so far: after stop, the reader waits for all of
        // their echoes (or 15 s of silence).
        let count = Arc::new(AtomicU64::new(0));
        let (s, st, n) = (sock.clone(), stop.clone(), count.clone());
        let writer = std::thread::spawn(move || -> Result<Sent> {
            let mut sent = Sent::default();
            while !st.load(Ordering::SeqCst) {
                // Blocks up to 200 ms while the MME is frozen and the
                // window fills; the same message is tried again then.
                sent.try_send_next(s.as_fd(), STREAMS, sent.count, 0)?;
                n.store(sent.count, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(sent)
        });
        let drain = Arc::new(AtomicBool::new(false));
        let (s, st, n) = (sock.clone(), drain.clone(), count);
        let failed = Arc::new(std::sync::Mutex::new(None));
        let echoed = Arc::new(AtomicU64::new(0));
        let (why, started, e) = (failed.clone(), Instant::now(), echoed.clone());
        let reader = std::thread::spawn(move || -> Result<(Tally, Duration)> {
            let r = Self::read_echoes(&s, &st, &n, &e);
            if let Err(e) = &r {
                if let Ok(mut w) = why.lock() {
                    *w = Some(format!(
                        "{e:#} ({:.1}s after it started)",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            r
        });
        Ok(Enb {
            sock,
            stop,
            drain,
            writer,
            reader,
            failed,
            echoed,
        })
    }

    /// The reader: every echo checked until drained.
    fn read_echoes(
        s: &OwnedFd,
        st: &AtomicBool,
        n: &AtomicU64,
        echoed: &AtomicU64,
    ) -> Result<(Tally, Duration)> {
        let mut t = Tally::default();
        let mut buf = vec![0u8; 65536];
        let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
        let mut idle = 0;
        while !st.load(Ordering::SeqCst) || (t.received < n.load(Ordering::SeqCst) && idle < 75) {
            match sctp_traffic::recv(s.as_fd(), &mut buf)? {
                Some(m) => {
                    t.check(&m);
                    echoed.store(t.received, Ordering::SeqCst);
                    gap = gap.max(last.elapsed());
                    last = Instant::now();
                    idle = 0;
                }
                None => idle += 1,
            }
        }
        Ok((t, gap))
    }

    /// Echoes received so far.
    pub(crate) fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::SeqCst)
    }

    /// What the reader saw go wrong, if it has stopped on an error.
    pub(crate) fn failure(&self) -> String {
        match self.failed.lock().ok().and_then(|w| w.clone()) {
            Some(why) => format!("its reader stopped: {why}"),
            None => "its reader saw no association event".into(),
        }
    }

    /// Stops the traffic, waits for the last echoes; the messages sent and
    /// the longest time without an echo (the downtime this eNB saw).
    pub(crate) fn finish(self) -> Result<(Tally, Duration, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("eNB writer panicked"));
        // Only now is the count of messages sent final.
        self.drain.store(true, Ordering::SeqCst);
        let sent = sent?.context("eNB writer")?;
        let (tally, gap) = self
            .reader
            .join()
            .map_err(|_| anyhow::anyhow!("eNB reader panicked"))?
            .context("eNB reader")?;
        tally.complete(&sent.next)?;
        ensure!(
            Arc::strong_count(&self.sock) == 1,
            "eNB socket still shared"
        );
        Ok((tally, gap, sent.count))
    }
}

/// MME-like: an SCTP server (listener and accepted associations) in its
/// own netns on host A, with two base-station peers on C streaming
/// numbered messages on 4 streams, ordered and unordered, 1 to 9000 bytes,
/// the whole time. `criu dump --lib` on A, images over the A–B link, `criu
/// restore --lib` on B: every message echoed once, in order per stream,
/// intact; no association event at any peer (same associations); and a new
/// peer can connect to the restored listener.
pub fn sctp_mme_migrate() -> Result<()> {
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "mme", "mme0", MME)?;
    let listen = format!("{MME}:{S1AP_PORT}");
    let mut app = crate::apps::spawn_in(&ctr, &["sctp-echo", "--listen", &listen])?;
    let to = SocketAddrV4::new(MME, S1AP_PORT);
    let (e1, e2) = (connect_from_c(to)?, connect_from_c(to)?);
    let before = [
        crate::suites::sctp_repair::peer_status(&e1)?,
        crate::suites::sctp_repair::peer_status(&e2)?,
    ];
    let (enb1, enb2) = (Enb::start(e1)?, Enb::start(e2)?);
    std::thread::sleep(Duration::from_secs(1));

    let dir = crate::suites::baseline::work_dir("plugin-mme")?;
    let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
    let lib = plugin_dir();
    let checkpoint = criu::dump(HOST_A, app.id(), &img_a, &["--lib", &lib])?;
    let _ = app.wait();
    let (transfer, bytes) =
        crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
    let (restore, pid) = criu::restore(
        HOST_B,
        &img_b,
        &["--lib", &lib, "--external", "veth[eth0]:mme0@br0"],
    )?;
    let result = (|| -> Result<()> {
        net::announce(&format!("/proc/{pid}/ns/net"), "eth0", MME)?;
        std::thread::sleep(Duration::from_secs(2));
        let enb3 = connect_from_c(to)?;
        let (mut s3, mut t3) = (Sent::default(), Tally::default());
        echo_round(&enb3, &mut s3, &mut t3, 5)?;
        let after = [
            crate::suites::sctp_repair::peer_status(&enb1.sock)?,
            crate::suites::sctp_repair::peer_status(&enb2.sock)?,
        ];
        ensure!(after == before, "a base station's association changed");
        let (t1, gap1, _) = enb1.finish().context("eNB 1")?;
        let (t2, gap2, _) = enb2.finish().context("eNB 2")?;
        println!(
            "  checkpoint {:.2}s, transfer {:.2}s ({bytes} bytes), restore {:.2}s; \
             {} + {} messages echoed on {STREAMS} streams while migrating, 0 lost, duplicated or reordered; \
             longest silence seen by an eNB {:.2}s; same associations; a new eNB connected",
            checkpoint.as_secs_f64(),
            transfer.as_secs_f64(),
            restore.as_secs_f64(),
            t1.received,
            t2.received,
            gap1.max(gap2).as_secs_f64()
        );
        Ok(())
    })();
    kill_restored(pid);
    drop(topo);
    result
}

/// Our CRIU's default plugin directory (its `--libdir` default, built in
/// with `PLUGINDIR`; the harness's `criu::PLUGIN_DIR`), where the README
/// tells users to install the plugin: a container runtime's criu finds it
/// there without any configuration, and Debian's own criu never looks
/// there.
pub(crate) const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/epcmig/criu";

/// Installs our plugin in [`DEFAULT_PLUGIN_DIR`] for as long as it lives.
pub(crate) struct Installed(std::path::PathBuf);

impl Installed {
    pub(crate) fn new() -> Result<Installed> {
        let dir = std::path::Path::new(DEFAULT_PLUGIN_DIR);
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {DEFAULT_PLUGIN_DIR} (overlay in the guest)"))?;
        let to = dir.join("libepcmig_criu.so");
        std::fs::copy(
            std::path::Path::new(&plugin_dir()).join("libepcmig_criu.so"),
            &to,
        )
        .with_context(|| format!("installing the plugin as {}", to.display()))?;
        Ok(Installed(to))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `criu dump --leave-running` with the plugin: the MME keeps serving its
/// base station through and after the dump (associations thawed, nothing
/// lost). Then the plugin is installed in CRIU's default plugin directory
/// instead of given with `--lib`, and a plain `criu dump` / `criu
/// restore` migrates the MME from A to B under the same traffic.
pub fn sctp_leave_running_and_default_dir() -> Result<()> {
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "mme", "mme0", MME)?;
    let listen = format!("{MME}:{S1AP_PORT}");
    let mut app = crate::apps::spawn_in(&ctr, &["sctp-echo", "--listen", &listen])?;
    let to = SocketAddrV4::new(MME, S1AP_PORT);
    let e = connect_from_c(to)?;
    let before = crate::suites::sctp_repair::peer_status(&e)?;
    let enb = Enb::start(e)?;
    std::thread::sleep(Duration::from_secs(1));

    let dir = crate::suites::baseline::work_dir("plugin-leave-running")?;
    let lib = plugin_dir();
    criu::dump(
        HOST_A,
        app.id(),
        &dir.join("images-left"),
        &["--lib", &lib, "--leave-running"],
    )?;
    ensure!(
        app.try_wait()?.is_none(),
        "the MME exited after a --leave-running dump"
    );
    // Served from A still: the eNB's messages keep coming back.
    std::thread::sleep(Duration::from_secs(2));

    let installed = Installed::new()?;
    let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
    criu::dump(HOST_A, app.id(), &img_a, &[])?;
    let _ = app.wait();
    crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
    let (_, pid) = criu::restore(HOST_B, &img_b, &["--external", "veth[eth0]:mme0@br0"])?;
    drop(installed);
    let result = (|| -> Result<()> {
        net::announce(&format!("/proc/{pid}/ns/net"), "eth0", MME)?;
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            crate::suites::sctp_repair::peer_status(&enb.sock)? == before,
            "the base station's association changed"
        );
        let (t, gap, _) = enb.finish().context("eNB")?;
        let log = std::fs::read_to_string(img_a.join("dump.log")).unwrap_or_default();
        ensure!(
            log.contains("epcmig:"),
            "the plugin in {DEFAULT_PLUGIN_DIR} was not loaded by criu dump"
        );
        println!(
            "  --leave-running: the MME kept serving; then migrated with the plugin from \
             {DEFAULT_PLUGIN_DIR} (no --lib): {} messages echoed, 0 lost, duplicated or reordered, \
             longest silence {:.2}s, same association",
            t.received,
            gap.as_secs_f64()
        );
        Ok(())
    })();
    kill_restored(pid);
    drop(topo);
    result
}

/// A third-party program: an `iperf3 --sctp` client (SCTP data association
/// plus its TCP control connection) in a container on A, sending to an
/// iperf3 server on C for 45 s (iperf3 counts wall-clock time, and a migration under TCG on a loaded host can take 30 s), is migrated to B mid-test with `criu dump
/// --lib --tcp-established`; both ends finish the test without error.
pub fn iperf3_sctp_migrate() -> Result<()> {
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 41);
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "iperf", "iperf0", CLIENT)?;
    let dir = crate::suites::baseline::work_dir("plugin-iperf3")?;
    let c_addr = net::host_addr(PEER_C).to_string();
    let mut server = crate::apps::spawn_program_in(
        PEER_C,
        "iperf3",
        &["-s", "-1", "-B", &c_addr],
        &dir.join("server.out"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let client_out = dir.join("client.out");
    let client = crate::apps::spawn_program_in(
        &ctr,
        "iperf3",
        &["-c", &c_addr, "--sctp", "-t", "45", "-b", "2M", "-i", "5"],
        &client_out,
    )?;
    std::thread::sleep(Duration::from_secs(4));

    let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
    let lib = plugin_dir();
    let mut client = client;
    criu::dump(
        HOST_A,
        client.id(),
        &img_a,
        &["--lib", &lib, "--tcp-established"],
    )?;
    let _ = client.wait();
    crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
    let (_, pid) = criu::restore(
        HOST_B,
        &img_b,
        &[
            "--lib",
            &lib,
            "--tcp-established",
            "--external",
            "veth[eth0]:iperf0@br0",
        ],
    )?;
    plugin_lines(&img_b.join("restore.log"));
    net::announce(&format!("/proc/{pid}/ns/net"), "eth0", CLIENT)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = server.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            let out = std::fs::read_to_string(dir.join("server.out")).unwrap_or_default();
            anyhow::bail!("the iperf3 server did not finish within 120 s:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The restored client is not our child: wait for it to go away.
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let s_out = std::fs::read_to_string(dir.join("server.out")).unwrap_or_default();
    let c_out = std::fs::read_to_string(&client_out).unwrap_or_default();
    ensure!(
        status.success() && !s_out.contains("error"),
        "the iperf3 server failed ({status}):\n{s_out}"
    );
    ensure!(
        c_out.contains("iperf Done.") && !c_out.contains("error"),
        "the migrated iperf3 client did not finish cleanly:\n{c_out}"
    );
    let summary = c_out
        .lines()
        .filter(|l| l.contains("receiver") || l.contains("sender"))
        .collect::<Vec<_>>()
        .join(" | ");
    println!("  iperf3 --sctp migrated A->B mid-test, both ends finished: {summary}");
    drop(topo);
    Ok(())
}

/// `epcmig-criu-action`, CRIU's `setup-namespaces` script for gtp devices
/// (next to the plugin, as a package would install it).
fn action_script() -> String {
    std::path::Path::new(&plugin_dir())
        .join("epcmig-criu-action")
        .to_string_lossy()
        .into_owned()
}

/// After a container with an SGi veth was restored on `host` with
/// `--external veth[sgi0]:OUTER`: the SGi host's old end goes (with the
/// old container's end), the new outer end moves into the SGi host and
/// takes its addresses.
fn recable_sgi(host: &str, outer: &str) -> Result<()> {
    use crate::suites::gtp::SGI_NS;
    let _ = net::ip(&["-n", SGI_NS, "link", "del", "sgi-host"]);
    net::ip(&[
        "-n", host, "link", "set", outer, "netns", SGI_NS, "name", "sgi-host",
    ])?;
    crate::suites::gtp::sgi_host_end_up(true)
}

/// What a gtp migration test checks on top of the traffic.
#[derive(Clone, Copy, PartialEq)]
enum GtpSockets {
    /// gtp0 on the process's own UDP sockets (OAI, OsmoGGSN).
    Process,
    /// gtp0 on kernel-created sockets (IFLA_GTP_CREATE_SOCKETS).
    Kernel,
}

/// SPGW-like (and, with `mme`, MME-like too, in the same netns): a process
/// in a container on A made gtp0 and holds it; 1,000 PDP contexts (v1
/// IPv4, v1 IPv6, v0), UE traffic from the eNB on C through the tunnels to
/// the SGi host behind the SPGW (masquerade). `criu dump --lib` on A,
/// images over the A–B link, `criu restore --lib --action-script
/// epcmig-criu-action` on B: the re-captured gtp state equals the original
/// field for field, gtp0 uses the restored process's sockets, and every
/// tunnel carries a UDP round trip again. With `mme`, two base stations
/// stream SCTP through the same migration as in [`sctp_mme_migrate`].
fn spgw_migrate(mode: GtpSockets, mme: bool) -> Result<EpcFigures> {
    let mut rig = EpcRig::start(mode, mme, crate::suites::gtp::N_UES)?;
    let name = if mme { "plugin-epc" } else { "plugin-spgw" };
    let dir = crate::suites::baseline::work_dir(name)?;
    let ((checkpoint, transfer, bytes, restore, pid), ue) =
        crate::suites::gtp::with_stream(rig.ues[0], || {
            let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
            let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
            Ok((checkpoint, transfer, bytes, restore, pid))
        })?;
    let fig = EpcFigures {
        ue,
        ..rig.figures(checkpoint, transfer, bytes, restore)
    };
    rig.check_restored_and_finish(pid, fig)
}

/// An SPGW (and maybe an MME) in a container on host A under traffic, as
/// [`spgw_migrate`] describes; the pieces of a migration as methods.
struct EpcRig {
    topo: Topology,
    _sgi: crate::suites::gtp::NsGuard,
    ues: Vec<crate::suites::gtp::Ue>,
    mode: GtpSockets,
    app: std::process::Child,
    src_ns: gtp_state::Netns,
    echo: crate::suites::gtp::Echo,
    orig: gtp_state::model::GtpState,
    enbs: Option<EnbPair>,
    /// The container's first netns (on host A), and where it runs now.
    ctr: String,
    at: &'static str,
    pid: u32,
}

/// Two streaming base stations and their associations' ids and states
/// before the migration.
type EnbPair = ([(i32, i32); 2], Enb, Enb);

/// Prints the plugin's lines of a criu log (with criu's timestamps) when
/// `EPCMIG_VERBOSE` is set.
fn plugin_lines(log: &std::path::Path) {
    if std::env::var_os("EPCMIG_VERBOSE").is_none() {
        return;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for l in text.lines().filter(|l| l.contains("epcmig")) {
        println!("    {}", l.trim());
    }
}

/// A new base station connects to the MME at [`EPC_S1AP`] and exchanges
/// 20 numbered messages.
fn new_enb_round() -> Result<()> {
    let enb = connect_from_c(EPC_S1AP)?;
    let (mut s, mut t) = (Sent::default(), Tally::default());
    echo_round(&enb, &mut s, &mut t, 20)?;
    println!("  a new base station exchanged 20 messages with the restored MME");
    Ok(())
}

/// Restores so far (for unique outer veth names).
static RESTORES: AtomicU64 = AtomicU64::new(0);

pub(crate) const EPC_S1AP: SocketAddrV4 =
    SocketAddrV4::new(crate::suites::gtp::SPGW_ADDR, S1AP_PORT);

impl EpcRig {
    /// The base stations keep S1-style RTOs but retransmit for up to half
    /// an hour before giving up, not the ~40 s of 40 retransmissions: a
    /// migration of this container under TCG on a loaded 2-core host
    /// takes 40 s and more.
    fn start(mode: GtpSockets, mme: bool, n_ues: usize) -> Result<EpcRig> {
        use crate::suites::gtp::{self, SPGW_ADDR};
        let mut topo = Topology::build()?;
        gtp::sgi_host()?;
        let sgi = gtp::scopeguard(gtp::SGI_NS);
        let ues = gtp::ues(n_ues);
        let ctr = topo.container(HOST_A, "spgw", "spgw0", SPGW_ADDR)?;
        gtp::cable_spgw(&ctr)?;
        let listen = EPC_S1AP.to_string();
        let mut args = vec!["spgw"];
        if mode == GtpSockets::Kernel {
            args.push("--kernel-sockets");
        }
        if mme {
            args.extend(["--sctp-echo", &listen]);
        }
        let mut app = crate::apps::spawn_in(&ctr, &args)?;
        let src_ns = gtp::ns_path(&ctr);
        let deadline = Instant::now() + Duration::from_secs(15);
        while gtp_state::capture(&src_ns, "gtp0").is_err() {
            ensure!(Instant::now() < deadline, "the SPGW made no gtp0 in 15 s");
            ensure!(app.try_wait()?.is_none(), "the SPGW exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its control plane: UE pools routed into gtp0, the contexts.
        gtp::spgw_gtp_routes(&ctr)?;
        let pdps: Vec<gtp_state::model::Pdp> = ues.iter().map(|u| u.spgw).collect();
        gtp_state::add_pdps(
            &src_ns,
            gtp::GTP0_INDEX,
            &pdps,
            gtp_state::Install::default(),
        )
        .context("adding contexts")?;
        gtp::enb(&ues)?;
        let echo = gtp::Echo::start()?;
        gtp::check_traffic(&ues, "before")?;
        let orig = gtp_state::capture(&src_ns, "gtp0")?;
        let enbs = if mme {
            let (e1, e2) = (connect_from_c(EPC_S1AP)?, connect_from_c(EPC_S1AP)?);
            let before = [
                crate::suites::sctp_repair::peer_status(&e1)?,
                crate::suites::sctp_repair::peer_status(&e2)?,
            ];
            let (enb1, enb2) = (Enb::start(e1)?, Enb::start(e2)?);
            for e in [&enb1, &enb2] {
                crate::suites::sctp_repair::set_max_retrans(&e.sock, 2000)?;
            }
            Some((before, enb1, enb2))
        } else {
            None
        };
        let pid = app.id();
        Ok(EpcRig {
            topo,
            _sgi: sgi,
            ues,
            mode,
            app,
            src_ns,
            echo,
            orig,
            enbs,
            ctr,
            at: HOST_A,
            pid,
        })
    }

    /// `criu dump --lib` of the container's process into `img`; on
    /// success the process is gone.
    fn dump(&self, img: &std::path::Path, env: &[(&str, &str)]) -> Result<Duration> {
        let lib = plugin_dir();
        let took = criu::dump_env(self.at, self.pid, img, &["--lib", &lib], env)?;
        plugin_lines(&img.join("dump.log"));
        if self.pid == self.app.id() {
            // Our child, killed by criu: reap it.
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        Ok(took)
    }

    /// Both streaming base stations get echoes again within `limit`.
    fn echoes_flow(&self, limit: Duration) -> Result<()> {
        let Some((_, e1, e2)) = &self.enbs else {
            return Ok(());
        };
        let before = [e1, e2].map(|e| e.echoed.load(Ordering::SeqCst));
        let deadline = Instant::now() + limit;
        loop {
            let now = [e1, e2].map(|e| e.echoed.load(Ordering::SeqCst));
            if now[0] > before[0] && now[1] > before[1] {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no echo in {limit:?} (eNB 1: {}; eNB 2: {})",
                e1.failure(),
                e2.failure()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lifts the network lock CRIU put on the source container's netns at
    /// dump time (its iptables CRIU chain, IPv4 and IPv6): a criu that died
    /// mid-dump leaves it, for TCP as for us.
    fn lift_criu_lock(&self) -> Result<()> {
        for prog in ["iptables", "ip6tables"] {
            for args in [
                &["-D", "INPUT", "-j", "CRIU"][..],
                &["-D", "OUTPUT", "-j", "CRIU"],
                &["-F", "CRIU"],
                &["-X", "CRIU"],
            ] {
                let st = net::command_in(&self.ctr, prog)?.args(args).status()?;
                ensure!(st.success(), "{prog} {} in {}", args.join(" "), self.ctr);
            }
        }
        Ok(())
    }

    /// A clean dump on A, the source retired, the images over the A-B link
    /// to `dir/images-b`: (checkpoint, transfer, image bytes, images on B).
    fn dump_and_send_to_b(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<(Duration, Duration, u64, std::path::PathBuf)> {
        let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
        let checkpoint = self.dump(&img_a, &[])?;
        self.retire_source()?;
        let (transfer, bytes) =
            crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
        Ok((checkpoint, transfer, bytes, img_b))
    }

    /// The figures of a migration of this rig (no UE stream measured).
    fn figures(
        &self,
        checkpoint: Duration,
        transfer: Duration,
        bytes: u64,
        restore: Duration,
    ) -> EpcFigures {
        EpcFigures {
            checkpoint,
            transfer,
            restore,
            image_bytes: bytes,
            ue: Default::default(),
            tunnels: self.ues.len(),
            sctp: None,
        }
    }

    /// After a successful dump, the source container goes, as an
    /// orchestrator removes it: first its gtp0 (a device on process
    /// sockets would keep the netns, and its address answering ARP, alive),
    /// then its links and netns.
    fn retire_source(&mut self) -> Result<()> {
        gtp_state::delete_device(&self.src_ns, "gtp0")?;
        let ctr = self.ctr.clone();
        self.topo.remove_container(&ctr)
    }

    /// `criu restore --lib --action-script epcmig-criu-action` on `host`
    /// from `img`, then the service addresses move over: (time, pid).
    fn restore_on(
        &self,
        host: &str,
        img: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Result<(Duration, u32)> {
        let lib = plugin_dir();
        let script = action_script();
        let _ = std::fs::remove_file(img.join("restored.pid"));
        // Outer veth names fresh on every restore: the container's old
        // ones may still exist while its netns goes away.
        let n = RESTORES.fetch_add(1, Ordering::Relaxed);
        let (eth, sgi) = (format!("spgw-r{n}"), format!("sgi-r{n}"));
        let (took, pid) = criu::restore_env(
            host,
            img,
            &[
                "--lib",
                &lib,
                "--action-script",
                &script,
                "--external",
                &format!("veth[eth0]:{eth}@br0"),
                "--external",
                &format!("veth[sgi0]:{sgi}"),
            ],
            env,
        )?;
        plugin_lines(&img.join("restore.log"));
        net::announce(
            &format!("/proc/{pid}/ns/net"),
            "eth0",
            crate::suites::gtp::SPGW_ADDR,
        )?;
        recable_sgi(host, &sgi)?;
        let _ = net::ip(&["-n", PEER_C, "neigh", "flush", "dev", "eth0"]);
        std::thread::sleep(Duration::from_secs(2));
        Ok((took, pid))
    }

    /// The source after a failed dump: the process runs, gtp0 is as it was
    /// and carries traffic, the base stations' associations are the same.
    fn check_source_intact(&mut self, what: &str) -> Result<()> {
        ensure!(
            self.app.try_wait()?.is_none(),
            "{what}: the SPGW process is gone"
        );
        let now = gtp_state::capture(&self.src_ns, "gtp0").context("capturing gtp0")?;
        crate::suites::gtp::compare(&self.orig, &now).with_context(|| format!("{what}: gtp0"))?;
        crate::suites::gtp::check_traffic(&self.ues, what)?;
        if let Some((before, e1, e2)) = &self.enbs {
            let after = [
                crate::suites::sctp_repair::peer_status(&e1.sock)?,
                crate::suites::sctp_repair::peer_status(&e2.sock)?,
            ];
            ensure!(
                after == *before,
                "{what}: a base station's association changed"
            );
        }
        Ok(())
    }

    /// After a successful restore as `pid`: gtp0 equal to the original,
    /// on the restored process's sockets, every tunnel carrying traffic,
    /// the base stations' associations the same.
    fn check_restored(&self, pid: u32, quiet: bool) -> Result<()> {
        use crate::suites::gtp;
        let dst_ns = gtp_state::Netns::Pid(pid);
        let again = gtp_state::capture(&dst_ns, "gtp0").context("capturing the restored gtp0")?;
        gtp::compare(&self.orig, &again)?;
        if self.mode == GtpSockets::Process {
            ensure!(
                again.sockets_found.sockets.len() == 2
                    && again
                        .sockets_found
                        .sockets
                        .iter()
                        .all(|s| s.owner.is_some_and(|o| o.pid == pid)),
                "gtp0 does not use the restored SPGW's sockets: {:?}",
                again.sockets_found
            );
        }
        if !quiet {
            println!(
                "  re-captured gtp0 equals the original field for field ({} contexts, {} routes, sockets {:?}{})",
                again.pdps.len(),
                again.routes.len(),
                again.sockets,
                if self.mode == GtpSockets::Process {
                    ", the restored process's own"
                } else {
                    ""
                }
            );
        }
        if quiet {
            let missing = gtp::udp_per_ue(&self.ues, 3)?;
            ensure!(
                missing.is_empty(),
                "{} of {} tunnels carried no UDP round trip",
                missing.len(),
                self.ues.len()
            );
        } else {
            gtp::check_traffic(&self.ues, "after restore")?;
        }
        if let Some((before, enb1, enb2)) = &self.enbs {
            let status = |e: &Enb, k| {
                crate::suites::sctp_repair::peer_status(&e.sock)
                    .with_context(|| format!("eNB {k}: {}", e.failure()))
            };
            let after = [status(enb1, 1)?, status(enb2, 2)?];
            ensure!(after == *before, "a base station's association changed");
        }
        Ok(())
    }

    /// What the restored netns looks like, for a failure report.
    fn diagnose(pid: u32) -> String {
        let ns = format!("/proc/{pid}/ns/net");
        let mut out = String::new();
        for (prog, args) in [
            ("ip", &["-br", "link"][..]),
            ("ip", &["-br", "addr"][..]),
            ("ip", &["route"][..]),
            ("ip", &["-6", "route"][..]),
            ("nft", &["list", "ruleset"][..]),
            (
                "sysctl",
                &["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"][..],
            ),
        ] {
            if let Ok(mut c) = net::command_in(&ns, prog) {
                if let Ok(o) = c.args(args).output() {
                    out += &format!(
                        "--- {prog} {}\n{}{}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
        out
    }

    /// [`Self::check_restored`], then: a new base station connects, the
    /// streaming ones stop and every message is accounted for. Tears the
    /// rig down.
    fn check_restored_and_finish(self, pid: u32, mut fig: EpcFigures) -> Result<EpcFigures> {
        let result = self
            .check_restored(pid, false)
            .with_context(|| format!("restored netns:\n{}", Self::diagnose(pid)))
            .and_then(|()| {
                let ue = if fig.ue.sent == 0 {
                    String::new()
                } else {
                    format!(
                        "; UE traffic during the migration: {} of {} datagrams echoed, \
                         UE service interrupted {:.2}s, a flow from before the move {}",
                        fig.ue.echoed,
                        fig.ue.sent,
                        fig.ue.max_gap.as_secs_f64(),
                        if fig.ue.old_flow_recovered {
                            "recovered"
                        } else {
                            "did not recover"
                        }
                    )
                };
                println!(
                    "  checkpoint {:.2}s, transfer {:.2}s ({} bytes), restore {:.2}s{ue}; \
                     the SGi host answered {} datagrams in all",
                    fig.checkpoint.as_secs_f64(),
                    fig.transfer.as_secs_f64(),
                    fig.image_bytes,
                    fig.restore.as_secs_f64(),
                    self.echo.count.load(Ordering::Relaxed)
                );
                // Its conntrack entry came with the netns (criu-patches 0002
                // gives it its masquerade binding back).
                ensure!(
                    fig.ue.sent == 0 || fig.ue.old_flow_recovered,
                    "a UE flow through the SGi masquerade from before the move got no echo after it"
                );
                Ok(())
            });
        let dst_ns = gtp_state::Netns::Pid(pid);
        let EpcRig {
            topo,
            src_ns,
            echo,
            enbs,
            ..
        } = self;
        let result = result.and_then(|()| {
            if let Some((_, enb1, enb2)) = enbs {
                fig.sctp = Some(finish_enbs(enb1, enb2)?);
            }
            Ok(fig)
        });
        // A device on process sockets pins its netns (6.12): remove it on
        // both sides, as an orchestrator would once the migration is done.
        let _ = gtp_state::delete_device(&dst_ns, "gtp0");
        let _ = gtp_state::delete_device(&src_ns, "gtp0");
        kill_restored(pid);
        drop(echo);
        drop(topo);
        result
    }
}

/// A new base station connects to the restored MME; the two streaming
/// ones stop, and every message they sent must have come back.
pub(crate) fn finish_enbs(enb1: Enb, enb2: Enb) -> Result<SctpSeen> {
    let enb3 = connect_from_c(EPC_S1AP)?;
    let (mut s3, mut t3) = (Sent::default(), Tally::default());
    echo_round(&enb3, &mut s3, &mut t3, 5)?;
    let (t1, gap1, sent1) = enb1.finish().context("eNB 1")?;
    let (t2, gap2, sent2) = enb2.finish().context("eNB 2")?;
    println!(
        "  MME in the same netns: {} + {} messages echoed on {STREAMS} streams, \
         0 lost, duplicated or reordered; longest silence {:.2}s; same associations; \
         a new eNB connected",
        t1.received,
        t2.received,
        gap1.max(gap2).as_secs_f64()
    );
    Ok(SctpSeen {
        sent: sent1 + sent2,
        messages: t1.received + t2.received,
        anomalies: t1.errors.len() + t2.errors.len(),
        max_gap: gap1.max(gap2),
    })
}

/// What the base stations' SCTP peers counted through a migration.
#[derive(Debug, Clone, Copy)]
pub struct SctpSeen {
    /// Messages the eNBs sent.
    pub sent: u64,
    /// Lost, duplicated, reordered or corrupt messages the eNBs counted.
    pub anomalies: usize,
    /// Messages echoed back, each checked (none lost, duplicated,
    /// reordered or corrupt, or the test fails).
    pub messages: u64,
    /// Longest silence an eNB saw: the MME's downtime.
    pub max_gap: Duration,
}

/// The figures of one SPGW/EPC migration.
#[derive(Debug, Clone, Copy)]
pub struct EpcFigures {
    pub checkpoint: Duration,
    pub transfer: Duration,
    pub restore: Duration,
    pub image_bytes: u64,
    pub ue: crate::suites::gtp::UeStream,
    pub tunnels: usize,
    pub sctp: Option<SctpSeen>,
}

/// Issue item 2: an SPGW that made gtp0 on its own UDP sockets.
pub fn gtp_spgw_migrate() -> Result<()> {
    spgw_migrate(GtpSockets::Process, false).map(|_| ())
}

/// gtp0 on kernel-created sockets, made whole before CRIU restores links.
pub fn gtp_kernel_sockets_migrate() -> Result<()> {
    spgw_migrate(GtpSockets::Kernel, false).map(|_| ())
}

/// Issue item 3: MME and SPGW in one container netns, migrated together.
pub fn epc_migrate() -> Result<()> {
    spgw_migrate(GtpSockets::Process, true).map(|_| ())
}

/// The demo's migration: MME and SPGW in one container, under traffic.
pub fn epc_migrate_figures() -> Result<EpcFigures> {
    spgw_migrate(GtpSockets::Process, true)
}

/// The nft tables in netns `ns` whose name starts with `prefix`.
fn nft_tables(ns: &str, prefix: &str) -> Result<Vec<String>> {
    let o = net::command_in(ns, "nft")?
        .args(["list", "tables"])
        .output()
        .context("running nft")?;
    ensure!(o.status.success(), "nft list tables failed");
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|t| t.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

/// Copies nft table `inet NAME` from netns `from` to netns `to`.
fn copy_nft_table(from: &str, to: &str, name: &str) -> Result<()> {
    use std::io::Write;
    let def = net::command_in(from, "nft")?
        .args(["list", "table", "inet", name])
        .output()?;
    ensure!(def.status.success(), "nft list table {name} failed");
    let mut c = net::command_in(to, "nft")?
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    c.stdin
        .take()
        .context("nft stdin")?
        .write_all(&def.stdout)?;
    ensure!(c.wait()?.success(), "nft -f (table {name}) failed in {to}");
    Ok(())
}

/// An MME in the host's network namespace (no container netns, so CRIU
/// locks nothing for it): a `--leave-running` dump leaves it serving with
/// no lock behind; then it is dumped for real, and for 3 s, while its
/// base station keeps sending, host A still holds the service address
/// but no socket. Only the plugin's lock keeps A from answering those
/// packets with an ABORT. The lock is copied to B, the address moves to
/// B, the MME is restored there (in B's host netns; the restore lifts the
/// lock before the thaw): the base station's association goes on, no
/// message lost, duplicated or reordered, no association event.
pub fn sctp_host_netns_migrate() -> Result<()> {
    const HOST_MME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
    let topo = Topology::build()?;
    net::add_addr(HOST_A, "eth0", &format!("{HOST_MME}/24"))?;
    let listen = format!("{HOST_MME}:{S1AP_PORT}");
    let mut app = crate::apps::spawn_in(HOST_A, &["sctp-echo", "--listen", &listen])?;
    let to = SocketAddrV4::new(HOST_MME, S1AP_PORT);
    let e = connect_from_c(to)?;
    let before = crate::suites::sctp_repair::peer_status(&e)?;
    let enb = Enb::start(e)?;
    std::thread::sleep(Duration::from_secs(1));

    let dir = crate::suites::baseline::work_dir("plugin-host-netns")?;
    let lib = plugin_dir();
    criu::dump(
        HOST_A,
        app.id(),
        &dir.join("images-left"),
        &["--lib", &lib, "--leave-running"],
    )?;
    ensure!(
        app.try_wait()?.is_none(),
        "the MME exited after --leave-running"
    );
    let left = nft_tables(HOST_A, "epcmig_lock_")?;
    ensure!(
        left.is_empty(),
        "a --leave-running dump left locks: {left:?}"
    );

    let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
    criu::dump(HOST_A, app.id(), &img_a, &["--lib", &lib])?;
    plugin_lines(&img_a.join("dump.log"));
    let _ = app.wait();
    let locks = nft_tables(HOST_A, "epcmig_lock_")?;
    ensure!(locks.len() == 1, "locks on A after the dump: {locks:?}");
    // The base station keeps sending into host A, which still has the
    // address: without the lock it answers with an ABORT.
    std::thread::sleep(Duration::from_secs(3));
    crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
    // Host B gets the address before the association is restored: it takes
    // the same lock first (the restore lifts it just before the thaw).
    copy_nft_table(HOST_A, HOST_B, &locks[0])?;
    net::ip(&[
        "-n",
        HOST_A,
        "addr",
        "del",
        &format!("{HOST_MME}/24"),
        "dev",
        "eth0",
    ])?;
    net::add_addr(HOST_B, "eth0", &format!("{HOST_MME}/24"))?;
    net::announce(HOST_B, "eth0", HOST_MME)?;
    let (_, pid) = criu::restore(HOST_B, &img_b, &["--lib", &lib])?;
    plugin_lines(&img_b.join("restore.log"));
    let left = nft_tables(HOST_B, "epcmig_lock_")?;
    ensure!(left.is_empty(), "the restore left locks on B: {left:?}");
    let result = (|| -> Result<()> {
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            crate::suites::sctp_repair::peer_status(&enb.sock)? == before,
            "the base station's association changed"
        );
        let (t, gap, _) = enb.finish().context("eNB")?;
        println!(
            "  host-netns MME: lock {} held on A for the move; {} messages echoed, 0 lost, \
             duplicated or reordered, longest silence {:.2}s, same association",
            locks[0],
            t.received,
            gap.as_secs_f64()
        );
        Ok(())
    })();
    kill_restored(pid);
    drop(topo);
    result
}

/// A criu run that must have failed at fault `step`; its log must name it
/// (the action script's lines are in the log but not in CRIU's errors).
fn expect_fault(
    res: Result<impl std::fmt::Debug>,
    step: &str,
    what: &str,
    log: &std::path::Path,
) -> Result<()> {
    match res {
        Ok(v) => anyhow::bail!("{what} succeeded despite EPCMIG_FAULT={step}: {v:?}"),
        Err(e) => {
            let needle = format!("fault injected at step {step}");
            let text = std::fs::read_to_string(log).unwrap_or_default();
            ensure!(
                format!("{e:#}").contains(&needle) || text.contains(&needle),
                "{what} with EPCMIG_FAULT={step} failed, but not at that step:\n{e:#}"
            );
            Ok(())
        }
    }
}

/// A restore that failed left nothing: no restored process, no link of
/// the container on host B.
fn nothing_restored(step: &str) -> Result<()> {
    // The failed restore's netns, and the veths in it, go asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = net::command_in(HOST_B, "ip")?
            .args(["-o", "link", "show"])
            .output()?;
        let links = String::from_utf8_lossy(&out.stdout).into_owned();
        if !links.contains("spgw-r") && !links.contains("sgi-r") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "10 s after the restore failed at {step}, host B still has the container's links:\n{links}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for e in std::fs::read_dir("/proc")?.flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        ensure!(
            !cmd.contains(" app spgw") || cmd.contains("criu"),
            "after the restore failed at {step}, a restored process is left: {cmd}"
        );
    }
    Ok(())
}

/// Every step of the plugin made to fail in turn (`EPCMIG_FAULT`), on an
/// MME + SPGW container under traffic: each failed dump leaves the process
/// running, gtp0 as it was and carrying traffic, and the base stations'
/// associations untouched (no ABORT: they keep streaming); each failed
/// restore leaves no restored process and no link on host B, and costs
/// the base stations, streaming all along, nothing. Then a clean restore
/// from the same images brings the SPGW back with every tunnel, the MME
/// with the same associations (every message echoed once, in order) and
/// serving a new base station.
pub fn fault_every_step() -> Result<()> {
    let mut rig = EpcRig::start(GtpSockets::Process, true, 60)?;
    let dir = crate::suites::baseline::work_dir("fault")?;
    for step in [
        "sctp-freeze",
        "sctp-capture",
        "sctp-write",
        "gtp-capture",
        "gtp-write",
        "gtp-link",
    ] {
        let img = dir.join(format!("dump-{step}"));
        expect_fault(
            rig.dump(&img, &[("EPCMIG_FAULT", step)]),
            step,
            "criu dump",
            &img.join("dump.log"),
        )?;
        std::thread::sleep(Duration::from_secs(1));
        rig.check_source_intact(&format!("after a dump failed at {step}"))?;
        println!("  dump failed at {step}: the source runs on, tunnels and associations intact");
    }
    // The base stations stream on through the failed restores: none may
    // cost them their association (a failure after CRIU lifted its lock
    // seals the netns before the kill; a dying netns does not answer).
    let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
    for step in ["gtp-setup", "sctp-restore", "gtp-attach", "sctp-thaw"] {
        expect_fault(
            rig.restore_on(HOST_B, &img_b, &[("EPCMIG_FAULT", step)]),
            step,
            "criu restore",
            &img_b.join("restore.log"),
        )?;
        nothing_restored(step)?;
        println!("  restore failed at {step}: nothing left on host B");
    }
    let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
    let fig = rig.figures(checkpoint, transfer, bytes, restore);
    new_enb_round()?;
    rig.check_restored_and_finish(pid, fig).map(|_| ())
}

/// CRIU killed mid-dump (`EPCMIG_FAULT=kill@gtp-link`: after the plugin
/// froze the MME's associations, while CRIU dumps the container's netns;
/// the tasks are out of the parasite then, so CRIU's death lets them run
/// on). The plugin's guardian thaws the associations; once the operator
/// lifts CRIU's own network lock, which outlives criu as it does for TCP,
/// the source works as before: gtp0 unchanged and carrying traffic, the
/// same base-station associations with their echoes flowing again. A
/// clean migration then loses none of their messages.
pub fn fault_criu_killed() -> Result<()> {
    let mut rig = EpcRig::start(GtpSockets::Process, true, 30)?;
    let dir = crate::suites::baseline::work_dir("criu-killed")?;
    let img = dir.join("dump-killed");
    let res = rig.dump(&img, &[("EPCMIG_FAULT", "kill@gtp-link")]);
    let Err(e) = res else {
        anyhow::bail!("criu dump succeeded although killed at gtp-link");
    };
    println!(
        "  criu killed mid-dump: {}",
        format!("{e:#}").lines().next().unwrap_or("")
    );
    // The guardian acts once the last holder of criu's end of their pair
    // is gone (criu, and any child criu forked meanwhile).
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let kmsg = std::process::Command::new("dmesg").output()?;
        let found = String::from_utf8_lossy(&kmsg.stdout)
            .lines()
            .rev()
            .find(|l| l.contains("epcmig-guardian"))
            .map(str::to_string);
        match found {
            Some(l) => break l,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            None => {
                let ps = std::process::Command::new("ps")
                    .args(["-eo", "pid,ppid,stat,args"])
                    .output()?;
                anyhow::bail!(
                    "the guardian left no word in the kernel log in 15 s; criu: {e:#}\nprocesses:\n{}",
                    String::from_utf8_lossy(&ps.stdout)
                );
            }
        }
    };
    ensure!(
        // The MME's listener is frozen by the dump too (it must take no
        // association while its accept queue is checked empty).
        line.contains("thawed 3 of 3 SCTP socket(s)"),
        "the guardian did not thaw the listener and both associations: {line}"
    );
    println!("  {}", line.trim());
    rig.lift_criu_lock()?;
    rig.echoes_flow(Duration::from_secs(20))
        .context("after criu was killed and its lock lifted")?;
    rig.check_source_intact("after criu was killed mid-dump")?;
    println!("  the source runs on: tunnels intact, same associations, echoes flowing");

    let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
    let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
    let fig = rig.figures(checkpoint, transfer, bytes, restore);
    rig.check_restored_and_finish(pid, fig).map(|_| ())
}

/// Open fds and resident memory (kB) of process `pid`.
fn usage(pid: u32) -> Result<(usize, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok((fds, rss))
}

/// Soak: consecutive migrations A->B->A... of the MME + SPGW container
/// (200 tunnels) under continuous SCTP traffic from two base stations and
/// a UE's UDP stream; after each: gtp0 equal to the original on the
/// restored sockets, every tunnel carrying a round trip, the same
/// associations. At the end no SCTP message lost, duplicated or reordered
/// (the base stations' own counts), no association event, and the restored
/// process's fds and memory did not grow. `EPCMIG_SOAK=N` migrations (4
/// by default; the issue's soak is 100).
pub fn soak() -> Result<()> {
    let n: usize = crate::env_num("EPCMIG_SOAK").unwrap_or(4);
    let mut rig = EpcRig::start(GtpSockets::Process, true, 200)?;
    let dir = crate::suites::baseline::work_dir("soak")?;
    // The netns the EPC ran in before the last restore (None: the first,
    // named container): its gtp0 pins it until deleted.
    let mut old_ns: Option<std::fs::File> = None;
    let mut first: Option<(usize, u64)> = None;
    let mut last = (0, 0);
    let (mut worst_gap, t0) = (Duration::ZERO, Instant::now());
    let mut restored = Vec::new();
    let result = (|| -> Result<()> {
        for k in 0..n {
            let to = if rig.at == HOST_A { HOST_B } else { HOST_A };
            let (img_from, img_to) = (dir.join(format!("m{k}-out")), dir.join(format!("m{k}-in")));
            let ((), ue) = crate::suites::gtp::with_stream(rig.ues[0], || {
                rig.dump(&img_from, &[])?;
                match old_ns.take() {
                    Some(f) => {
                        let p = format!("/proc/self/fd/{}", f.as_raw_fd());
                        gtp_state::delete_device(&gtp_state::Netns::Path(p.into()), "gtp0")?;
                    }
                    None => rig.retire_source()?,
                }
                crate::transfer::send_dir(rig.at, to, net::host_addr(to), &img_from, &img_to)?;
                let (_, pid) = rig.restore_on(to, &img_to, &[])?;
                restored.push(pid);
                old_ns = Some(std::fs::File::open(format!("/proc/{pid}/ns/net"))?);
                rig.at = to;
                rig.pid = pid;
                Ok(())
            })?;
            worst_gap = worst_gap.max(ue.max_gap);
            rig.check_restored(rig.pid, true)
                .with_context(|| format!("after migration {} of {n}", k + 1))?;
            let u = usage(rig.pid)?;
            first.get_or_insert(u);
            last = u;
            println!(
                "  soak: migration {}/{n} to {}: tunnels and associations intact; UE gap {:.2}s; \
                 restored process {} fds, {} kB resident; {:.0}s elapsed",
                k + 1,
                to,
                ue.max_gap.as_secs_f64(),
                u.0,
                u.1,
                t0.elapsed().as_secs_f64()
            );
        }
        Ok(())
    })();
    let pid = rig.pid;
    let first = first.unwrap_or(last);
    let fig = EpcFigures {
        checkpoint: Duration::ZERO,
        transfer: Duration::ZERO,
        restore: Duration::ZERO,
        image_bytes: 0,
        ue: Default::default(),
        tunnels: rig.ues.len(),
        sctp: None,
    };
    let finished = match result {
        Ok(()) => {
            let EpcRig { enbs, .. } = &mut rig;
            let enbs = enbs.take();
            let seen = match enbs {
                Some((_, e1, e2)) => Some(finish_enbs(e1, e2)?),
                None => None,
            };
            Ok(seen)
        }
        Err(e) => Err(e),
    };
    drop(old_ns);
    let _ = rig.check_restored_and_finish(pid, fig);
    let seen = finished?;
    ensure!(
        last.0 == first.0,
        "the restored process's fds grew from {} to {} over {n} migrations",
        first.0,
        last.0
    );
    ensure!(
        last.1 <= first.1 + 2048,
        "the restored process's memory grew from {} kB to {} kB over {n} migrations",
        first.1,
        last.1
    );
    println!(
        "  soak: {n} migrations, {} SCTP messages checked: 0 lost, duplicated or reordered, \
         no ABORT/COMM_LOST/RESTART; 0 tunnels broken; longest UE gap {:.2}s; \
         fds {} -> {}, memory {} -> {} kB",
        seen.map(|s| s.messages).unwrap_or(0),
        worst_gap.as_secs_f64(),
        first.0,
        last.0,
        first.1,
        last.1
    );
    Ok(())
}

/// How an image file is spoiled for [`badinput_images`].
#[derive(Clone, Copy, Debug)]
enum Spoil {
    Empty,
    Truncated,
    Corrupt,
    WrongMagic,
    WrongVersion,
    Oversized,
    Symlink,
    Fifo,
}

fn spoil(file: &std::path::Path, how: Spoil) -> Result<()> {
    let data = std::fs::read(file)?;
    let write = |d: &[u8]| std::fs::write(file, d);
    match how {
        Spoil::Empty => write(&[])?,
        Spoil::Truncated => write(&data[..data.len() / 2])?,
        Spoil::Corrupt => {
            let mut d = data.clone();
            let i = d.len() / 2;
            d[i] ^= 0x40;
            write(&d)?
        }
        Spoil::WrongMagic => {
            let mut d = data.clone();
            d[..4].copy_from_slice(b"XXXX");
            write(&d)?
        }
        Spoil::WrongVersion => {
            let mut d = data.clone();
            d[8..10].copy_from_slice(&0xfffeu16.to_le_bytes());
            write(&d)?
        }
        Spoil::Oversized => {
            let f = std::fs::OpenOptions::new().append(true).open(file)?;
            f.set_len(300 << 20)?;
        }
        Spoil::Symlink => {
            std::fs::remove_file(file)?;
            std::os::unix::fs::symlink("/etc/hostname", file)?;
        }
        Spoil::Fifo => {
            std::fs::remove_file(file)?;
            let st = std::process::Command::new("mkfifo").arg(file).status()?;
            ensure!(st.success(), "mkfifo failed");
        }
    }
    Ok(())
}

/// Bad image files given to `criu restore` with the plugin: each of our
/// files (an SCTP snapshot, a gtp table) empty, truncated, corrupt, with a
/// wrong magic or format version, oversized, replaced by a symlink or a
/// FIFO. Each restore fails with an error in CRIU's log that names the
/// file and the cause, and leaves nothing on host B; a restore from the
/// intact images then succeeds, and the base stations, streaming through
/// all of it, lose nothing.
pub fn badinput_images() -> Result<()> {
    let mut rig = EpcRig::start(GtpSockets::Process, true, 30)?;
    let dir = crate::suites::baseline::work_dir("badinput")?;
    // As in fault_every_step, the base stations stream on throughout.
    let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
    let ours = |prefix: &str| -> Result<String> {
        let mut v: Vec<String> = std::fs::read_dir(&img_b)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v.into_iter()
            .next()
            .with_context(|| format!("no {prefix}* image was dumped"))
    };
    let cases: Vec<(String, Spoil, &str)> = {
        let sctp = ours("epcmig-sctp-")?;
        let gtp = ours("epcmig-gtp-")?;
        let mut v: Vec<(String, Spoil, &str)> = vec![
            (sctp.clone(), Spoil::Empty, "empty"),
            // Cut short, the trailing checksum no longer matches.
            (
                sctp.clone(),
                Spoil::Truncated,
                "truncated|checksum mismatch",
            ),
            (sctp.clone(), Spoil::Corrupt, "checksum mismatch"),
            (sctp.clone(), Spoil::WrongMagic, "bad magic"),
            (sctp.clone(), Spoil::WrongVersion, "not supported"),
            (sctp.clone(), Spoil::Symlink, "symbolic links"),
            (sctp.clone(), Spoil::Fifo, "not a regular file"),
            (sctp, Spoil::Oversized, "larger than"),
        ];
        v.extend([
            (gtp.clone(), Spoil::Empty, "empty"),
            (gtp.clone(), Spoil::Truncated, "truncated|checksum mismatch"),
            (gtp.clone(), Spoil::Corrupt, "checksum mismatch"),
            (gtp.clone(), Spoil::WrongMagic, "bad magic"),
            (gtp.clone(), Spoil::WrongVersion, "not supported"),
            (gtp, Spoil::Oversized, "larger than"),
        ]);
        v
    };
    // EPCMIG_BADINPUT_ROUNDS=N goes through the cases N times: a rare
    // failure of a restore's error path shows up in a long run.
    let rounds: usize = crate::env_num("EPCMIG_BADINPUT_ROUNDS").unwrap_or(1);
    let runs = (0..rounds).flat_map(|r| cases.iter().map(move |c| (r, c)));
    for (round, (file, how, cause)) in runs {
        let case = dir.join("case");
        let _ = std::fs::remove_dir_all(&case);
        let st = std::process::Command::new("cp")
            .args(["-a"])
            .arg(&img_b)
            .arg(&case)
            .status()?;
        ensure!(st.success(), "copying the images");
        spoil(&case.join(file), *how)?;
        let res = rig.restore_on(HOST_B, &case, &[]);
        ensure!(res.is_err(), "restore with {file} {how:?} succeeded");
        let log = std::fs::read_to_string(case.join("restore.log")).unwrap_or_default();
        let named = log.lines().find(|l| {
            l.contains("epcmig")
                && l.contains(file.as_str())
                && cause.split('|').any(|c| l.contains(c))
        });
        let Some(line) = named else {
            anyhow::bail!(
                "restore with {file} {how:?}: no log line names the file and \"{cause}\":\n{}",
                log.lines()
                    .filter(|l| l.contains("epcmig") || l.contains("Error"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        };
        nothing_restored(&format!("{file} {how:?}"))?;
        if round == 0 {
            println!("  {how:?} {file}: refused, nothing left: {}", line.trim());
        }
    }
    if rounds > 1 {
        println!(
            "  {rounds} rounds: {} bad restores, each refused, nothing left",
            rounds * cases.len()
        );
    }
    let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
    let fig = rig.figures(checkpoint, transfer, bytes, restore);
    new_enb_round()?;
    rig.check_restored_and_finish(pid, fig).map(|_| ())
}
