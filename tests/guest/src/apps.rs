//! Programs the guest suites start in a container netns and migrate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum App {
    /// TCP echo server: echoes every byte back on each connection.
    TcpEcho {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// SCTP echo server: accepts one-to-one associations and echoes every
    /// message back, on the stream (and ordered or not) it came on.
    SctpEcho {
        #[arg(long)]
        listen: std::net::SocketAddrV4,
    },
    /// The SCTP echo server in the shapes servers come in (`--shape`).
    SctpServer {
        /// Where to listen; `[::]:PORT` makes an AF_INET6 listener, which
        /// IPv4 peers reach through v4-mapped addresses.
        #[arg(long)]
        listen: SocketAddr,
        /// More addresses to bind the listener to (sctp_bindx).
        #[arg(long)]
        also: Vec<SocketAddr>,
        #[arg(long, value_enum)]
        shape: Shape,
        /// Also start an association to this address, which nobody
        /// answers: its socket stays in its handshake (COOKIE-WAIT).
        #[arg(long)]
        dial: Option<std::net::SocketAddrV4>,
    },
    /// Holds a listening one-to-one SCTP socket and waits; with
    /// `--accept-when PATH`, accepts once PATH exists (its associations
    /// wait in the accept queue until then) and echoes each one.
    SctpListen {
        #[arg(long)]
        listen: std::net::SocketAddrV4,
        #[arg(long)]
        accept_when: Option<std::path::PathBuf>,
    },
    /// SPGW-like: makes gtp0 (role ggsn, ifindex 4242, hash size 2048,
    /// restart count 7) on its own UDP sockets bound to 3386 and 2152, as
    /// OAI and OsmoGGSN do through libgtpnl, or on kernel-created ones;
    /// then holds them. Its control plane (PDP contexts, routes) is driven
    /// from outside. With `--sctp-echo` it is also an MME in the same
    /// netns (an SCTP echo server).
    Spgw {
        #[arg(long)]
        kernel_sockets: bool,
        #[arg(long)]
        sctp_echo: Option<std::net::SocketAddrV4>,
        /// MiB of memory allocated and written before gtp0 is made, held
        /// for the life of the process: the state a real EPC carries
        /// (what pre-copy moves ahead of the freeze).
        #[arg(long, default_value_t = 0)]
        ballast_mb: usize,
        /// MiB of that ballast a thread keeps re-writing (a byte per page,
        /// every 20 ms): pages dirty again at every pre-dump.
        #[arg(long, default_value_t = 0)]
        dirty_mb: usize,
    },
}

/// Starts a third-party program in netns `ns` as [`spawn_in`] does, its
/// output to `out` (a regular file CRIU dumps and restores by path).
pub fn spawn_program_in(
    ns: &str,
    program: &str,
    args: &[&str],
    out: &std::path::Path,
) -> Result<std::process::Child> {
    use std::process::Stdio;
    let log = std::fs::File::create(out)?;
    let mut c = crate::net::command_in(ns, program)?;
    c.args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    detach(&mut c);
    c.spawn()
        .with_context(|| format!("starting {program} {}", args.join(" ")))
}

/// Starts `epcmig-guest app ARGS` in netns `ns` as a container's process
/// would run: its own session (CRIU dumps a tree that owns its session, no
/// --shell-job), stdio on /dev/null, and no other inherited fd (the guest
/// shell leaves console ports open, which CRIU cannot dump).
pub fn spawn_in(ns: &str, args: &[&str]) -> Result<std::process::Child> {
    use std::process::Stdio;
    let exe = std::env::current_exe()?;
    let mut c = crate::net::command_in(ns, &exe.to_string_lossy())?;
    c.arg("app")
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut c);
    c.spawn()
        .with_context(|| format!("starting app {}", args.join(" ")))
}

/// The child gets its own session and no inherited fd beyond stdio, as a
/// container's process has.
fn detach(c: &mut std::process::Command) {
    // SAFETY: setsid and close_range are async-signal-safe syscalls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(c, || {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
}

/// How an SCTP server is laid out in processes and sockets.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shape {
    /// inetd-style: a child forked per association, which closes the
    /// listener; the parent closes the association.
    Fork,
    /// Three workers forked before any association, each accept()ing on
    /// the listener they inherited (one listener in four processes) and
    /// serving each association in a thread.
    Prefork,
    /// The parent accepts and passes each association to a worker over a
    /// UNIX socket (SCM_RIGHTS), keeping its own copy: one association
    /// socket in two processes.
    Pass,
    /// One-to-many: one SOCK_SEQPACKET socket for every association.
    OneToMany,
    /// One-to-many listener whose every association is peeled off
    /// (sctp_peeloff) at its first message and served in a thread.
    Peeloff,
}

