//! In-guest tests of the `sctp-repair` crate on the patched kernel, with
//! real associations between the topology's network namespaces.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::socket::{self, MsgFlags, SockaddrIn, SockaddrStorage};
use sctp_repair::{Error, Mode};

use crate::net::{self, Topology, HOST_A, HOST_B, PEER_C};
use crate::sctp_traffic::{self, Sent, Tally};

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
pub(crate) fn association() -> Result<(OwnedFd, OwnedFd)> {
    let c = net::host_addr(PEER_C);
    let listener = listener_on_c(PORT, 8)?;
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

/// An SCTP listener on peer C's address, port `port`.
fn listener_on_c(port: u16, backlog: i32) -> Result<OwnedFd> {
    let c = net::host_addr(PEER_C);
    net::in_netns(PEER_C, move || {
        let l = sctp_socket()?;
        socket::setsockopt(&l, socket::sockopt::ReuseAddr, &true)?;
        socket::bind(l.as_raw_fd(), &sin(c, port))?;
        socket::listen(&l, socket::Backlog::new(backlog)?)?;
        Ok(l)
    })
}

/// Waits up to `limit` for data on `fd`; returns what arrived (empty if
/// nothing did).
fn recv_within(fd: &OwnedFd, limit: Duration) -> Result<Vec<u8>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    loop {
        match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(nix::errno::Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Vec::new());
                }
                // Woken by the data itself: the latency figures depend on it.
                let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e).context("poll"),
                }
            }
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

/// Without CAP_NET_ADMIN the crate reports PermissionDenied; a one-to-many
/// socket goes into repair mode and out.
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
    // One-to-many sockets have a repair mode too (a peeled-off one has
    // not: the kernel selftest checks its EOPNOTSUPP, a unit test its
    // mapping to NotRepairable).
    sctp_repair::set_mode(m.as_fd(), Mode::On).context("one-to-many socket into repair mode")?;
    ensure!(
        sctp_repair::mode(m.as_fd())? == Mode::On,
        "one-to-many socket not in repair mode"
    );
    sctp_repair::set_mode(m.as_fd(), Mode::Off)?;
    println!("  one-to-many: into repair mode and out");
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
    move_many(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)),
        IpAddr::V4(net::host_addr(PEER_C)),
    )
}

/// The same over IPv6.
pub fn crate_move_v6() -> Result<()> {
    move_many(
        IpAddr::V6("2001:db8::20".parse().context("address")?),
        IpAddr::V6(net::host_addr6(PEER_C)),
    )
}

