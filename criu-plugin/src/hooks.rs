//! The hook entry points CRIU calls. Each only converts between CRIU's
//! ints and Rust results, under `catch_unwind`, and logs; the work is in
//! [`crate::sctp`] and [`crate::gtp`].

use std::ffi::{c_char, c_int, CStr};
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use epcmig_sys::criu_plugin as abi;

use crate::{gtp, images, sctp};

/// A success, at CRIU's info level (`pr_info`).
macro_rules! info {
    ($($a:tt)*) => {
        crate::images::criu_log(
            crate::images::Level::Info,
            &format!("epcmig: {}", format_args!($($a)*)),
        )
    };
}

/// A failure, at CRIU's error level (`pr_err`).
macro_rules! error {
    ($($a:tt)*) => {
        crate::images::criu_log(
            crate::images::Level::Error,
            &format!("epcmig: {}", format_args!($($a)*)),
        )
    };
}

/// Runs `f`, turning a panic into `on_panic`.
fn guard<T>(what: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            error!("{what}: internal error (panic); failing this step");
            on_panic
        }
    }
}

fn image_dir() -> Option<c_int> {
    match images::image_dir() {
        Ok(d) => Some(d),
        Err(e) => {
            error!("{e}");
            None
        }
    }
}

/// What the plugin logs at the start of a `criu pre-dump` (the guest's
/// pre-copy tests look for it): a pre-dump copies memory only. CRIU 4.1
/// calls no other hook of ours in one (no DUMP_EXT_FILE, CHECKPOINT_DEVICES
/// or DUMP_EXT_LINK: it neither dumps files nor netns there), and no exit
/// hook after it; so nothing is frozen, no guardian starts, and the SCTP
/// and gtp state go in the final dump only.
pub const PRE_DUMP_NOTE: &str =
    "pre-dump: memory only; SCTP associations and gtp devices left running for the final dump";

pub extern "C" fn init(stage: c_int) -> c_int {
    crate::fault::record_criu_pid();
    if stage == abi::CR_PLUGIN_STAGE__PRE_DUMP as c_int {
        info!("{PRE_DUMP_NOTE}");
        return 0;
    }
    if stage == abi::CR_PLUGIN_STAGE__DUMP as c_int {
        return guard("dump start", -1, || {
            let Ok(dir) = images::image_dir() else {
                return 0;
            };
            match images::remove_stale(dir) {
                Ok(0) => 0,
                Ok(n) => {
                    info!("removed {n} file(s) of an earlier dump from the image directory");
                    0
                }
                Err(e) => {
                    error!("removing our files of an earlier dump from the image directory: {e}; failing the dump");
                    -1
                }
            }
        });
    }
    if stage != abi::CR_PLUGIN_STAGE__RESTORE as c_int {
        return 0;
    }
    guard("restore start", -1, || {
        let Ok(dir) = images::image_dir() else {
            // Not inside criu (a tool that links the library): nothing to do.
            return 0;
        };
        match sctp::lock_for_restore(dir) {
            Ok(0) => 0,
            Ok(n) => {
                info!(
                    "locked {n} association(s) out of the network namespace the container \
                     runtime made, until each is thawed"
                );
                0
            }
            Err(e) => {
                // A bad image, or nft refusing a lock.
                error!("start of the restore: {e}; failing the restore");
                -1
            }
        }
    })
}

/// criu's command line, split at its NULs.
fn criu_args() -> Vec<Vec<u8>> {
    std::fs::read("/proc/self/cmdline")
        .map(|c| c.split(|&b| b == 0).map(<[u8]>::to_vec).collect())
        .unwrap_or_default()
}

/// Whether the dumped tasks go on after a dump that ended with `ret`:
/// as criu decided it (criu-patches/0003), or, with a criu that does not
/// say, from its command line (`-R`, `--leave-running`, `--leave-stopped`,
/// `-s`). [`fate_knowable`] makes sure, before anything is frozen, that
/// one of them answers.
fn tasks_live_on(ret: c_int) -> bool {
    if ret != 0 {
        return true;
    }
    match images::dumped_tasks() {
        images::DumpedTasks::LiveOn => true,
        images::DumpedTasks::Killed => false,
        // Not decided: criu has not finished the dump, so it failed.
        images::DumpedTasks::Undecided => true,
        images::DumpedTasks::NotReported => criu_args().iter().any(|a| {
            matches!(
                a.as_slice(),
                b"-R" | b"--leave-running" | b"-s" | b"--leave-stopped"
            )
        }),
    }
}

/// Whether this plugin will learn, at the end of the dump, whether the
/// tasks live on. Over RPC (`criu swrk`, as runc, podman, CRI-O and
/// containerd run it; `criu service`) leave_running is in the request,
/// not on the command line: only criu itself can tell (criu-patches/0003).
fn fate_knowable() -> Result<(), &'static str> {
    if images::dumped_tasks() != images::DumpedTasks::NotReported {
        return Ok(());
    }
    if criu_args().iter().any(|a| a.as_slice() == b"dump") {
        return Ok(());
    }
    Err(
        "this criu does not tell plugins whether the dumped tasks live on after the dump \
         (criu_dumped_tasks_live_on(), criu-patches/0003), and in RPC mode its command line \
         does not say: refusing to freeze associations that might stay frozen",
    )
}

pub extern "C" fn exit(stage: c_int, ret: c_int) {
    guard("exit", (), || {
        if stage == abi::CR_PLUGIN_STAGE__RESTORE as c_int {
            for e in crate::netlock::end_of_restore(ret == 0) {
                error!("{e}");
            }
            return;
        }
        // PRE_DUMP (not called by CRIU 4.1 anyway): nothing was frozen.
        if stage != abi::CR_PLUGIN_STAGE__DUMP as c_int {
            return;
        }
        let thaw = tasks_live_on(ret);
        if thaw {
            info!("the dumped tasks live on: thawing what the plugin froze");
        }
        for e in sctp::end_of_dump(thaw) {
            error!("{e}");
        }
    })
}

