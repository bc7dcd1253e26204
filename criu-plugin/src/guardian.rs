//! What thaws the SCTP associations if criu dies in the middle of a dump.
//!
//! The plugin freezes each association when CRIU hands it the socket, and
//! thaws it (or leaves it to die with the task) in the dump's exit hook.
//! If criu is killed or crashes in between, no exit hook runs: the tasks
//! CRIU had seized run on, but their associations stay frozen for good,
//! and a host-netns lock table keeps dropping their packets.
//!
//! So the first freeze of a dump starts a guardian: a small process, not a
//! child of criu (whose SIGCHLD handler would take any child's exit for a
//! dying parasite), that holds a reference to every socket the plugin
//! froze and the name of every lock table it made, sent over a socket
//! pair. The exit hook tells it the plugin has dealt with them, and it
//! exits. If instead its end of the pair reads end-of-file first, criu is
//! gone: it thaws the sockets, removes the tables, says so in the kernel
//! log, and exits.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// A frozen socket follows (SCM_RIGHTS).
const SOCKET: u8 = b'S';
/// The name of a lock table follows.
const TABLE: u8 = b'T';
/// The plugin has thawed or kept everything as the dump requires.
const DONE: u8 = b'D';

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the guardian that thaws SCTP sockets if criu dies: {0}")]
    Start(nix::Error),
    #[error("handing a frozen SCTP socket to the guardian: {0}")]
    Send(nix::Error),
}

/// Our end of the pair, once the guardian runs.
static CHANNEL: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Runs `f` with SIGCHLD blocked: CRIU's dump handler exits on any child's
/// exit while a parasite is in a task (it takes it for the parasite's
/// death), unless the child is reaped before the signal is delivered.
pub fn sigchld_blocked<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut block = SigSet::empty();
    block.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    let blocked =
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))
            .is_ok();
    let r = f();
    if blocked {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    r
}

fn channel() -> std::sync::MutexGuard<'static, Option<OwnedFd>> {
    CHANNEL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the guardian if it is not running yet.
fn ensure_started(ch: &mut Option<OwnedFd>) -> Result<(), Error> {
    if ch.is_some() {
        return Ok(());
    }
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(Error::Start)?;
    sigchld_blocked(|| -> Result<(), Error> {
        // SAFETY: criu is single-threaded here (our own helper threads are
        // joined); the child only forks again and exits, and the grandchild
        // runs `guard`, which touches no lock held across the fork.
        match unsafe { nix::unistd::fork() }.map_err(Error::Start)? {
            nix::unistd::ForkResult::Child => {
                // Our end goes in `guard`, with every fd but the channel.
                // SAFETY: as above.
                if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
                    // A panic must not unwind out of here: up the stack is
                    // a copy of criu, which would carry on dumping.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard(theirs)));
                    // SAFETY: plain _exit(2) of the guardian.
                    unsafe { libc::_exit(1) }
                }
                // SAFETY: leave without running criu's atexit handlers.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(theirs);
                let _ = nix::sys::wait::waitpid(child, None);
                Ok(())
            }
        }
    })?;
    *ch = Some(ours);
    Ok(())
}

fn send(ch: &OwnedFd, msg: &[u8], fd: Option<RawFd>) -> Result<(), Error> {
    let fds;
    let cmsgs: Vec<ControlMessage<'_>> = match fd {
        Some(f) => {
            fds = [f];
            vec![ControlMessage::ScmRights(&fds)]
        }
        None => Vec::new(),
    };
    sendmsg::<()>(
        ch.as_raw_fd(),
        &[IoSlice::new(msg)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(|_| ())
    .map_err(Error::Send)
}

/// Gives the guardian a socket the plugin has just frozen.
pub fn watch_socket(sock: BorrowedFd<'_>) -> Result<(), Error> {
    let mut ch = channel();
    ensure_started(&mut ch)?;
    match ch.as_ref() {
        Some(c) => send(c, &[SOCKET], Some(sock.as_raw_fd())),
        None => Ok(()),
    }
}

/// Gives the guardian a lock table the plugin has just made.
pub fn watch_table(table: &str) -> Result<(), Error> {
    let mut ch = channel();
    ensure_started(&mut ch)?;
    let mut msg = vec![TABLE];
    msg.extend_from_slice(table.as_bytes());
    match ch.as_ref() {
        Some(c) => send(c, &msg, None),
        None => Ok(()),
    }
}

/// The plugin has dealt with everything: the guardian exits untouched.
pub fn done() {
    if let Some(c) = channel().take() {
        let _ = send(&c, &[DONE], None);
    }
}

/// Writes `msg` to the kernel log: nothing of criu's is left to log to.
fn kmsg(msg: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        use std::io::Write;
        let _ = f.write_all(format!("epcmig-guardian: {msg}\n").as_bytes());
    }
}