fn socket_for(ip: IpAddr) -> Result<OwnedFd> {
    let fam = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A "container" netns holding one end of an association (the mover) and
/// peer C holding the other, with the means to move the mover's netns and
/// socket between hosts A and B.
struct Rig {
    topo: Topology,
    ctr: String,
    svc: IpAddr,
    /// The container's IPv4 address (also set for IPv6 runs: it carries
    /// the gratuitous ARP that re-points the switches).
    v4: Ipv4Addr,
    mover: OwnedFd,
    peer: OwnedFd,
    peer_id: (i32, i32),
    moves: usize,
    snapshot_bytes: usize,
    /// The snapshot of the last move.
    last: Option<sctp_repair::Snapshot>,
    caught: Caught,
    /// Multi-homed: the mover also has [`MH_SVC2`], the peer [`MH_PEER2`].
    second: bool,
}

/// Second addresses of a multi-homed association, on another subnet of
/// the same LAN: the mover's and the peer's.
const MH_SVC2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const MH_PEER2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

/// How many moves caught data in each queue (from the snapshots).
#[derive(Default, Debug)]
struct Caught {
    unsent: usize,
    in_flight: usize,
    unread: usize,
    partial: usize,
    /// In partial delivery with every piece so far read (PD_OPEN).
    pd_read: usize,
}

impl Caught {
    fn add(&mut self, records: &[sctp_repair::QueueRecord]) {
        use epcmig_sys::sctp_repair as uapi;
        let flags = |r: &sctp_repair::QueueRecord| {
            r.data
                .get(8..12)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let any = |q: u32| records.iter().any(|r| u32::from(r.queue) == q);
        self.unsent += usize::from(any(uapi::SCTP_REPAIR_QUEUE_SEND_UNSENT));
        self.in_flight += usize::from(any(uapi::SCTP_REPAIR_QUEUE_SEND_INFLIGHT));
        self.unread += usize::from(any(uapi::SCTP_REPAIR_QUEUE_RECV));
        self.partial += usize::from(records.iter().any(|r| {
            u32::from(r.queue) == uapi::SCTP_REPAIR_QUEUE_RECV
                && flags(r) & uapi::SCTP_REPAIR_CHUNK_REASM != 0
        }));
        self.pd_read += usize::from(
            records
                .iter()
                .any(|r| flags(r) & uapi::SCTP_REPAIR_CHUNK_PD_OPEN != 0),
        );
    }
}

impl Rig {
    fn new(svc: IpAddr, c: IpAddr) -> Result<Rig> {
        Self::with(svc, c, false, false)
    }

    /// Both ends have two addresses (IPv4 only).
    fn multihomed(svc: Ipv4Addr, c: Ipv4Addr) -> Result<Rig> {
        Self::with(IpAddr::V4(svc), IpAddr::V4(c), true, false)
    }

    /// The association uses SCTP-AUTH (see [`auth_setup`]).
    fn authenticated(svc: IpAddr, c: IpAddr) -> Result<Rig> {
        Self::with(svc, c, false, true)
    }

    fn with(svc: IpAddr, c: IpAddr, second: bool, auth: bool) -> Result<Rig> {
        let v4 = match svc {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::new(192, 0, 2, 20),
        };
        let mut topo = Topology::build()?;
        let ctr = Self::container(&mut topo, HOST_A, svc, v4, second, false)?;
        if second {
            net::add_addr(PEER_C, "eth0", &format!("{MH_PEER2}/24"))?;
        }
        let peer_sa = SockaddrStorage::from(SocketAddr::new(c, PORT));
        let listener = net::in_netns(PEER_C, move || {
            if auth {
                auth_enable()?;
            }
            let l = socket_for(c)?;
            if auth {
                auth_setup(&l)?;
            }
            socket::bind(l.as_raw_fd(), &peer_sa)?;
            if second {
                bindx_add(&l, MH_PEER2)?;
            }
            socket::listen(&l, socket::Backlog::new(8)?)?;
            Ok(l)
        })?;
        let mover = net::in_netns(&ctr, move || {
            if auth {
                auth_enable()?;
            }
            let s = socket_for(svc)?;
            if auth {
                auth_setup(&s)?;
            }
            socket::bind(
                s.as_raw_fd(),
                &SockaddrStorage::from(SocketAddr::new(svc, 0)),
            )?;
            if second {
                bindx_add(&s, MH_SVC2)?;
            }
            set_streams(&s, 8)?;
            socket::connect(s.as_raw_fd(), &peer_sa).context("connect to peer C")?;
            Ok(s)
        })?;
        // SAFETY: accept returned a new fd we now own.
        let peer = unsafe {
            OwnedFd::from_raw_fd(socket::accept(listener.as_raw_fd()).context("accept")?)
        };
        let peer_id = peer_status(&peer)?;
        Ok(Rig {
            topo,
            ctr,
            svc,
            v4,
            mover,
            peer,
            peer_id,
            moves: 0,
            snapshot_bytes: 0,
            last: None,
            caught: Caught::default(),
            second,
        })
    }

    /// The mover's container on `host`; a target of a move is `locked`
    /// from the start (see [`Topology::container_locked`]).
    fn container(
        topo: &mut Topology,
        host: &str,
        svc: IpAddr,
        v4: Ipv4Addr,
        second: bool,
        locked: bool,
    ) -> Result<String> {
        let ctr = if locked {
            topo.container_locked(host, "mover", "mover0", v4)?
        } else {
            topo.container(host, "mover", "mover0", v4)?
        };
        if second {
            net::add_addr(&ctr, "eth0", &format!("{MH_SVC2}/24"))?;
        }
        if let IpAddr::V6(a) = svc {
            net::add_addr(&ctr, "eth0", &format!("{a}/64"))?;
        }
        Ok(ctr)
    }

    /// Freeze, capture (through the serialised form), close, move the
    /// container to the other host, restore, thaw.
    fn move_once(&mut self) -> Result<()> {
        let (frozen, snap) =
            sctp_repair::freeze_and_capture(self.mover.as_fd(), Duration::from_secs(5)).map_err(
                |e| {
                    let mover = assoc_state(&self.mover).map(|s| s.1);
                    anyhow::anyhow!("{e} (mover in state {mover:?})")
                },
            )?;
        // Kept frozen: it is closed below, silently.
        frozen.release();
        self.caught.add(&snap.queues);
        let bytes = snap.encode();
        self.snapshot_bytes = bytes.len();
        self.last = Some(snap);
        // As CRIU's network lock does: once the socket is gone, the source
        // must not answer the peer (its kernel would send ABORT), and the
        // target must not before the association is back.
        net::lock(&self.ctr)?;
        // Closed in repair mode: the peer hears nothing.
        let old = std::mem::replace(&mut self.mover, sctp_socket()?);
        drop(old);
        let to = if self.moves % 2 == 0 { HOST_B } else { HOST_A };
        self.topo.remove_container(&self.ctr)?;
        self.ctr = Self::container(&mut self.topo, to, self.svc, self.v4, self.second, true)?;
        let restored = net::in_netns(&self.ctr, move || {
            let snap = sctp_repair::Snapshot::decode(&bytes)?;
            sctp_repair::restore(&snap).map_err(anyhow::Error::from)
        })?;
        net::unlock(&self.ctr)?;
        self.mover = restored.thaw()?;
        net::announce(&self.ctr, "eth0", self.v4)?;
        if self.second {
            net::announce(&self.ctr, "eth0", MH_SVC2)?;
        }
        self.moves += 1;
        Ok(())
    }

    /// The peer's association must be the same one, still ESTABLISHED.
    fn check_peer(&self) -> Result<()> {
        ensure!(
            peer_status(&self.peer)? == self.peer_id,
            "the peer's association changed (restart)"
        );
        Ok(())
    }
}

/// net.sctp.auth_enable=1 in the calling thread's netns: its SCTP
/// endpoints made from now on support SCTP-AUTH.
fn auth_enable() -> Result<()> {
    // A net sysctl is the one of the netns of whoever opens it.
    std::fs::write("/proc/sys/net/sctp/auth_enable", "1").context("net.sctp.auth_enable=1")
}

/// The shared key of [`auth_setup`].
const AUTH_SECRET: &[u8] = b"S1-MME shared key";

/// SCTP-AUTH on `s`: DATA must come authenticated, and key 1 is shared
/// with the peer and sent with (SCTP_AUTH_CHUNK, SCTP_AUTH_KEY,
/// SCTP_AUTH_ACTIVE_KEY).
fn auth_setup(s: &OwnedFd) -> Result<()> {
    // struct sctp_authchunk { u8 sauth_chunk; }: DATA is chunk type 0.
    sctp_setsockopt(s, 21, "SCTP_AUTH_CHUNK", &[0u8])?;
    // struct sctp_authkey { s32 assoc_id; u16 keynumber; u16 keylength; u8 key[]; }
    let mut key = vec![0u8; 8];
    key[4..6].copy_from_slice(&1u16.to_ne_bytes());
    key[6..8].copy_from_slice(&(AUTH_SECRET.len() as u16).to_ne_bytes());
    key.extend_from_slice(AUTH_SECRET);
    sctp_setsockopt(s, 23, "SCTP_AUTH_KEY", &key)?;
    // struct sctp_authkeyid { s32 assoc_id; u16 keynumber; } (8 bytes)
    let mut id = [0u8; 8];
    id[4..6].copy_from_slice(&1u16.to_ne_bytes());
    sctp_setsockopt(s, 24, "SCTP_AUTH_ACTIVE_KEY", &id)
}

/// RTO 100..1000 ms and 40 retransmissions for the association of `s`
/// (SCTP_RTOINFO, SCTP_ASSOCINFO).
pub fn tune_timers(s: &OwnedFd) -> Result<()> {
    // struct sctp_rtoinfo { assoc_id s32; initial, max, min u32 }
    let mut rto = [0u8; 16];
    for (at, v) in [(4, 300u32), (8, 1000), (12, 100)] {
        rto[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    sctp_setsockopt(s, 0, "SCTP_RTOINFO", &rto)?;
    set_max_retrans(s, 40)
}

/// The association's maximum retransmissions (SCTP_ASSOCINFO).
pub fn set_max_retrans(s: &OwnedFd, n: u16) -> Result<()> {
    // struct sctp_assocparams { assoc_id s32; asocmaxrxt u16; peer
    // destinations u16; peer_rwnd, local_rwnd, cookie_life u32 }: zeroes
    // leave the others unchanged.
    let mut assoc = [0u8; 20];
    assoc[4..6].copy_from_slice(&n.to_ne_bytes());
    if sctp_setsockopt(s, 1, "SCTP_ASSOCINFO", &assoc).is_ok() {
        return Ok(());
    }
    // A multi-homed association refuses more than the sum of its paths'
    // maximum retransmissions: raise theirs to `n` first. struct
    // sctp_paddrparams (packed): assoc_id s32, address (128, all zero:
    // every path), hbinterval u32, pathmaxrxt u16 at 136, ...; 156 bytes.
    let mut paddr = [0u8; 156];
    paddr[136..138].copy_from_slice(&n.to_ne_bytes());
    sctp_setsockopt(s, 9, "SCTP_PEER_ADDR_PARAMS", &paddr)?;
    sctp_setsockopt(s, 1, "SCTP_ASSOCINFO", &assoc)
}

/// `n` retransmissions before each path of the association of `s` is
/// taken for unreachable (SCTP_PEER_ADDR_PARAMS spp_pathmaxrxt, for the
/// association and all its paths).
fn set_pathmaxrxt(s: &OwnedFd, n: u16) -> Result<()> {
    // struct sctp_paddrparams, packed, aligned(4): assoc_id s32,
    // sockaddr_storage (zero: every path), hbinterval u32, pathmaxrxt u16
    // at 136, then pathmtu, sackdelay, flags, flowlabel (zero: unchanged),
    // dscp u8; 156 bytes.
    let mut v = [0u8; 156];
    v[136..138].copy_from_slice(&n.to_ne_bytes());
    sctp_setsockopt(s, 9, "SCTP_PEER_ADDR_PARAMS", &v)
}

/// setsockopt(SOL_SCTP, `name`) with the raw struct `v`; `what` names it
/// in the error.
pub(crate) fn sctp_setsockopt(s: &OwnedFd, name: libc::c_int, what: &str, v: &[u8]) -> Result<()> {
    // SAFETY: valid fd; `v` is the complete struct of the option.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_SCTP,
            name,
            v.as_ptr().cast(),
            v.len() as libc::socklen_t,
        )
    };
    ensure!(
        rc == 0,
        "setsockopt({what}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Adds `addr` (same port) to the addresses `s` is bound to
/// (SCTP_SOCKOPT_BINDX_ADD).
fn bindx_add(s: &OwnedFd, addr: Ipv4Addr) -> Result<()> {
    const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
    // One struct sockaddr_in, port 0 (the one the socket has).
    let mut sin = [0u8; 16];
    sin[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    sin[4..8].copy_from_slice(&addr.octets());
    sctp_setsockopt(
        s,
        SCTP_SOCKOPT_BINDX_ADD,
        &format!("sctp_bindx {addr}"),
        &sin,
    )
}

/// Makes the path to `addr` the primary one of the association of `s`
/// (SCTP_PRIMARY_ADDR).
fn set_primary(s: &OwnedFd, addr: SocketAddrV4) -> Result<()> {
    const SCTP_PRIMARY_ADDR: libc::c_int = 6;
    // struct sctp_prim { s32 assoc_id; struct sockaddr_storage } packed.
    let mut v = [0u8; 4 + 128];
    v[4..6].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    v[6..8].copy_from_slice(&addr.port().to_be_bytes());
    v[8..12].copy_from_slice(&addr.ip().octets());
    sctp_setsockopt(
        s,
        SCTP_PRIMARY_ADDR,
        &format!("SCTP_PRIMARY_ADDR {addr}"),
        &v,
    )
}

/// The primary path of the association of `s` (SCTP_STATUS: struct
/// sctp_paddrinfo at offset 24, its address after the assoc id).
fn primary_of(s: &OwnedFd) -> Result<Option<SocketAddrV4>> {
    let buf = sctp_status(s)?;
    let fam = u16::from_ne_bytes([buf[28], buf[29]]);
    if i32::from(fam) != libc::AF_INET {
        return Ok(None);
    }
    let port = u16::from_be_bytes([buf[30], buf[31]]);
    let ip = Ipv4Addr::new(buf[32], buf[33], buf[34], buf[35]);
    Ok(Some(SocketAddrV4::new(ip, port)))
}

/// Asks for `n` outbound and inbound streams (SCTP_INITMSG).
pub fn set_streams(s: &OwnedFd, n: u16) -> Result<()> {
    // struct sctp_initmsg { u16 num_ostreams, max_instreams, max_attempts, max_init_timeo; }
    let mut v = [0u8; 8];
    v[0..2].copy_from_slice(&n.to_ne_bytes());
    v[2..4].copy_from_slice(&n.to_ne_bytes());
    sctp_setsockopt(s, 2, "SCTP_INITMSG", &v)
}

fn move_many(svc: IpAddr, c: IpAddr) -> Result<()> {
    const MOVES: usize = 20;
    let mut rig = Rig::new(svc, c)?;
    tune(&rig.mover)?;
    check_tuned(&rig.mover, 0)?;
    let mut seq = 0u64;
    for _ in 0..MOVES {
        exchange(&rig.mover, &rig.peer, format!("m:{seq}").as_bytes())?;
        exchange(&rig.peer, &rig.mover, format!("p:{seq}").as_bytes())?;
        seq += 1;
        rig.move_once()?;
    }
    exchange(&rig.mover, &rig.peer, format!("m:{seq}").as_bytes())?;
    exchange(&rig.peer, &rig.mover, format!("p:{seq}").as_bytes())?;
    rig.check_peer()?;
    check_tuned(&rig.mover, MOVES)?;
    println!(
        "  {MOVES} moves A<->B over {}: messages flowed both ways after each, the peer's association never restarted; tuned options kept, defaults stayed",
        if svc.is_ipv4() { "IPv4" } else { "IPv6" }
    );
    println!("  serialised snapshot: {} bytes", rig.snapshot_bytes);
    Ok(())
}

/// A multi-homed association (two addresses each side) moves 100 times
/// A<->B under continuous traffic both ways, with its primary path, which
/// is not the one it was set up on: after every move both addresses each
/// side and the primary are the same, and at the end no message was lost,
/// duplicated or reordered and the peer's association never restarted.
/// (Its reader keeps up with every piece of a message delivered partially:
/// this test found the restore of a partial delivery read so far, fixed by
/// SCTP_REPAIR_CHUNK_PD_OPEN, kernel-patches/sctp/0014.)
pub fn crate_move_multihomed() -> Result<()> {
    let svc = Ipv4Addr::new(192, 0, 2, 20);
    let mut rig = Rig::multihomed(svc, net::host_addr(PEER_C))?;
    let primary = SocketAddrV4::new(MH_PEER2, PORT);
    // The second path is confirmed by a heartbeat first.
    std::thread::sleep(Duration::from_secs(2));
    set_primary(&rig.mover, primary)?;
    ensure!(
        primary_of(&rig.mover)? == Some(primary),
        "the primary path is {:?}, not {primary}",
        primary_of(&rig.mover)?
    );
    let check = |rig: &Rig| -> Result<()> {
        let when = format!("after move {}", rig.moves);
        ensure!(
            primary_of(&rig.mover)? == Some(primary),
            "{when}: the primary path is {:?}, not {primary}",
            primary_of(&rig.mover)?
        );
        let snap = rig.last.as_ref().context("no snapshot")?;
        let info = snap
            .assoc_info()
            .context("no association in the snapshot")?;
        let mut local: Vec<IpAddr> = snap.local_addrs.iter().map(|a| a.ip()).collect();
        local.sort();
        ensure!(
            info.paths == 2 && local == [IpAddr::V4(svc), IpAddr::V4(MH_SVC2)],
            "{when}: {} paths, local addresses {local:?}",
            info.paths
        );
        ensure!(
            info.primary == Some(SocketAddr::V4(primary)),
            "{when}: the snapshot's primary is {:?}",
            info.primary
        );
        Ok(())
    };
    // tune_timers() allows 40 retransmissions per association, which the
    // kernel refuses (EINVAL) above the sum of the paths' own limits.
    set_pathmaxrxt(&rig.peer, 20)?;
    set_pathmaxrxt(&rig.mover, 20)?;
    move_under_traffic(
        &mut rig,
        100,
        "of an association with 2 addresses each side",
        check,
    )?;
    println!("  both paths and the primary ({primary}) kept after every move");
    Ok(())
}

/// Sends `n` messages of the mix from `from` and checks them all at `to`.
fn burst(from: &OwnedFd, to: &OwnedFd, sent: &mut Sent, tally: &mut Tally, n: u64) -> Result<()> {
    for _ in 0..n {
        let i = sent.count;
        sent.send_next(from.as_fd(), 8, i)?;
    }
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally.received < sent.count {
        if Instant::now() > deadline {
            bail!("only {} of {} messages arrived", tally.received, sent.count);
        }
        set_rcvtimeo(to, Duration::from_millis(200))?;
        if let Some(m) = sctp_traffic::recv(to.as_fd(), &mut buf)? {
            tally.check(&m);
        }
    }
    tally.complete(&sent.next)
}

fn set_rcvtimeo(s: &OwnedFd, d: Duration) -> Result<()> {
    let tv = nix::sys::time::TimeVal::new(d.as_secs() as i64, d.subsec_micros() as i64);
    socket::setsockopt(s, socket::sockopt::ReceiveTimeout, &tv)?;
    Ok(())
}

/// Moves between bursts of messages both ways on 8 streams, ordered and
/// unordered, 1 byte to 9000 (above the 1500-byte MTU): per-stream
/// sequence numbers (SSN/MID state) and payload checksums hold across
/// every move.
pub fn crate_move_streams() -> Result<()> {
    const MOVES: usize = 10;
    const BURST: u64 = 40;
    let mut rig = Rig::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)),
        IpAddr::V4(net::host_addr(PEER_C)),
    )?;
    let (mut up, mut down) = (Sent::default(), Sent::default());
    let (mut at_peer, mut at_mover) = (Tally::default(), Tally::default());
    for _ in 0..MOVES {
        burst(&rig.mover, &rig.peer, &mut up, &mut at_peer, BURST)?;
        burst(&rig.peer, &rig.mover, &mut down, &mut at_mover, BURST)?;
        rig.move_once()?;
    }
    burst(&rig.mover, &rig.peer, &mut up, &mut at_peer, BURST)?;
    burst(&rig.peer, &rig.mover, &mut down, &mut at_mover, BURST)?;
    rig.check_peer()?;
    println!(
        "  {MOVES} moves; {} messages ({} bytes) to the peer and {} ({} bytes) back, on 8 streams, \
         ordered and unordered, 1..9000 bytes: none lost, duplicated, reordered or corrupt",
        at_peer.received, at_peer.bytes, at_mover.received, at_mover.bytes
    );
    Ok(())
}

/// SCTP_STATUS of the peer's association: (assoc id, state).
pub fn peer_status(s: &OwnedFd) -> Result<(i32, i32)> {
    let (id, state) = assoc_state(s)?;
    // SCTP_ESTABLISHED is 4 in enum sctp_sstat_state.
    ensure!(
        state == 4,
        "the peer's association is in state {state}, not ESTABLISHED"
    );
    Ok((id, state))
}

/// The association ids of the associations in netns `ns`
/// (/proc/net/sctp/assocs, column ASSOC-ID).
pub(crate) fn assoc_ids_in(ns: &str) -> Result<Vec<i32>> {
    net::in_netns(ns, || {
        let t = std::fs::read_to_string("/proc/thread-self/net/sctp/assocs")
            .context("reading /proc/net/sctp/assocs")?;
        let mut lines = t.lines();
        let head: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let col = head
            .iter()
            .position(|h| *h == "ASSOC-ID")
            .context("no ASSOC-ID column in /proc/net/sctp/assocs")?;
        lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .nth(col)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("no association id in {l:?}"))
            })
            .collect()
    })
}