pub fn run(app: App) -> Result<()> {
    match app {
        App::SctpServer {
            listen,
            also,
            shape,
            dial,
        } => {
            // Held for the life of the process.
            let _dialing = dial.map(dial_unanswered).transpose()?;
            sctp_server(listen, &also, shape)
        }
        App::TcpEcho { listen } => tcp_echo(listen),
        App::SctpListen {
            listen,
            accept_when,
        } => sctp_listen(listen, accept_when),
        App::SctpEcho { listen } => sctp_echo(listen),
        App::Spgw {
            kernel_sockets,
            sctp_echo,
            ballast_mb,
            dirty_mb,
        } => {
            ballast(ballast_mb, dirty_mb)?;
            spgw(kernel_sockets, sctp_echo)
        }
    }
}

const PAGE: usize = 4096;

/// How long the dirtying thread rests between passes over its pages.
pub const DIRTY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// `mb` MiB, every page written (a fresh allocation is untouched zero
/// pages, which CRIU does not dump), kept until the process ends; a thread
/// writes a byte of each page of the first `dirty_mb` MiB every
/// [`DIRTY_PAUSE`], so they are dirty at every pre-dump and the final dump.
fn ballast(mb: usize, dirty_mb: usize) -> Result<()> {
    anyhow::ensure!(
        dirty_mb <= mb,
        "--dirty-mb {dirty_mb} is more than --ballast-mb {mb}"
    );
    if mb == 0 {
        return Ok(());
    }
    let mem: &'static mut [u8] = Box::leak(vec![0u8; mb << 20].into_boxed_slice());
    for (i, page) in mem.chunks_mut(PAGE).enumerate() {
        // Not zero, and not the same everywhere.
        page.fill((i % 251) as u8 | 1);
    }
    let (dirty, _kept) = mem.split_at_mut(dirty_mb << 20);
    if !dirty.is_empty() {
        std::thread::Builder::new()
            .name("dirtier".into())
            .spawn(move || loop {
                for page in dirty.chunks_mut(PAGE) {
                    page[0] = page[0].wrapping_add(1);
                    // The writes must happen: nothing reads them back.
                    std::hint::black_box(&mut *page);
                }
                std::thread::sleep(DIRTY_PAUSE);
            })
            .context("starting the thread that dirties the ballast")?;
    }
    Ok(())
}

fn spgw(kernel_sockets: bool, mme: Option<std::net::SocketAddrV4>) -> Result<()> {
    use crate::suites::gtp;
    let here = gtp_state::Netns::Current;
    // Held for the life of the process: the device encapsulates with them.
    let mut held = Vec::new();
    if kernel_sockets {
        let opts = gtp_state::RestoreOptions {
            sockets: gtp_state::SocketSource::Kernel { local: None },
            ..Default::default()
        };
        gtp_state::restore(&here, &gtp::gtp0_device(2048, 7), &opts)?;
    } else {
        let s0 = std::net::UdpSocket::bind("0.0.0.0:3386").context("binding 3386")?;
        let s1 = std::net::UdpSocket::bind("0.0.0.0:2152").context("binding 2152")?;
        let (s0, s1) = (
            std::os::fd::OwnedFd::from(s0),
            std::os::fd::OwnedFd::from(s1),
        );
        gtp::device_on_fds(&here, &s0, &s1, 2048, 7)?;
        held.push(s0);
        held.push(s1);
    }
    match mme {
        Some(listen) => sctp_echo(listen),
        None => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
    }
}

fn tcp_echo(listen: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || echo(conn));
    }
    Ok(())
}

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn sctp_listen(
    listen: std::net::SocketAddrV4,
    accept_when: Option<std::path::PathBuf>,
) -> Result<()> {
    use nix::sys::socket;
    let l = crate::suites::sctp_repair::sctp_socket()?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&l),
        &socket::SockaddrIn::from(listen),
    )?;
    socket::listen(&l, socket::Backlog::new(16)?)?;
    let Some(go) = accept_when else {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    };
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    loop {
        let Some(s) = accept_one(&l) else { continue };
        std::thread::spawn(move || echo_association(&s));
    }
}

