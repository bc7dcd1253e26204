//! The CRIU plugin with our patched CRIU: real `criu dump/restore --lib`
//! of processes holding SCTP associations, between hosts A and B.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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

fn connect_from_c(to: SocketAddrV4) -> Result<OwnedFd> {
    net::in_netns(PEER_C, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = crate::suites::sctp_repair::sctp_socket()?;
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
        // One stream: the echo server answers on stream 0.
        sent.send_next(s.as_fd(), 1, i)?;
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

/// MME-like: an SCTP server in its own netns on host A with a base-station
/// peer on C. `criu dump --lib` on A, images over the A–B link, `criu
/// restore --lib` on B: the association carries on (same association at
/// the peer, messages echoed with their sequence), and a new peer can
/// connect to the restored listener.
pub fn sctp_mme_migrate() -> Result<()> {
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "mme", "mme0", MME)?;
    let listen = format!("{MME}:{S1AP_PORT}");
    let mut app = crate::apps::spawn_in(&ctr, &["sctp-echo", "--listen", &listen])?;
    let enb = connect_from_c(SocketAddrV4::new(MME, S1AP_PORT))?;
    let (mut sent, mut tally) = (Sent::default(), Tally::default());
    echo_round(&enb, &mut sent, &mut tally, 30)?;
    let before = crate::suites::sctp_repair::peer_status(&enb)?;

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
        echo_round(&enb, &mut sent, &mut tally, 30)?;
        ensure!(
            crate::suites::sctp_repair::peer_status(&enb)? == before,
            "the base station's association changed"
        );
        let enb2 = connect_from_c(SocketAddrV4::new(MME, S1AP_PORT))?;
        let (mut s2, mut t2) = (Sent::default(), Tally::default());
        echo_round(&enb2, &mut s2, &mut t2, 5)?;
        println!(
            "  checkpoint {:.2}s, transfer {:.2}s ({bytes} bytes), restore {:.2}s; {} messages echoed, 0 lost; same association at the base station; a new base station connected",
            checkpoint.as_secs_f64(),
            transfer.as_secs_f64(),
            restore.as_secs_f64(),
            tally.received
        );
        Ok(())
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    drop(topo);
    result
}