/// The primary path as SCTP_STATUS shows it: unacked chunks, path state,
/// cwnd, SRTT, RTO (for traces of a struggling association).
fn path_diag(s: &OwnedFd) -> String {
    let buf = match sctp_status(s) {
        Ok(b) => b,
        Err(e) => return e.to_string(),
    };
    let u16_at = |at: usize| u16::from_ne_bytes([buf[at], buf[at + 1]]);
    let u32_at = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    // sctp_status: rwnd @8, unackdata @12; sctp_paddrinfo @24: address
    // @28 (128), state s32 @156, cwnd @160, srtt @164, rto @168.
    format!(
        "rwnd {} unacked {} path state {} cwnd {} srtt {} rto {}",
        u32_at(8),
        u16_at(12),
        u32_at(156),
        u32_at(160),
        u32_at(164),
        u32_at(168)
    )
}

/// SCTP_STATUS: DATA chunks of the association not yet acknowledged.
pub fn unacked(s: &OwnedFd) -> Result<u16> {
    // struct sctp_status: sstat_unackdata (u16) at byte 12.
    let buf = sctp_status(s)?;
    Ok(u16::from_ne_bytes([buf[12], buf[13]]))
}

/// SCTP_STATUS: the association id and its state (enum sctp_sstat_state).
pub fn assoc_state(s: &OwnedFd) -> Result<(i32, i32)> {
    // struct sctp_status starts with sstat_assoc_id (s32), sstat_state (s32).
    let buf = sctp_status(s)?;
    let id = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let state = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Ok((id, state))
}