fn sctp_echo(listen: std::net::SocketAddrV4) -> Result<()> {
    use nix::sys::socket;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let l = crate::suites::sctp_repair::sctp_socket()?;
    socket::bind(l.as_raw_fd(), &socket::SockaddrIn::from(listen))?;
    socket::listen(&l, socket::Backlog::new(16)?)?;
    loop {
        let Ok(fd) = socket::accept(l.as_raw_fd()) else {
            continue;
        };
        // SAFETY: accept returned a new fd we own.
        let s = unsafe { OwnedFd::from_raw_fd(fd) };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let fd = std::os::fd::AsFd::as_fd(&s);
            while let Ok(Some(m)) = crate::sctp_traffic::recv(fd, &mut buf) {
                let (stream, unordered) = crate::sctp_traffic::route(&m).unwrap_or((0, false));
                if crate::sctp_traffic::send(fd, stream, unordered, &m, 0).is_err() {
                    return;
                }
            }
        });
    }
}

/// An SCTP socket of `ty` (SOCK_STREAM or SOCK_SEQPACKET) for `addr`'s
/// family, bound to it and to `also` (sctp_bindx), listening.
fn sctp_listener(
    addr: SocketAddr,
    also: &[SocketAddr],
    ty: libc::c_int,
) -> Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{self, SockaddrLike, SockaddrStorage};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned right below.
    let fd = unsafe { libc::socket(family, ty, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(IPPROTO_SCTP)");
    }
    // SAFETY: a fresh fd nobody else owns.
    let l = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::suites::sctp_repair::set_streams(&l, 8)?;
    socket::bind(l.as_raw_fd(), &SockaddrStorage::from(addr))
        .with_context(|| format!("binding {addr}"))?;
    for a in also {
        // SCTP_SOCKOPT_BINDX_ADD (100) takes packed sockaddrs.
        let sa = SockaddrStorage::from(*a);
        // bindx walks packed sockaddrs by their family's size; the
        // storage's len() is the whole sockaddr_storage.
        let len = if a.is_ipv4() {
            std::mem::size_of::<libc::sockaddr_in>()
        } else {
            std::mem::size_of::<libc::sockaddr_in6>()
        };
        // SAFETY: `sa` holds a sockaddr of at least `len` bytes.
        let raw = unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), len) };
        // SAFETY: valid fd; `raw` is a complete sockaddr.
        let rc = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::IPPROTO_SCTP,
                100,
                raw.as_ptr().cast(),
                raw.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("bindx {a}"));
        }
    }
    socket::listen(&l, socket::Backlog::new(16)?)?;
    Ok(l)
}

/// Echoes every message of a one-to-one association back on its stream
/// until it ends.
fn echo_association(s: &std::os::fd::OwnedFd) {
    let mut buf = vec![0u8; 65536];
    let fd = std::os::fd::AsFd::as_fd(s);
    while let Ok(Some(m)) = crate::sctp_traffic::recv(fd, &mut buf) {
        let (stream, unordered) = crate::sctp_traffic::route(&m).unwrap_or((0, false));
        if crate::sctp_traffic::send(fd, stream, unordered, &m, 0).is_err() {
            return;
        }
    }
}