/// The guardian's life: collect what the plugin sends until it says done
/// (exit) or criu goes away (thaw, unlock, exit). Never returns.
/// The guardian's process name (`comm`): `ps` shows it for what it is,
/// and an error naming a frozen socket's holders leaves it out.
pub const PROCESS_NAME: &std::ffi::CStr = c"epcmig-guard";

fn guard(ch: OwnedFd) -> ! {
    // Best effort: only the name `ps` shows.
    let _ = nix::sys::prctl::set_name(PROCESS_NAME);
    // criu's handlers and mask came with the fork: its SIGCHLD handler
    // would exit on the first `nft` we run.
    // SAFETY: restores the default disposition; no handler of ours.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // Nothing of criu's stays open here (its image files, its pipes to
    // whoever runs it, the parasites' sockets): only the channel, as fd 3.
    let raw = ch.into_raw_fd();
    let raw = match nix::unistd::dup2(raw, 3) {
        Ok(3) if raw != 3 => {
            // SAFETY: `raw` is ours and no longer needed.
            unsafe { libc::close(raw) };
            3
        }
        _ => raw,
    };
    // SAFETY: closes every fd above the channel; we own none of them.
    unsafe { libc::close_range(raw as u32 + 1, u32::MAX, 0) };
    // SAFETY: `raw` is the channel, which we own.
    let ch = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            if fd != raw {
                let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
            }
        }
    }
    let _ = nix::unistd::setsid();

    let (mut socks, mut tables) = (Vec::<OwnedFd>::new(), Vec::<String>::new());
    let mut buf = [0u8; 512];
    loop {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = recvmsg::<()>(
            ch.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let (n, fds) = match got {
            Ok(m) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = m.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            fds.extend(v);
                        }
                    }
                }
                (m.bytes, fds)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => (0, Vec::new()),
        };
        // SAFETY: SCM_RIGHTS gave us these fds.
        let fds: Vec<OwnedFd> = fds
            .into_iter()
            .map(|f| unsafe { OwnedFd::from_raw_fd(f) })
            .collect();
        match buf.get(..n) {
            Some([DONE, ..]) => break,
            Some([SOCKET, ..]) => socks.extend(fds),
            Some([TABLE, name @ ..]) => tables.push(String::from_utf8_lossy(name).into_owned()),
            Some([]) | None => {
                // criu is gone without a word: undo what the plugin did.
                let mut thawed = 0;
                for s in &socks {
                    if sctp_repair::set_mode(s.as_fd(), sctp_repair::Mode::Off).is_ok() {
                        thawed += 1;
                    }
                }
                let mut unlocked = 0;
                for t in &tables {
                    if crate::netlock::unlock(t).is_ok() {
                        unlocked += 1;
                    }
                }
                kmsg(&format!(
                    "criu went away during a dump: thawed {thawed} of {} SCTP socket(s), \
                     removed {unlocked} of {} lock table(s)",
                    socks.len(),
                    tables.len()
                ));
                break;
            }
            Some(_) => {}
        }
    }
    drop(socks);
    // SAFETY: leave without running criu's atexit handlers.
    unsafe { libc::_exit(0) }
}