/// The raw struct sctp_status of the association of `s` (SCTP_STATUS).
fn sctp_status(s: &OwnedFd) -> Result<[u8; 256]> {
    const SCTP_STATUS: libc::c_int = 14;
    let mut buf = [0u8; 256];
    sctp_getsockopt(s, SCTP_STATUS, "SCTP_STATUS", &mut buf)?;
    Ok(buf)
}

/// getsockopt(SOL_SCTP, `name`) into `buf` (which may carry input, e.g.
/// an assoc id); `what` names it in the error.
pub(crate) fn sctp_getsockopt(
    s: &OwnedFd,
    name: libc::c_int,
    what: &str,
    buf: &mut [u8],
) -> Result<()> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: valid fd, a buffer of `len` bytes and its length.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_SCTP,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    ensure!(
        rc == 0,
        "getsockopt({what}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Options the moves must carry over, set away from their defaults, and
/// options that must stay at them (the restore skips writing defaults):
/// (name, what, value bytes to set, bytes of the value that are state).
const TUNED: &[(libc::c_int, &str, &[u8], usize)] = &[
    (3, "SCTP_NODELAY", &[1, 0, 0, 0], 4),
    // struct sctp_assoc_value { assoc_id 0, value 77 }
    (17, "SCTP_CONTEXT", &[0, 0, 0, 0, 77, 0, 0, 0], 8),
    (19, "SCTP_PARTIAL_DELIVERY_POINT", &[0, 16, 0, 0], 4),
    // struct sctp_sndinfo { sid 1, flags 0, ppid 46, context 5, assoc_id 0 }
    (
        34,
        "SCTP_DEFAULT_SNDINFO",
        &[1, 0, 0, 0, 46, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0],
        12,
    ),
    (18, "SCTP_FRAGMENT_INTERLEAVE", &[0, 0, 0, 0], 4),
    (32, "SCTP_RECVRCVINFO", &[0, 0, 0, 0], 4),
];

fn tune(s: &OwnedFd) -> Result<()> {
    for &(name, what, v, _) in TUNED {
        // Defaults are left alone: they must come back by themselves.
        if v.iter().any(|&b| b != 0) {
            sctp_setsockopt(s, name, what, v)?;
        }
    }
    Ok(())
}

/// Every option of [`TUNED`] has its value on `s` (after `moves` moves).
fn check_tuned(s: &OwnedFd, moves: usize) -> Result<()> {
    for &(name, what, v, state) in TUNED {
        let mut buf = vec![0u8; v.len()];
        sctp_getsockopt(s, name, what, &mut buf)?;
        ensure!(
            buf[..state] == v[..state],
            "after {moves} moves {what} is {:?}, was {:?}",
            &buf[..state],
            &v[..state]
        );
    }
    Ok(())
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

/// A listening socket is captured, its netns destroyed, and re-created in
/// a netns on host B that took over the address, with its backlog; a new
/// peer connects to it. The listener is captured from outside its netns,
/// as CRIU does.
pub fn crate_move_listener() -> Result<()> {
    const SVC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
    // Not the kernel's or anyone's default, and below somaxconn (4096).
    const BACKLOG: i32 = 37;
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "listener", "lsn0", SVC)?;
    let l = net::in_netns(&ctr, move || {
        let l = sctp_socket()?;
        socket::bind(l.as_raw_fd(), &sin(SVC, 36412))?;
        socket::listen(&l, socket::Backlog::new(BACKLOG)?)?;
        Ok(l)
    })?;
    // A listener on the same port in the capturing netns (this one) must
    // not be taken for it.
    let decoy = sctp_socket()?;
    socket::bind(decoy.as_raw_fd(), &sin(Ipv4Addr::UNSPECIFIED, 36412))?;
    socket::listen(&decoy, socket::Backlog::new(5)?)?;
    let snap = sctp_repair::capture(l.as_fd())?;
    drop(l);
    drop(decoy);
    ensure!(
        snap.kind == sctp_repair::Kind::Listen,
        "captured a {:?}",
        snap.kind
    );
    ensure!(
        snap.backlog == BACKLOG as u32,
        "captured backlog {}, listen() was given {BACKLOG}",
        snap.backlog
    );
    let bytes = snap.encode();
    topo.remove_container(&ctr)?;
    let ctr = topo.container(HOST_B, "listener", "lsn0", SVC)?;
    let (listener, backlog) = net::in_netns(&ctr, move || {
        // A listener with nothing waiting comes back running.
        let l = sctp_repair::restore(&sctp_repair::Snapshot::decode(&bytes)?)?.release();
        let again = sctp_repair::capture(l.as_fd())?;
        Ok((l, again.backlog))
    })?;
    ensure!(
        backlog == BACKLOG as u32,
        "the restored listener has backlog {backlog}, not {BACKLOG}"
    );
    net::announce(&ctr, "eth0", SVC)?;
    let client = net::in_netns(PEER_C, move || {
        let s = sctp_socket()?;
        socket::connect(s.as_raw_fd(), &sin(SVC, 36412))
            .context("connecting to the moved listener")?;
        Ok(s)
    })?;
    // SAFETY: accept returned a new fd we now own.
    let accepted =
        unsafe { OwnedFd::from_raw_fd(socket::accept(listener.as_raw_fd()).context("accept")?) };
    exchange(&client, &accepted, b"S1 Setup Request")?;
    exchange(&accepted, &client, b"S1 Setup Response")?;
    println!(
        "  listener moved A->B on {SVC}:36412 with its backlog ({BACKLOG}, read back from the \
         restored socket); a new peer connected and exchanged messages"
    );
    Ok(())
}

/// Print the peer's path after every move, not every tenth.
const TRACE: bool = false;

/// Continuous traffic both ways (8 streams, ordered and unordered, 1 to
/// 9000 bytes) while the mover's association is moved A→B→A… 100
/// times; each move catches data unsent, in flight and unread, carried by
/// the crate in the snapshot's queues. At the end every message arrived
/// exactly once, in order per stream, intact, and the peer's association
/// is the one it always had.
pub fn crate_move_under_traffic() -> Result<()> {
    let mut rig = Rig::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)),
        IpAddr::V4(net::host_addr(PEER_C)),
    )?;
    move_under_traffic(&mut rig, 100, "", |_| Ok(()))
}