/// A one-to-one socket whose non-blocking connect() to `to` nobody
/// answers.
fn dial_unanswered(to: std::net::SocketAddrV4) -> Result<std::os::fd::OwnedFd> {
    use nix::sys::socket;
    use std::os::fd::AsRawFd;
    let s = crate::suites::sctp_repair::sctp_socket()?;
    nix::fcntl::fcntl(
        s.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    match socket::connect(s.as_raw_fd(), &socket::SockaddrIn::from(to)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(s),
        Err(e) => Err(e.into()),
    }
}

fn accept_one(l: &std::os::fd::OwnedFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let fd = nix::sys::socket::accept(l.as_raw_fd()).ok()?;
    // SAFETY: accept returned a new fd we own.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sctp_server(listen: SocketAddr, also: &[SocketAddr], shape: Shape) -> Result<()> {
    use nix::unistd::{fork, ForkResult};
    // Children are not waited for: they end with the test.
    // SAFETY: setting SIGCHLD's disposition to SIG_IGN has no handler.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }?;
    match shape {
        Shape::OneToMany => {
            let l = sctp_listener(listen, also, libc::SOCK_SEQPACKET)?;
            one_to_many_echo(&l)
        }
        Shape::Peeloff => {
            let l = sctp_listener(listen, also, libc::SOCK_SEQPACKET)?;
            let mut buf = vec![0u8; 65536];
            loop {
                let Some((m, from)) = crate::sctp_traffic::recv_from(l.as_fd(), &mut buf)? else {
                    continue;
                };
                // What else this association sent meanwhile moves with it.
                let id = crate::sctp_traffic::assoc_id_of(l.as_fd(), &from)?;
                let s = crate::sctp_traffic::peeloff(l.as_fd(), id)?;
                let (stream, unordered) = crate::sctp_traffic::route(&m).unwrap_or((0, false));
                crate::sctp_traffic::send(s.as_fd(), stream, unordered, &m, 0)?;
                std::thread::spawn(move || echo_association(&s));
            }
        }
        Shape::Fork => {
            let l = sctp_listener(listen, also, libc::SOCK_STREAM)?;
            loop {
                let Some(s) = accept_one(&l) else { continue };
                // SAFETY: this process has one thread; the child only
                // echoes and exits.
                if let ForkResult::Child = unsafe { fork() }? {
                    drop(l);
                    echo_association(&s);
                    std::process::exit(0);
                }
            }
        }
        Shape::Prefork => {
            let l = sctp_listener(listen, also, libc::SOCK_STREAM)?;
            for _ in 0..3 {
                // SAFETY: one thread here; the worker runs its own loop.
                if let ForkResult::Child = unsafe { fork() }? {
                    loop {
                        if let Some(s) = accept_one(&l) {
                            std::thread::spawn(move || echo_association(&s));
                        }
                    }
                }
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Shape::Pass => {
            use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
            let l = sctp_listener(listen, also, libc::SOCK_STREAM)?;
            let (ours, theirs) = socket::socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::empty(),
            )?;
            // SAFETY: one thread here; the worker runs its own loop.
            if let ForkResult::Child = unsafe { fork() }? {
                drop((l, ours));
                return receive_and_echo(&theirs);
            }
            drop(theirs);
            let mut kept = Vec::new();
            loop {
                let Some(s) = accept_one(&l) else { continue };
                pass_fd(&ours, &s)?;
                // Kept open here too: the association is in both.
                kept.push(s);
            }
        }
    }
}

fn pass_fd(over: &std::os::fd::OwnedFd, fd: &std::os::fd::OwnedFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"f")];
    sendmsg::<()>(
        over.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("passing an association over SCM_RIGHTS")?;
    Ok(())
}

/// The worker of [`Shape::Pass`]: a thread per association it is passed.
fn receive_and_echo(from: &std::os::fd::OwnedFd) -> Result<()> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    loop {
        let mut b = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut b)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            from.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .context("receiving an association")?;
        if msg.bytes == 0 {
            return Ok(());
        }
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS gave us a new fd we own.
                    let s = unsafe { OwnedFd::from_raw_fd(fd) };
                    std::thread::spawn(move || echo_association(&s));
                }
            }
        }
    }
}

/// Echoes every message of a one-to-many socket to the association it
/// came from, on its stream. Like srsEPC's MME, it keys its peers on their
/// `sctp_assoc_t`: the id is learned once per peer address and every echo
/// is sent by id, so an association that came back under another id is
/// never answered again.
fn one_to_many_echo(l: &std::os::fd::OwnedFd) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let mut ids: std::collections::HashMap<String, i32> = std::collections::HashMap::new();
    loop {
        let Some((m, from)) = crate::sctp_traffic::recv_from(l.as_fd(), &mut buf)? else {
            continue;
        };
        let key = from.to_string();
        let id = match ids.get(&key) {
            Some(id) => *id,
            None => match crate::sctp_traffic::assoc_id_of(l.as_fd(), &from) {
                Ok(id) => *ids.entry(key).or_insert(id),
                Err(e) => {
                    eprintln!("one-to-many echo: association id of {from}: {e}");
                    continue;
                }
            },
        };
        let (stream, unordered) = crate::sctp_traffic::route(&m).unwrap_or((0, false));
        if let Err(e) = crate::sctp_traffic::send_to_assoc(l.as_fd(), id, stream, unordered, &m, 0)
        {
            eprintln!("one-to-many echo: association {id}: {e}");
        }
    }
}
