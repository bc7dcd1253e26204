//! The TCP_REPAIR baseline of `cargo vm bench sctp`: freeze, read out,
//! re-create and thaw a TCP connection the way CRIU (soccr) does, so that
//! the SCTP figures have their TCP counterpart from the same run. It does
//! the work the SCTP capture does where TCP has a counterpart: the
//! connection state, both data queues (their lengths, and their bytes when
//! there are any), the buffer sizes and TCP_NODELAY.

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::sys::socket::{self, SockaddrIn};

/// struct tcp_repair_window (linux/tcp.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RepairWindow {
    snd_wl1: u32,
    snd_wnd: u32,
    max_window: u32,
    rcv_wnd: u32,
    rcv_wup: u32,
}

/// struct tcp_repair_opt (linux/tcp.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct RepairOpt {
    code: u32,
    val: u32,
}

// linux/tcp.h
const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
// tcp_info.tcpi_options
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;

/// What CRIU keeps of a connection.
pub struct TcpSnapshot {
    /// Bytes in the send queue, of which the last `unsent` not sent yet.
    send_queue: Vec<u8>,
    unsent: usize,
    recv_queue: Vec<u8>,
    sndbuf: i32,
    rcvbuf: i32,
    nodelay: i32,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    snd_seq: u32,
    rcv_seq: u32,
    mss: u32,
    timestamp: u32,
    options: u8,
    wscale: u8,
    window: RepairWindow,
}

fn set<T>(fd: &OwnedFd, opt: i32, v: &T, what: &str) -> Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setsockopt({what})"));
    }
    Ok(())
}

fn get<T: Default>(fd: &OwnedFd, opt: i32, what: &str) -> Result<T> {
    get_at(fd, libc::IPPROTO_TCP, opt, what)
}