/// An association that authenticates DATA both ways (SCTP-AUTH with a
/// shared key, net.sctp.auth_enable=1 where it was made) moves 30 times
/// under continuous traffic both ways: the restored socket computes the
/// same association key, so the peer keeps accepting our DATA and we its,
/// nothing is lost, and the peer sees no restart, abort or error.
pub fn crate_move_auth() -> Result<()> {
    let mut rig = Rig::authenticated(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)),
        IpAddr::V4(net::host_addr(PEER_C)),
    )?;
    let check = |rig: &Rig| -> Result<()> {
        let snap = rig.last.as_ref().context("no snapshot")?;
        let info = snap.assoc_info().context("no association")?;
        ensure!(
            info.features & epcmig_sys::sctp_repair::SCTP_REPAIR_FEAT_AUTH != 0
                && !snap.auth.is_empty(),
            "move {}: the snapshot has no SCTP-AUTH (features {:#x})",
            rig.moves,
            info.features
        );
        Ok(())
    };
    move_under_traffic(&mut rig, 30, "of an association using SCTP-AUTH", check)?;
    println!(
        "  the peer authenticated every DATA chunk with key 1 ({} bytes) throughout; \
         serialised snapshot with its SCTP-AUTH state: {} bytes",
        AUTH_SECRET.len(),
        rig.snapshot_bytes
    );
    Ok(())
}

