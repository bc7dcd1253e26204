//! The MME alone: SCTP listeners and associations moved by `criu --lib`
//! (also `--leave-running`, the default plugin directory, a third-party
//! iperf3, and a process in the host's network namespace).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::criu;
use crate::net::{self, Topology, HOST_A, HOST_B, PEER_C};
use crate::sctp_traffic::{Sent, Tally};

use super::epc::*;
use super::*;

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

/// The nft tables in netns `ns` whose name starts with `prefix`.
pub(super) fn nft_tables(ns: &str, prefix: &str) -> Result<Vec<String>> {
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
pub(super) fn copy_nft_table(from: &str, to: &str, name: &str) -> Result<()> {
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
