//! In-guest tests of the `sctp-repair` crate on the patched kernel, with
//! real associations between the topology's network namespaces.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::socket::{self, MsgFlags, SockaddrIn, SockaddrStorage};
use sctp_repair::{Error, Mode};

use crate::net::{self, Topology, HOST_A, HOST_B, PEER_C};

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

/// Sends `msg` and waits for exactly it on `to`.
fn exchange(from: &OwnedFd, to: &OwnedFd, msg: &[u8]) -> Result<()> {
    socket::send(from.as_raw_fd(), msg, MsgFlags::empty()).context("send")?;
    let got = recv_within(to, Duration::from_secs(10))?;
    ensure!(
        got == msg,
        "expected {:?}, got {:?}",
        String::from_utf8_lossy(msg),
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

/// An association between a "container" on host A (service address
/// 192.0.2.20 or 2001:db8::20) and peer C is frozen, captured through the
/// crate's serialised form, its socket closed and its netns destroyed; a
/// new netns on host B takes the address, the snapshot is restored there
/// and thawed. Repeated, moving A→B→A…; messages both ways after every move
/// keep their sequence and the peer's association is never restarted.
pub fn crate_move() -> Result<()> {
    move_many(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)), IpAddr::V4(net::host_addr(PEER_C)))
}

/// The same over IPv6.
pub fn crate_move_v6() -> Result<()> {
    move_many(
        IpAddr::V6("2001:db8::20".parse().context("address")?),
        IpAddr::V6(net::host_addr6(PEER_C)),
    )
}

fn socket_for(ip: IpAddr) -> Result<OwnedFd> {
    let fam = if ip.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn move_many(svc: IpAddr, c: IpAddr) -> Result<()> {
    const MOVES: usize = 20;
    let v4 = match svc {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::new(192, 0, 2, 20),
    };
    let cidr = match svc {
        IpAddr::V4(a) => format!("{a}/24"),
        IpAddr::V6(a) => format!("{a}/64"),
    };
    let mut topo = Topology::build()?;
    let mut ctr = topo.container(HOST_A, "mover", "mover0", v4)?;
    if svc.is_ipv6() {
        net::add_addr(&ctr, "eth0", &cidr)?;
    }
    let peer_sa = SockaddrStorage::from(SocketAddr::new(c, PORT));
    let listener = net::in_netns(PEER_C, move || {
        let l = socket_for(c)?;
        socket::bind(l.as_raw_fd(), &peer_sa)?;
        socket::listen(&l, socket::Backlog::new(8)?)?;
        Ok(l)
    })?;
    let mut mover = net::in_netns(&ctr, move || {
        let s = socket_for(svc)?;
        socket::bind(s.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(svc, 0)))?;
        socket::connect(s.as_raw_fd(), &peer_sa).context("connect to peer C")?;
        Ok(s)
    })?;
    // SAFETY: accept returned a new fd we now own.
    let peer = unsafe { OwnedFd::from_raw_fd(socket::accept(listener.as_raw_fd()).context("accept")?) };
    let peer_id = peer_assoc_id(&peer)?;
    let mut seq = 0u64;
    let mut image_bytes = 0usize;
    for i in 0..MOVES {
        exchange(&mover, &peer, format!("m:{seq}").as_bytes())?;
        exchange(&peer, &mover, format!("p:{seq}").as_bytes())?;
        seq += 1;

        sctp_repair::set_mode(mover.as_fd(), Mode::On)?;
        let snap = sctp_repair::capture(mover.as_fd())?;
        let bytes = snap.encode();
        image_bytes = bytes.len();
        drop(mover); // closed in repair mode: the peer hears nothing
        let to = if i % 2 == 0 { HOST_B } else { HOST_A };
        topo.remove_container(&ctr)?;
        ctr = topo.container(to, "mover", "mover0", v4)?;
        if svc.is_ipv6() {
            net::add_addr(&ctr, "eth0", &cidr)?;
        }
        mover = net::in_netns(&ctr, move || {
            let snap = sctp_repair::Snapshot::decode(&bytes)?;
            let s = sctp_repair::restore(&snap)?;
            sctp_repair::set_mode(s.as_fd(), Mode::Off)?;
            Ok(s)
        })?;
        net::announce(&ctr, "eth0", v4)?;
    }
    exchange(&mover, &peer, format!("m:{seq}").as_bytes())?;
    exchange(&peer, &mover, format!("p:{seq}").as_bytes())?;
    ensure!(peer_assoc_id(&peer)? == peer_id, "the peer's association changed (restart)");
    println!("  {MOVES} moves A<->B over {}: messages flowed both ways after each, the peer's association never restarted", if svc.is_ipv4() { "IPv4" } else { "IPv6" });
    println!("  serialised snapshot: {image_bytes} bytes");
    Ok(())
}

/// SCTP_STATUS of the peer's association: (assoc id, state).
fn peer_assoc_id(s: &OwnedFd) -> Result<(i32, i32)> {
    // struct sctp_status starts with sstat_assoc_id (s32), sstat_state (s32).
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: valid fd, a buffer of `len` bytes and its length.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_SCTP,
            14,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    ensure!(
        rc == 0,
        "getsockopt(SCTP_STATUS): {}",
        std::io::Error::last_os_error()
    );
    let id = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let state = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    // SCTP_ESTABLISHED is 4 in enum sctp_sstat_state.
    ensure!(
        state == 4,
        "the peer's association is in state {state}, not ESTABLISHED"
    );
    Ok((id, state))
}

/// On a kernel without our patches the crate says so with a typed error,
/// on a real SCTP socket (not a confusing errno).
pub fn stock_unsupported() -> Result<()> {
    let s = sctp_socket()?;
    let res = sctp_repair::set_mode(s.as_fd(), Mode::On);
    ensure!(
        matches!(res, Err(Error::Unsupported)),
        "set_mode on a stock kernel gave {res:?}"
    );
    let res = sctp_repair::mode(s.as_fd());
    ensure!(
        matches!(res, Err(Error::Unsupported)),
        "mode on a stock kernel gave {res:?}"
    );
    println!("  {}", res.err().map(|e| e.to_string()).unwrap_or_default());
    Ok(())
}