/// The machinery of [`crate_move_under_traffic`]: continuous traffic both
/// ways over the association of `rig` while it is moved `moves` times;
/// `check` runs after every move (the mover is then the restored socket,
/// running). `what` describes the association in the summary.
fn move_under_traffic(
    rig: &mut Rig,
    moves: usize,
    what: &str,
    mut check: impl FnMut(&Rig) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const STREAMS: u16 = 8;
    // S1-style timers on both ends (RTO 100..1000 ms, 40 retransmissions
    // before giving up), as base stations and MMEs tune SCTP: with the
    // defaults (RTO up to 60 s) the peer's T3 timer backs off so far during
    // moves that it never retransmits between two of them. The mover's
    // values travel in its snapshot.
    tune_timers(&rig.peer)?;
    tune_timers(&rig.mover)?;
    // Any association event (COMM_LOST, RESTART, ABORT...) fails a reader.
    sctp_traffic::watch(rig.peer.as_fd())?;
    sctp_traffic::watch(rig.mover.as_fd())?;
    let shared = Arc::new(Mutex::new(std::mem::replace(
        &mut rig.mover,
        sctp_socket()?,
    )));
    let peer = Arc::new(std::mem::replace(&mut rig.peer, sctp_socket()?));
    set_rcvtimeo(&peer, Duration::from_millis(200))?;
    let tv = nix::sys::time::TimeVal::new(0, 200_000);
    socket::setsockopt(&*peer, socket::sockopt::SendTimeout, &tv)?;
    let stop = Arc::new(AtomicBool::new(false));

    // Mover -> peer.
    let (s1, st1) = (shared.clone(), stop.clone());
    let up_writer = std::thread::spawn(move || -> Result<Sent> {
        let mut sent = Sent::default();
        while !st1.load(Ordering::SeqCst) {
            let ok = {
                let g = s1.lock().unwrap_or_else(|p| p.into_inner());
                sent.try_send_next(g.as_fd(), STREAMS, sent.count, libc::MSG_DONTWAIT)?
            };
            std::thread::sleep(Duration::from_millis(if ok { 2 } else { 5 }));
        }
        Ok(sent)
    });
    let (p1, st2) = (peer.clone(), stop.clone());
    let up_reader = std::thread::spawn(move || -> Result<Tally> {
        let mut t = Tally::default();
        let mut buf = vec![0u8; 65536];
        let mut idle = 0;
        // After stop, read until 3 s pass with nothing new.
        while !st2.load(Ordering::SeqCst) || idle < 15 {
            match sctp_traffic::recv(p1.as_fd(), &mut buf)? {
                Some(m) => {
                    t.check(&m);
                    idle = 0;
                }
                None => idle += 1,
            }
        }
        Ok(t)
    });
    // Peer -> mover.
    let (p2, st3) = (peer.clone(), stop.clone());
    let down_writer = std::thread::spawn(move || -> Result<Sent> {
        let mut sent = Sent::default();
        while !st3.load(Ordering::SeqCst) {
            // Blocks up to 200 ms while the mover is frozen and the
            // window fills; the same message is tried again then.
            sent.try_send_next(p2.as_fd(), STREAMS, sent.count, 0)?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(sent)
    });
    let (s2, st4) = (shared.clone(), stop.clone());
    let down_reader = std::thread::spawn(move || -> Result<Tally> {
        let mut t = Tally::default();
        let mut buf = vec![0u8; 65536];
        // Pieces of a message kept across reads: a move may come between
        // two of them, and the rest then comes from the restored socket.
        let mut msg = Vec::new();
        let mut idle = 0;
        while !st4.load(Ordering::SeqCst) || idle < 3000 {
            let piece = {
                let g = s2.lock().unwrap_or_else(|p| p.into_inner());
                sctp_traffic::recv_piece(g.as_fd(), &mut buf, libc::MSG_DONTWAIT)?
            };
            match piece {
                Some((n, eor)) => {
                    msg.extend_from_slice(&buf[..n]);
                    if eor {
                        t.check(&std::mem::take(&mut msg));
                    }
                    idle = 0;
                }
                None => {
                    idle += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        Ok(t)
    });

    let mut result = Ok(());
    let started = std::time::Instant::now();
    for _ in 0..moves {
        // Traffic flows between moves for longer than the peer's largest
        // RTO: what it sent while the mover was frozen is retransmitted and
        // acknowledged, which clears its error counters. Back-to-back moves
        // would add up their outages until the peer gives up, as it would
        // with any peer unreachable for that long.
        std::thread::sleep(Duration::from_millis(1200));
        let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
        rig.mover = std::mem::replace(&mut *g, sctp_socket()?);
        if let Err(e) = rig.move_once().and_then(|()| check(rig)) {
            result = Err(e);
            *g = std::mem::replace(&mut rig.mover, sctp_socket()?);
            break;
        }
        *g = std::mem::replace(&mut rig.mover, sctp_socket()?);
        if rig.moves % 10 == 0 || TRACE {
            println!(
                "  {} moves, {:.0} s; moves that caught data: {:?}; peer: {}",
                rig.moves,
                started.elapsed().as_secs_f64(),
                rig.caught,
                path_diag(&peer)
            );
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let join = |h: std::thread::JoinHandle<Result<Sent>>| {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))?
    };
    let up = join(up_writer);
    let down = join(down_writer);
    let at_peer = up_reader
        .join()
        .map_err(|_| anyhow::anyhow!("thread panicked"))?;
    let at_mover = down_reader
        .join()
        .map_err(|_| anyhow::anyhow!("thread panicked"))?;
    // Name every failure: a failed move is often explained by what a
    // reader or writer saw (an ABORT at the peer, say).
    let failures: Vec<String> = [
        result
            .as_ref()
            .err()
            .map(|e| format!("move {}: {e:#}", rig.moves + 1)),
        up.as_ref().err().map(|e| format!("mover writer: {e:#}")),
        down.as_ref().err().map(|e| format!("peer writer: {e:#}")),
        at_peer
            .as_ref()
            .err()
            .map(|e| format!("peer reader: {e:#}")),
        at_mover
            .as_ref()
            .err()
            .map(|e| format!("mover reader: {e:#}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !failures.is_empty() {
        // The SCTP counters of both ends say who gave up and why (T3
        // expiries, out-of-the-blue packets, ABORTs sent).
        for ns in [PEER_C.to_string(), rig.ctr.clone()] {
            let snmp = net::in_netns(&ns, || {
                Ok(std::fs::read_to_string("/proc/thread-self/net/sctp/snmp")?)
            })
            .unwrap_or_else(|e| e.to_string());
            let nonzero: Vec<&str> = snmp
                .lines()
                .filter(|l| {
                    !l.trim_end().ends_with(char::is_whitespace)
                        && !l.ends_with(" 0")
                        && !l.ends_with("\t0")
                })
                .collect();
            println!("  SCTP counters in {ns}: {}", nonzero.join(", "));
        }
        bail!("{}", failures.join("; "));
    }
    let (up, down, at_peer, at_mover) = (up?, down?, at_peer?, at_mover?);
    at_peer.complete(&up.next).context("mover -> peer")?;
    at_mover.complete(&down.next).context("peer -> mover")?;
    rig.peer = Arc::try_unwrap(peer).map_err(|_| anyhow::anyhow!("peer socket still shared"))?;
    rig.check_peer()?;
    println!(
        "  {} moves under traffic{}{what}: {} messages ({} bytes) mover->peer and {} ({} bytes) peer->mover, \
         8 streams, ordered and unordered, 1..9000 bytes: none lost, duplicated, reordered or corrupt; \
         the peer's association never restarted",
        rig.moves,
        if what.is_empty() { "" } else { " " },
        at_peer.received,
        at_peer.bytes,
        at_mover.received,
        at_mover.bytes
    );
    println!(
        "  {:.1} s per move on average (freeze, capture, container moved, restore)",
        started.elapsed().as_secs_f64() / rig.moves.max(1) as f64
    );
    let c = &rig.caught;
    println!(
        "  moves that caught data: {} unsent, {} in flight (unacked), {} unread inbound, {} with partial inbound messages, {} in a partial delivery read so far",
        c.unsent, c.in_flight, c.unread, c.partial, c.pd_read
    );
    ensure!(
        c.in_flight > 0 && c.unread > 0,
        "no move caught data in flight both ways ({c:?}): the test proves nothing about the queues"
    );
    Ok(())
}

/// `cargo vm bench sctp`: freeze + read out, and re-create + thaw, of 1 to
/// 1,000 idle associations (A to a listener on C) with the crate, each
/// association then checked with a message to its peer; the same for as
/// many idle TCP connections through TCP_REPAIR (as CRIU does it), in the
/// same run, as the baseline. Also the time from leaving repair mode to
/// the peer having a message queued while frozen, against the round trip.
pub fn bench() -> Result<Vec<crate::bench::Figure>> {
    use crate::bench::Figure;
    const BENCH_PORT: u16 = 7300;
    let _topo = Topology::build()?;
    // 2 fds per association, and the peer's.
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 16384, 16384)
        .context("raising RLIMIT_NOFILE")?;
    let c = net::host_addr(PEER_C);
    let listener = listener_on_c(BENCH_PORT, 1024)?;
    // A backlog for 1,000 connections made before the first is accepted.
    let tcp_listener = net::in_netns(PEER_C, move || {
        let l = socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Stream,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::setsockopt(&l, socket::sockopt::ReuseAddr, &true)?;
        socket::bind(l.as_raw_fd(), &sin(c, BENCH_PORT))?;
        socket::listen(&l, socket::Backlog::new(1024)?)?;
        Ok(std::net::TcpListener::from(l))
    })?;
    let mut figs = Vec::new();
    let (mut one_capture, mut one_restore) = (None, None);
    // Baseline of capture and restore: 1 association's time n times over,
    // what a cost per association alone would come to.
    const LINEAR: &str = "linear from 1 association";
    for n in [1usize, 10, 100, 1000] {
        // TCG's timing is noisy (a flush of its translation cache costs
        // whichever side runs then): each size is measured several times,
        // TCP and SCTP in turn, and the medians are reported.
        let rounds = if n >= 1000 { 5 } else { 9 };
        let (mut tcp, mut sctp, mut bytes) = (Vec::new(), Vec::new(), 0);
        for r in 0..rounds {
            tcp.push(tcp_baseline(&tcp_listener, c, BENCH_PORT, n)?);
            // Measured once the first round ran the thaw and send paths:
            // under TCG a path's first run also pays for translating it.
            let resume = n == 10 && r == 0;
            let round = sctp_round(&listener, c, BENCH_PORT, n, resume)?;
            sctp.push((round.capture, round.restore));
            bytes = round.bytes;
            figs.extend(round.resume);
        }
        let med =
            |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| crate::bench::median(v.iter().map(f));
        let (capture, restore) = (med(&sctp, |t| t.0), med(&sctp, |t| t.1));
        let (tcp_capture, tcp_restore) = (med(&tcp, |t| t.0), med(&tcp, |t| t.1));
        let one_c = *one_capture.get_or_insert(capture);
        let one_r = *one_restore.get_or_insert(restore);
        let x = n as f64;
        figs.push(
            Figure::secs(format!("sctp.capture_{n}"), capture)
                .against(one_c * x, LINEAR)
                .at("sctp freeze + read out", x),
        );
        figs.push(
            Figure::secs(format!("sctp.restore_{n}"), restore)
                .against(one_r * x, LINEAR)
                .at("sctp re-create + thaw", x),
        );
        figs.push(Figure::amount(
            format!("sctp.snapshot_bytes_per_assoc_{n}"),
            "B",
            bytes as f64 / x,
        ));
        // Per association against per TCP connection, from the round
        // whose SCTP/TCP ratio is the median (each round pairs the two
        // sides under the same conditions).
        let mut paired: Vec<(f64, f64)> = tcp
            .iter()
            .zip(&sctp)
            .map(|(t, s)| ((s.0 + s.1) / x, (t.0 + t.1) / x))
            .collect();
        paired.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
        let (per_sctp, per_tcp) = paired[paired.len() / 2];
        figs.push(
            Figure::secs(
                format!("sctp.capture_restore_per_assoc_vs_tcp_{n}"),
                per_sctp,
            )
            .against(per_tcp, "TCP_REPAIR, as many connections, same round"),
        );
        figs.push(
            Figure::secs(format!("tcp.capture_{n}"), tcp_capture)
                .at("tcp (TCP_REPAIR) freeze + read out", x),
        );
        figs.push(
            Figure::secs(format!("tcp.restore_{n}"), tcp_restore)
                .at("tcp (TCP_REPAIR) re-create + thaw", x),
        );
        let each: Vec<String> = paired
            .iter()
            .map(|(s, t)| format!("{:.2}", s / t))
            .collect();
        println!(
            "  {n} association(s): SCTP/TCP time per association {:.2} (median of {rounds} rounds, sorted: {}; target <= 1.5)",
            if per_tcp > 0.0 { per_sctp / per_tcp } else { 0.0 },
            each.join(", ")
        );
    }
    Ok(figs)
}

/// One-to-many against one-to-one: `n` associations on one listening
/// one-to-many socket (the MME's shape, on C, its peers one-to-one
/// sockets on A) frozen and captured in one snapshot, closed, restored and
/// thawed, against `n` one-to-one associations each captured and restored
/// alone ([`sctp_round`]), in the same rounds. Per association, target
/// <= 1.2x.
pub fn bench_one_to_many() -> Result<Vec<crate::bench::Figure>> {
    use crate::bench::Figure;
    const ONE_PORT: u16 = 7310;
    const MANY_PORT: u16 = 7311;
    let _topo = Topology::build()?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 16384, 16384)
        .context("raising RLIMIT_NOFILE")?;
    let c = net::host_addr(PEER_C);
    let listener = listener_on_c(ONE_PORT, 1024)?;
    let mut figs = Vec::new();
    for n in [1usize, 10, 100, 1000] {
        let rounds = if n >= 1000 { 3 } else { 5 };
        let mut paired = Vec::new();
        let mut bytes = 0;
        for _ in 0..rounds {
            let one = sctp_round(&listener, c, ONE_PORT, n, false)?;
            let (cap, rest, b) = many_round(c, MANY_PORT, n)?;
            bytes = b;
            let x = n as f64;
            paired.push(((cap + rest) / x, (one.capture + one.restore) / x));
        }
        paired.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
        let (per_many, per_one) = paired[paired.len() / 2];
        figs.push(
            Figure::secs(
                format!("sctp.one_to_many_capture_restore_per_assoc_{n}"),
                per_many,
            )
            .against(per_one, "as many one-to-one associations, same round"),
        );
        figs.push(Figure::amount(
            format!("sctp.one_to_many_snapshot_bytes_per_assoc_{n}"),
            "B",
            bytes as f64 / n as f64,
        ));
        let each: Vec<String> = paired
            .iter()
            .map(|(m, o)| format!("{:.2}", m / o))
            .collect();
        println!(
            "  {n} association(s) on one socket: one-to-many/one-to-one time per association {:.2} (median of {rounds} rounds, sorted: {}; target <= 1.2)",
            if per_one > 0.0 { per_many / per_one } else { 0.0 },
            each.join(", ")
        );
    }
    Ok(figs)
}

/// One round of the one-to-many side of [`bench_one_to_many`]: capture and
/// restore seconds, snapshot bytes.
fn many_round(c: Ipv4Addr, port: u16, n: usize) -> Result<(f64, f64, usize)> {
    let l = net::in_netns(PEER_C, move || {
        // SAFETY: plain socket(2), owned right below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP) };
        ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd nobody else owns.
        let l = unsafe { OwnedFd::from_raw_fd(fd) };
        socket::setsockopt(&l, socket::sockopt::ReuseAddr, &true)?;
        socket::bind(l.as_raw_fd(), &sin(c, port))?;
        socket::listen(&l, socket::Backlog::new(1024)?)?;
        Ok(l)
    })?;
    let clients = sctp_clients_from_a(c, port, n)?;
    // Every handshake done on the server side too.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sctp_repair::association_count(l.as_fd())? as usize != n {
        ensure!(
            Instant::now() < deadline,
            "{} of {n} associations on the one-to-many socket",
            sctp_repair::association_count(l.as_fd())?
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    settle();
    let t = Instant::now();
    let (frozen, snap) = sctp_repair::freeze_and_capture(l.as_fd(), Duration::from_secs(5))?;
    let capture = t.elapsed().as_secs_f64();
    frozen.release();
    ensure!(
        snap.members.len() == n,
        "{} of {n} associations captured",
        snap.members.len()
    );
    let bytes = snap.encode().len();
    // Closed in repair mode: the peers hear nothing.
    drop(l);
    settle();
    let t = Instant::now();
    let restored = net::in_netns(PEER_C, move || Ok(sctp_repair::restore(&snap)?.thaw()?))?;
    let restore = t.elapsed().as_secs_f64();
    // Every association carries a message to the restored socket.
    for (i, s) in clients.iter().enumerate() {
        socket::send(
            s.as_raw_fd(),
            format!("assoc {i}").as_bytes(),
            MsgFlags::empty(),
        )?;
    }
    set_rcvtimeo(&restored, Duration::from_secs(5))?;
    let mut buf = vec![0u8; 256];
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < n {
        let Some((m, _)) = sctp_traffic::recv_from(restored.as_fd(), &mut buf)? else {
            bail!(
                "{} of {n} associations carried a message after the restore",
                seen.len()
            );
        };
        seen.insert(m);
    }
    abort_all(clients.iter().chain(std::iter::once(&restored)))?;
    Ok((capture, restore, bytes))
}

/// `n` one-to-one associations from host A to `c`:`port`.
fn sctp_clients_from_a(c: Ipv4Addr, port: u16, n: usize) -> Result<Vec<OwnedFd>> {
    net::in_netns(HOST_A, move || {
        (0..n)
            .map(|_| {
                let s = sctp_socket()?;
                socket::connect(s.as_raw_fd(), &sin(c, port)).context("connect")?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()
    })
}

/// One measured round of the SCTP side of [`bench`].
struct SctpRound {
    capture: f64,
    restore: f64,
    /// Serialised snapshot bytes of all associations.
    bytes: usize,
    /// The resume latency figures, when asked for.
    resume: Vec<crate::bench::Figure>,
}

/// `n` idle associations from A to `listener` on C, frozen and captured,
/// closed, restored and thawed, each then carrying a message; with
/// `resume`, the first one's resume latency is measured too.
fn sctp_round(
    listener: &OwnedFd,
    c: Ipv4Addr,
    port: u16,
    n: usize,
    resume: bool,
) -> Result<SctpRound> {
    let clients = sctp_clients_from_a(c, port, n)?;
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = socket::accept(listener.as_raw_fd()).context("accept")?;
        // SAFETY: accept returned a new fd we now own.
        servers.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }

    settle();
    let t = Instant::now();
    let snaps = clients
        .iter()
        .map(|s| {
            // Kept frozen: closed below, silently.
            sctp_repair::freeze_and_capture(s.as_fd(), Duration::from_secs(5)).map(
                |(frozen, snap)| {
                    frozen.release();
                    snap
                },
            )
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let capture = t.elapsed().as_secs_f64();
    let bytes: usize = snaps.iter().map(|s| s.encode().len()).sum();
    // Closed in repair mode: the peers hear nothing.
    drop(clients);
    settle();

    let t = Instant::now();
    let restored = net::in_netns(HOST_A, move || {
        snaps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let fd = sctp_repair::restore(s)?;
                // Thawed in the timed restore, as TCP's restore_and_thaw
                // and the one-to-many side are; only the resume-latency
                // round keeps the first frozen for its own measure.
                Ok(if i > 0 || !resume {
                    fd.thaw()?
                } else {
                    fd.release()
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let restore = t.elapsed().as_secs_f64();
    let resume = if resume {
        resume_latency(&restored[0], &servers[0])?
    } else {
        Vec::new()
    };

    // Every association carries a message to its own peer.
    for (i, (s, peer)) in restored.iter().zip(&servers).enumerate() {
        let msg = format!("assoc {i}");
        socket::send(s.as_raw_fd(), msg.as_bytes(), MsgFlags::empty())?;
        let got = recv_within(peer, Duration::from_secs(5))?;
        ensure!(
            got == msg.as_bytes(),
            "association {i} of {n}: its peer got {got:?} after the restore"
        );
    }
    abort_all(restored.iter().chain(&servers))?;
    Ok(SctpRound {
        capture,
        restore,
        bytes,
        resume,
    })
}

/// Lets the work the last step left behind finish before the next timed
/// one: the frees RCU defers after closing a thousand sockets, timers of
/// the handshakes. In a migration the source's closes happen on another
/// host than the destination's restore; here they would be charged to it.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// Closes the bench's connections with an ABORT (SCTP) or RST (TCP): a
/// graceful close would still be shutting down during the next round.
fn abort_all<'a>(fds: impl Iterator<Item = &'a OwnedFd>) -> Result<()> {
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    for fd in fds {
        socket::setsockopt(fd, socket::sockopt::Linger, &abort).context("SO_LINGER")?;
    }
    Ok(())
}

/// `n` idle TCP connections from A to `listener` on C, frozen and read
/// out, closed, re-created and thawed through TCP_REPAIR, each then
/// carrying a message: (capture, restore) seconds.
fn tcp_baseline(
    listener: &std::net::TcpListener,
    c: Ipv4Addr,
    port: u16,
    n: usize,
) -> Result<(f64, f64)> {
    use std::io::{Read, Write};
    let clients = net::in_netns(HOST_A, move || {
        (0..n)
            .map(|_| Ok(OwnedFd::from(std::net::TcpStream::connect((c, port))?)))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, _) = listener.accept().context("TCP accept")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        servers.push(s);
    }
    settle();
    let t = Instant::now();
    let snaps = clients
        .iter()
        .map(crate::tcp_repair::freeze_and_capture)
        .collect::<Result<Vec<_>>>()?;
    let capture = t.elapsed().as_secs_f64();
    // Closed in repair mode: no FIN, no RST.
    drop(clients);
    settle();
    let t = Instant::now();
    let restored = net::in_netns(HOST_A, move || {
        snaps
            .iter()
            .map(crate::tcp_repair::restore_and_thaw)
            .collect::<Result<Vec<_>>>()
    })?;
    let restore = t.elapsed().as_secs_f64();
    abort_all(restored.iter())?;
    for (i, (s, peer)) in restored.into_iter().zip(servers.iter_mut()).enumerate() {
        let mut s = std::net::TcpStream::from(s);
        let msg = format!("conn {i}");
        s.write_all(msg.as_bytes())?;
        let mut got = vec![0u8; msg.len()];
        peer.read_exact(&mut got)
            .with_context(|| format!("TCP connection {i} of {n} after TCP_REPAIR"))?;
        ensure!(got == msg.as_bytes(), "TCP connection {i}: got {got:?}");
    }
    Ok((capture, restore))
}

/// The TCP_REPAIR baseline moves a connection's queues too (else it would
/// be cheaper than a real capture): bytes the peer sent and we did not
/// read, and bytes we sent that the peer never acknowledged (held back by
/// a DROP rule), arrive once, in order, after the connection is re-created.
pub fn tcp_baseline_moves_queues() -> Result<()> {
    use std::io::{Read, Write};
    let _topo = Topology::build()?;
    let c = net::host_addr(PEER_C);
    let port: u16 = 7390;
    let listener = net::in_netns(PEER_C, move || Ok(std::net::TcpListener::bind((c, port))?))?;
    let client = net::in_netns(HOST_A, move || {
        Ok(OwnedFd::from(std::net::TcpStream::connect((c, port))?))
    })?;
    let (mut peer, _) = listener.accept()?;
    peer.set_read_timeout(Some(Duration::from_secs(10)))?;
    let inbound: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    peer.write_all(&inbound)?;
    std::thread::sleep(Duration::from_millis(200));
    let drop_rule = [
        "OUTPUT",
        "-p",
        "tcp",
        "--dport",
        &port.to_string(),
        "-j",
        "DROP",
    ];
    let iptables = |op: &str| -> Result<()> {
        let st = net::command_in(HOST_A, "iptables")?
            .arg(op)
            .args(drop_rule)
            .status()?;
        ensure!(st.success(), "iptables {op} failed");
        Ok(())
    };
    iptables("-A")?;
    let outbound: Vec<u8> = (0..5000u32).map(|i| (i % 241) as u8).collect();
    socket::send(client.as_raw_fd(), &outbound, MsgFlags::empty())?;
    let snap = crate::tcp_repair::freeze_and_capture(&client)?;
    drop(client);
    let restored = net::in_netns(HOST_A, move || crate::tcp_repair::restore_and_thaw(&snap))?;
    iptables("-D")?;
    let mut s = std::net::TcpStream::from(restored);
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = vec![0u8; inbound.len()];
    s.read_exact(&mut got).context("the unread inbound bytes")?;
    ensure!(got == inbound, "inbound bytes differ after the move");
    let mut got = vec![0u8; outbound.len()];
    peer.read_exact(&mut got)
        .context("the unacknowledged outbound bytes")?;
    ensure!(got == outbound, "outbound bytes differ after the move");
    s.write_all(b"after")?;
    let mut tail = [0u8; 5];
    peer.read_exact(&mut tail)?;
    ensure!(&tail == b"after", "a write after the move got {tail:?}");
    println!(
        "  TCP_REPAIR baseline: {} unread and {} unacknowledged bytes moved",
        inbound.len(),
        outbound.len()
    );
    Ok(())
}

/// From leaving repair mode to the peer having the message queued on the
/// restored (still frozen) association `s`, against a round trip on the
/// same association afterwards: the thaw sends at once, no RTO waited.
fn resume_latency(s: &OwnedFd, peer: &OwnedFd) -> Result<Vec<crate::bench::Figure>> {
    use crate::bench::Figure;
    socket::send(s.as_raw_fd(), b"queued while frozen", MsgFlags::empty())?;
    let t = Instant::now();
    sctp_repair::set_mode(s.as_fd(), Mode::Off)?;
    let got = recv_within(peer, Duration::from_secs(10))?;
    let resume = t.elapsed().as_secs_f64();
    ensure!(
        got == b"queued while frozen",
        "after the thaw the peer got {got:?}"
    );
    let t = Instant::now();
    socket::send(s.as_raw_fd(), b"ping", MsgFlags::empty())?;
    ensure!(
        recv_within(peer, Duration::from_secs(10))? == b"ping",
        "ping"
    );
    socket::send(peer.as_raw_fd(), b"pong", MsgFlags::empty())?;
    ensure!(recv_within(s, Duration::from_secs(10))? == b"pong", "pong");
    let rtt = t.elapsed().as_secs_f64();
    println!(
        "  leaving repair mode to the peer's data: {:.1} ms (a round trip: {:.1} ms; RTO.Min: 1000 ms)",
        resume * 1e3,
        rtt * 1e3
    );
    Ok(vec![Figure::secs("sctp.resume_to_peer_data", resume)
        .against(rtt, "a round trip on the same association")])
}