fn get_at<T: Default>(fd: &OwnedFd, level: i32, opt: i32, what: &str) -> Result<T> {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` has room for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("getsockopt({what})"));
    }
    Ok(v)
}

/// An ioctl that reports a queue length (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD).
fn queue_len(fd: &OwnedFd, req: libc::c_ulong, what: &str) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: these ioctls write one int.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut n) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("ioctl({what})"));
    }
    usize::try_from(n).with_context(|| format!("ioctl({what}) = {n}"))
}

/// The selected repair queue's bytes (`len` of them) without taking them.
fn peek_queue(fd: &OwnedFd, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len > 0 {
        let n = socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::MSG_PEEK)
            .context("recv(MSG_PEEK) of a repair queue")?;
        buf.truncate(n);
    }
    Ok(buf)
}

/// Writes `data` into the selected repair queue.
fn fill_queue(fd: &OwnedFd, data: &[u8]) -> Result<()> {
    let mut at = 0;
    while at < data.len() {
        at += socket::send(fd.as_raw_fd(), &data[at..], socket::MsgFlags::empty())
            .context("send into a repair queue")?;
    }
    Ok(())
}

const SIOCOUTQNSD: libc::c_ulong = 0x894B;

fn v4(a: SockaddrIn) -> SocketAddrV4 {
    SocketAddrV4::new(a.ip(), a.port())
}

/// Puts `fd` in repair mode and reads out what re-creating it needs.
pub fn freeze_and_capture(fd: &OwnedFd) -> Result<TcpSnapshot> {
    set(fd, TCP_REPAIR, &1i32, "TCP_REPAIR")?;
    let outq = queue_len(fd, libc::TIOCOUTQ, "SIOCOUTQ")?;
    let unsent = queue_len(fd, SIOCOUTQNSD, "SIOCOUTQNSD")?;
    let inq = queue_len(fd, libc::FIONREAD, "SIOCINQ")?;
    set(fd, TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    let snd_seq = get::<u32>(fd, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")?;
    let send_queue = peek_queue(fd, outq)?;
    set(fd, TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
    let rcv_seq = get::<u32>(fd, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")?;
    let recv_queue = peek_queue(fd, inq)?;
    // tcp_info: tcpi_options at byte 5, the window scales at byte 6.
    let info = get::<[u8; 8]>(fd, libc::TCP_INFO, "TCP_INFO")?;
    Ok(TcpSnapshot {
        send_queue,
        unsent,
        recv_queue,
        sndbuf: get_at(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, "SO_SNDBUF")?,
        rcvbuf: get_at(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, "SO_RCVBUF")?,
        nodelay: get(fd, libc::TCP_NODELAY, "TCP_NODELAY")?,
        local: v4(socket::getsockname::<SockaddrIn>(fd.as_raw_fd())?),
        peer: v4(socket::getpeername::<SockaddrIn>(fd.as_raw_fd())?),
        snd_seq,
        rcv_seq,
        mss: get::<u32>(fd, libc::TCP_MAXSEG, "TCP_MAXSEG")?,
        timestamp: get::<u32>(fd, TCP_TIMESTAMP, "TCP_TIMESTAMP")?,
        options: info[5],
        wscale: info[6],
        window: get::<RepairWindow>(fd, TCP_REPAIR_WINDOW, "TCP_REPAIR_WINDOW")?,
    })
}

/// Re-creates the connection on a new socket in the calling thread's
/// netns and takes it out of repair mode.
pub fn restore_and_thaw(s: &TcpSnapshot) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_INET, SOCK_STREAM)");
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set(&fd, TCP_REPAIR, &1i32, "TCP_REPAIR")?;
    // The kernel reports twice what was set.
    socket::setsockopt(&fd, socket::sockopt::SndBufForce, &(s.sndbuf as usize / 2))?;
    socket::setsockopt(&fd, socket::sockopt::RcvBufForce, &(s.rcvbuf as usize / 2))?;
    set(&fd, TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
    // The sequence numbers read are those after the queued bytes, and
    // writing the bytes back advances them again: start where they start.
    let queued = |q: &[u8]| u32::try_from(q.len()).unwrap_or(u32::MAX);
    let snd_start = s.snd_seq.wrapping_sub(queued(&s.send_queue));
    set(&fd, TCP_QUEUE_SEQ, &snd_start, "TCP_QUEUE_SEQ")?;
    set(&fd, TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
    let rcv_start = s.rcv_seq.wrapping_sub(queued(&s.recv_queue));
    set(&fd, TCP_QUEUE_SEQ, &rcv_start, "TCP_QUEUE_SEQ")?;
    socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(s.local)).context("bind")?;
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(s.peer)).context("connect")?;
    let mut opts = vec![RepairOpt {
        code: TCPOPT_MAXSEG,
        val: s.mss,
    }];
    if s.options & TCPI_OPT_WSCALE != 0 {
        let (snd, rcv) = (u32::from(s.wscale & 0xf), u32::from(s.wscale >> 4));
        opts.push(RepairOpt {
            code: TCPOPT_WINDOW,
            val: snd | (rcv << 16),
        });
    }
    if s.options & TCPI_OPT_SACK != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_SACK_PERM,
            val: 0,
        });
    }
    if s.options & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_TIMESTAMP,
            val: 0,
        });
        set(&fd, TCP_TIMESTAMP, &s.timestamp, "TCP_TIMESTAMP")?;
    }
    // SAFETY: `opts` is a live array of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_REPAIR_OPTIONS,
            opts.as_ptr().cast(),
            std::mem::size_of_val(opts.as_slice()) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setsockopt(TCP_REPAIR_OPTIONS)");
    }
    let sent = s.send_queue.len().saturating_sub(s.unsent);
    if !s.recv_queue.is_empty() {
        set(&fd, TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE")?;
        fill_queue(&fd, &s.recv_queue)?;
    }
    if sent > 0 {
        set(&fd, TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE")?;
        fill_queue(&fd, &s.send_queue[..sent])?;
    }
    // After the queues: the window must not start beyond what was received.
    set(&fd, TCP_REPAIR_WINDOW, &s.window, "TCP_REPAIR_WINDOW")?;
    set(&fd, TCP_REPAIR, &0i32, "TCP_REPAIR")?;
    set(&fd, libc::TCP_NODELAY, &s.nodelay, "TCP_NODELAY")?;
    // What was never sent goes out as new data.
    fill_queue(&fd, &s.send_queue[sent..])?;
    Ok(fd)
}
