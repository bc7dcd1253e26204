//! The hook bodies. Each `extern "C"` entry point only converts between
//! CRIU's ints and Rust results, under `catch_unwind`.

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use epcmig_sys::criu_plugin as abi;
use sctp_repair::{Mode, Snapshot};

use crate::images;

/// Largest SCTP image we read back (a snapshot is a few KiB).
const MAX_IMAGE: u64 = 64 << 20;

/// Sockets frozen by this dump (our own dups), thawed or dropped at exit.
static FROZEN: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

macro_rules! log {
    ($($a:tt)*) => { crate::images::criu_log(&format!("epcmig: {}", format_args!($($a)*))) };
}

/// Runs `f`, turning a panic into `on_panic`.
fn guard<T>(what: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            log!("{what}: internal error (panic); failing this step");
            on_panic
        }
    }
}

fn frozen() -> std::sync::MutexGuard<'static, Vec<OwnedFd>> {
    FROZEN.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_sctp(sock: BorrowedFd<'_>) -> bool {
    let mut proto: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: valid fd for the call; pointers to a live c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut proto as *mut c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && proto == libc::IPPROTO_SCTP
}

pub extern "C" fn init(_stage: c_int) -> c_int {
    0
}

/// Whether criu was asked to leave the dumped tasks running.
fn leave_running() -> bool {
    std::fs::read("/proc/self/cmdline")
        .map(|c| {
            c.split(|&b| b == 0)
                .any(|a| a == b"-R" || a == b"--leave-running")
        })
        .unwrap_or(false)
}

pub extern "C" fn exit(stage: c_int, ret: c_int) {
    guard("exit", (), || {
        if stage != abi::CR_PLUGIN_STAGE__DUMP as c_int {
            return;
        }
        let socks = std::mem::take(&mut *frozen());
        // On success the tasks are killed right after this hook, with
        // their sockets still frozen, so closing sends nothing. Otherwise
        // (failure, or --leave-running) they run on: thaw.
        let thaw = ret != 0 || leave_running();
        for s in socks {
            if thaw {
                if let Err(e) = sctp_repair::set_mode(s.as_fd(), Mode::Off) {
                    log!("thawing an SCTP socket after the dump: {e}");
                }
            }
        }
    })
}

/// CRIU (with criu-patches/) offers us inet sockets it cannot dump.
pub extern "C" fn dump_ext_file(fd: c_int, id: c_int) -> c_int {
    guard("dump", -1, || {
        // SAFETY: CRIU passes an fd it keeps open for the call.
        let sock = unsafe { BorrowedFd::borrow_raw(fd) };
        if !is_sctp(sock) {
            return -libc::ENOTSUP;
        }
        match dump_sctp(sock, id) {
            Ok(()) => 0,
            Err(e) => {
                log!("SCTP socket (file id {id:#x}): {e}");
                -1
            }
        }
    })
}

fn dump_sctp(sock: BorrowedFd<'_>, id: c_int) -> Result<(), String> {
    let was = sctp_repair::mode(sock)
        .map_err(|e| format!("{e} (kernel-patches/ must be applied to the running kernel)"))?;
    let listening = {
        let mut v: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: valid fd; pointers to a live c_int and its size.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&mut v as *mut c_int).cast(),
                &mut len,
            )
        };
        rc == 0 && v != 0
    };
    if !listening && was == Mode::Off {
        sctp_repair::set_mode(sock, Mode::On).map_err(|e| e.to_string())?;
        // Keep our own reference, to thaw it if the dump fails.
        let dup = sock.try_clone_to_owned().map_err(|e| format!("dup: {e}"))?;
        frozen().push(dup);
    }
    let snap = sctp_repair::capture(sock).map_err(|e| e.to_string())?;
    let dir = images::image_dir().map_err(|e| e.to_string())?;
    let name = images::sctp_image_name(id);
    images::write(dir, &name, &snap.encode()).map_err(|e| format!("writing {name}: {e}"))?;
    log!(
        "dumped SCTP socket {:?} {} to {name}",
        snap.kind,
        snap.assoc_info()
            .map(|a| format!("{}->{:?}", a.local_port, a.primary))
            .unwrap_or_default()
    );
    Ok(())
}

/// Called inside the restored task: re-create the socket from its image.
pub extern "C" fn restore_ext_file(id: c_int) -> c_int {
    guard("restore", -1, || {
        let dir = match images::image_dir() {
            Ok(d) => d,
            Err(e) => {
                log!("{e}");
                return -1;
            }
        };
        let name = images::sctp_image_name(id);
        let data = match images::read(dir, &name, MAX_IMAGE) {
            Ok(d) => d,
            // Not ours: another plugin may know this file id.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return -libc::ENOTSUP,
            Err(e) => {
                log!("reading {name}: {e}");
                return -1;
            }
        };
        let res = Snapshot::decode(&data)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|snap| sctp_repair::restore(&snap).map_err(|e| format!("{name}: {e}")));
        match res {
            // Still frozen (if established): thawed at RESUME_DEVICES_LATE.
            Ok(sock) => sock.into_raw_fd(),
            Err(e) => {
                log!("restoring SCTP socket: {e}");
                -1
            }
        }
    })
}

/// After the tree is restored and the network unlocked, before the tasks
/// run: thaw the SCTP sockets of `pid`.
pub extern "C" fn resume_devices_late(pid: c_int) -> c_int {
    guard("resume", -1, || match thaw_task(pid) {
        Ok(0) => -libc::ENOTSUP,
        Ok(n) => {
            log!("thawed {n} SCTP socket(s) of task {pid}");
            0
        }
        Err(e) => {
            log!("task {pid}: {e}");
            -1
        }
    })
}

fn thaw_task(pid: c_int) -> Result<usize, String> {
    // SAFETY: plain syscall; the fd is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as c_int) };
    let dir =
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    let mut n = 0;
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Some(num) = e.file_name().to_str().and_then(|s| s.parse::<c_int>().ok()) else {
            continue;
        };
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), num, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: fresh fd we own (a copy of the task's socket).
        let sock = unsafe { OwnedFd::from_raw_fd(fd as c_int) };
        if !is_sctp(sock.as_fd()) || !matches!(sctp_repair::mode(sock.as_fd()), Ok(Mode::On)) {
            continue;
        }
        sctp_repair::set_mode(sock.as_fd(), Mode::Off).map_err(|e| format!("fd {num}: {e}"))?;
        n += 1;
    }
    Ok(n)
}