/// CRIU (with criu-patches/) offers us inet sockets it cannot dump.
pub extern "C" fn dump_ext_file(fd: c_int, id: c_int) -> c_int {
    guard("dump", -1, || {
        // SAFETY: CRIU passes an fd it keeps open for the call.
        let sock = unsafe { BorrowedFd::borrow_raw(fd) };
        if !sctp::is_sctp(sock) {
            return -libc::ENOTSUP;
        }
        if let Err(why) = fate_knowable() {
            error!(
                "cannot dump the SCTP socket of {}: {why}",
                sctp::describe(sock)
            );
            return -1;
        }
        let Some(dir) = image_dir() else { return -1 };
        match sctp::dump(dir, sock, id) {
            Ok(msg) => {
                info!("{msg}");
                0
            }
            Err(e) => {
                error!(
                    "cannot dump the SCTP socket of {} (file id {id:#x}): {e}; \
                     failing the dump, the task keeps running with its associations",
                    sctp::describe(sock)
                );
                -1
            }
        }
    })
}

/// Called inside the restored task: re-create the socket from its image.
pub extern "C" fn restore_ext_file(id: c_int) -> c_int {
    guard("restore", -1, || {
        let Some(dir) = image_dir() else { return -1 };
        let t = std::time::Instant::now();
        match sctp::restore(dir, id) {
            Ok(Some(sock)) => {
                info!(
                    "re-created the SCTP socket of {} (frozen until the resume) {}",
                    images::sctp_image_name(id),
                    crate::took(t)
                );
                sock.into_raw_fd()
            }
            Ok(None) => -libc::ENOTSUP,
            Err(e) => {
                error!("restoring SCTP socket: {e}");
                -1
            }
        }
    })
}

/// For every task of the frozen tree, before CRIU's network lock: the gtp
/// devices of its netns (once per netns), whether CRIU dumps that netns or
/// not. A failure fails the dump; the tasks keep running.
pub extern "C" fn checkpoint_devices(pid: c_int) -> c_int {
    guard("checkpoint devices", -1, || {
        let Some(dir) = image_dir() else { return -1 };
        match gtp::checkpoint_task(dir, pid) {
            Ok(msgs) if msgs.is_empty() => -libc::ENOTSUP,
            Ok(msgs) => {
                for m in msgs {
                    info!("{m}");
                }
                0
            }
            Err(e) => {
                error!("{e}; failing the dump, the tasks keep running");
                -1
            }
        }
    })
}

/// A link of a kind CRIU does not know, in the netns being dumped (criu
/// runs in it for this call).
pub extern "C" fn dump_ext_link(ifindex: c_int, _type: c_int, kind: *mut c_char) -> c_int {
    guard("dump link", -1, || {
        if kind.is_null() {
            return -libc::ENOTSUP;
        }
        // SAFETY: CRIU passes the link's IFLA_INFO_KIND as a C string.
        let kind = unsafe { CStr::from_ptr(kind) };
        if kind.to_bytes() != b"gtp" {
            return -libc::ENOTSUP;
        }
        let Ok(ifindex) = u32::try_from(ifindex) else {
            return -1;
        };
        let Some(dir) = image_dir() else { return -1 };
        match gtp::dump_link(dir, ifindex) {
            Ok(msg) => {
                info!("{msg}");
                0
            }
            Err(e) => {
                error!("{e}");
                -1
            }
        }
    })
}

/// After the tree is restored and the network unlocked, before the tasks
/// run: make the gtp devices that wait for this task's sockets, then thaw
/// its SCTP sockets.
///
/// CRIU ignores this hook's result, so a failure here would let a task
/// run without its tunnels or associations: the task is killed instead,
/// which makes the restore fail (CRIU cannot detach from it).
pub extern "C" fn resume_devices_late(pid: c_int) -> c_int {
    guard("resume", -1, || {
        let res = (|| -> Result<usize, String> {
            let mut n = 0;
            let dir = images::image_dir().map_err(|e| e.to_string())?;
            let t = std::time::Instant::now();
            let msgs = gtp::attach(dir, pid).map_err(|e| e.to_string())?;
            let took = crate::took(t);
            for msg in msgs {
                info!("{msg} ({took} for all)");
                n += 1;
            }
            let t = std::time::Instant::now();
            let thawed = sctp::thaw_task(pid).map_err(|e| format!("SCTP: {e}"))?;
            if thawed > 0 {
                info!(
                    "thawed {thawed} SCTP socket(s) of task {pid} {}",
                    crate::took(t)
                );
            }
            Ok(n + thawed)
        })();
        match res {
            Ok(0) => -libc::ENOTSUP,
            Ok(_) => 0,
            Err(e) => {
                if let Ok(dir) = images::image_dir() {
                    for msg in gtp::undo(dir, pid) {
                        error!("task {pid}: {msg}");
                    }
                }
                // Off the wire first: the associations die with the task.
                match crate::netlock::seal_netns_of(pid) {
                    Ok(true) => error!("task {pid}: its network namespace now drops all traffic"),
                    Ok(false) => {}
                    Err(e) => error!("task {pid}: sealing its network namespace: {e}"),
                }
                error!("task {pid}: {e}; killing it so that the restore fails");
                // SAFETY: plain kill(2) of a task criu restored and holds.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                -1
            }
        }
    })
}
