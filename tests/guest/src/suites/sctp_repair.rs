//! In-guest tests of the `sctp-repair` crate on the patched kernel, with
//! real associations between the topology's network namespaces.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::socket::{self, MsgFlags, SockaddrIn};
use sctp_repair::{Error, Mode};

use crate::net::{self, Topology, HOST_A, PEER_C};

const PORT: u16 = 7200;

/// A one-to-one SCTP socket (SOCK_STREAM, IPPROTO_SCTP).
pub fn sctp_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)");
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sin(ip: Ipv4Addr, port: u16) -> SockaddrIn {
    SockaddrIn::from(SocketAddrV4::new(ip, port))
}

/// A listener on peer C, and an association to it from host A; returns
/// (client, accepted server side).
fn association() -> Result<(OwnedFd, OwnedFd)> {
    let c = net::host_addr(PEER_C);
    let listener = net::in_netns(PEER_C, move || {
        let l = sctp_socket()?;
        socket::setsockopt(&l, socket::sockopt::ReuseAddr, &true)?;
        socket::bind(l.as_raw_fd(), &sin(c, PORT))?;
        socket::listen(&l, socket::Backlog::new(8)?)?;
        Ok(l)
    })?;
    let client = net::in_netns(HOST_A, move || {
        let s = sctp_socket()?;
        socket::connect(s.as_raw_fd(), &sin(c, PORT)).context("connect to peer C")?;
        Ok(s)
    })?;
    let acc = socket::accept(listener.as_raw_fd()).context("accept")?;
    // SAFETY: accept returned a new fd we now own.
    let server = unsafe { OwnedFd::from_raw_fd(acc) };
    Ok((client, server))
}

/// Waits up to `limit` for data on `fd`; returns what arrived (empty if
/// nothing did).
fn recv_within(fd: &OwnedFd, limit: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    loop {
        match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(nix::errno::Errno::EAGAIN) => return Ok(Vec::new()),
            Err(e) => return Err(e).context("recv"),
        }
    }
}

/// The crate freezes and thaws a real association: while frozen nothing
/// reaches the peer; after thawing the queued message does, once.
pub fn crate_freeze_thaw() -> Result<()> {
    let _topo = Topology::build()?;
    let (client, server) = association()?;
    ensure!(
        sctp_repair::mode(client.as_fd())? == Mode::Off,
        "a new association must not be in repair mode"
    );

    sctp_repair::set_mode(client.as_fd(), Mode::On)?;
    ensure!(
        sctp_repair::mode(client.as_fd())? == Mode::On,
        "mode did not read back as On"
    );
    socket::send(client.as_raw_fd(), b"while-frozen", MsgFlags::empty())
        .context("send while frozen")?;
    let got = recv_within(&server, Duration::from_millis(1500))?;
    if !got.is_empty() {
        bail!("a frozen association delivered {got:?} to the peer");
    }
    println!("  frozen: nothing reached the peer in 1.5 s");

    sctp_repair::set_mode(client.as_fd(), Mode::Off)?;
    let got = recv_within(&server, Duration::from_secs(5))?;
    ensure!(got == b"while-frozen", "after thawing the peer got {got:?}");
    let again = recv_within(&server, Duration::from_millis(500))?;
    ensure!(again.is_empty(), "the message was delivered twice");
    println!("  thawed: the queued message arrived once");
    Ok(())
}

/// Without CAP_NET_ADMIN the crate reports PermissionDenied, and a
/// one-to-many socket NotOneToOne.
pub fn crate_errors() -> Result<()> {
    let s = sctp_socket()?;
    // Capabilities are per thread: drop them on a scratch thread only, with
    // the raw syscall (glibc's setresuid would change every thread).
    let raw = s.as_raw_fd();
    let res = std::thread::spawn(move || {
        // SAFETY: changes only this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        if rc != 0 {
            return Err(anyhow::anyhow!(
                "setresuid: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `s` outlives this thread (joined below).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        Ok(sctp_repair::set_mode(fd, Mode::On))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread panicked"))??;
    ensure!(
        matches!(res, Err(Error::PermissionDenied)),
        "unprivileged set_mode gave {res:?}"
    );
    println!(
        "  unprivileged: {}",
        res.err().map(|e| e.to_string()).unwrap_or_default()
    );

    // SAFETY: plain socket(2), owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP) };
    ensure!(
        fd >= 0,
        "socket(SOCK_SEQPACKET): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fresh fd.
    let m = unsafe { OwnedFd::from_raw_fd(fd) };
    let res = sctp_repair::set_mode(m.as_fd(), Mode::On);
    ensure!(
        matches!(res, Err(Error::NotOneToOne)),
        "one-to-many socket gave {res:?}"
    );
    println!(
        "  one-to-many: {}",
        res.err().map(|e| e.to_string()).unwrap_or_default()
    );
    Ok(())
}
