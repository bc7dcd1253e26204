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

const MME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 40);
const S1AP_PORT: u16 = 36412;

fn plugin_dir() -> String {
    crate::vm_dir()
        .join("lib")
        .join("criu")
        .to_string_lossy()
        .into_owned()
}

/// Ends a process CRIU restored (not our child: no wait).
fn kill_restored(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Streams the eNBs use (the echo server answers on the same one).
const STREAMS: u16 = 4;

fn connect_from_c(to: SocketAddrV4) -> Result<OwnedFd> {
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

fn echo_round(s: &OwnedFd, sent: &mut Sent, tally: &mut Tally, n: u64) -> Result<()> {
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
struct Enb {
    sock: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    /// Set once the writer is done: the reader then drains what is due.
    drain: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Result<Sent>>,
    reader: std::thread::JoinHandle<Result<(Tally, Duration)>>,
}

impl Enb {
    fn start(sock: OwnedFd) -> Result<Enb> {
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
        let reader = std::thread::spawn(move || -> Result<(Tally, Duration)> {
            let mut t = Tally::default();
            let mut buf = vec![0u8; 65536];
            let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
            let mut idle = 0;
            while !st.load(Ordering::SeqCst) || (t.received < n.load(Ordering::SeqCst) && idle < 75)
            {
                match sctp_traffic::recv(s.as_fd(), &mut buf)? {
                    Some(m) => {
                        t.check(&m);
                        gap = gap.max(last.elapsed());
                        last = Instant::now();
                        idle = 0;
                    }
                    None => idle += 1,
                }
            }
            Ok((t, gap))
        });
        Ok(Enb {
            sock,
            stop,
            drain,
            writer,
            reader,
        })
    }

    /// Stops the traffic, waits for the last echoes; the messages sent and
    /// the longest time without an echo (the downtime this eNB saw).
    fn finish(self) -> Result<(Tally, Duration)> {
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
        Ok((tally, gap))
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
        let (t1, gap1) = enb1.finish().context("eNB 1")?;
        let (t2, gap2) = enb2.finish().context("eNB 2")?;
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

/// CRIU's default plugin directory (its `--libdir` default), where a
/// package or a container runtime's host setup installs plugins.
const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/criu";

/// Installs our plugin in [`DEFAULT_PLUGIN_DIR`] for as long as it lives.
struct Installed(std::path::PathBuf);

impl Installed {
    fn new() -> Result<Installed> {
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
        let (t, gap) = enb.finish().context("eNB")?;
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
/// iperf3 server on C for 15 s, is migrated to B mid-test with `criu dump
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
        &["-c", &c_addr, "--sctp", "-t", "15", "-b", "2M", "-i", "5"],
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
    net::announce(&format!("/proc/{pid}/ns/net"), "eth0", CLIENT)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = server.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            let out = std::fs::read_to_string(dir.join("server.out")).unwrap_or_default();
            anyhow::bail!("the iperf3 server did not finish within 60 s:\n{out}");
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
