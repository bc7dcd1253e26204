//! Programs the guest suites start in a container netns and migrate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

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
    /// Holds a listening one-to-one SCTP socket and waits.
    SctpListen {
        #[arg(long)]
        listen: std::net::SocketAddrV4,
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

pub fn run(app: App) -> Result<()> {
    match app {
        App::TcpEcho { listen } => tcp_echo(listen),
        App::SctpListen { listen } => sctp_listen(listen),
        App::SctpEcho { listen } => sctp_echo(listen),
        App::Spgw {
            kernel_sockets,
            sctp_echo,
        } => spgw(kernel_sockets, sctp_echo),
    }
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

fn sctp_listen(listen: std::net::SocketAddrV4) -> Result<()> {
    use nix::sys::socket;
    let l = crate::suites::sctp_repair::sctp_socket()?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&l),
        &socket::SockaddrIn::from(listen),
    )?;
    socket::listen(&l, socket::Backlog::new(16)?)?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
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
