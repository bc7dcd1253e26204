//! gtp devices through CRIU.
//!
//! CRIU dumps a network namespace's links itself but knows nothing of kind
//! "gtp": it offers such a link to `DUMP_EXT_LINK`, and on restore only
//! sets the parameters of a link that must already exist, with the same
//! ifindex, when its `restore_links()` runs. No 4.1.1 plugin hook runs
//! there; its `setup-namespaces` action script does. And a gtp device
//! cannot exist without its UDP sockets, which for an SPGW that made them
//! itself (OAI, OsmoGGSN) are the process's own, restored much later.
//! Hence three steps:
//! - dump ([`dump_link`], `DUMP_EXT_LINK`, criu in the dumped netns): the
//!   device, its PDP table, addresses, routes and which process fds hold
//!   its sockets, to `epcmig-gtp-<ifindex>.img`;
//! - restore, setup ([`setup_namespaces`], run by `epcmig-criu-action` as
//!   the `setup-namespaces` script, new netns made, links not yet
//!   restored): a device on kernel-created sockets is re-created whole but
//!   for addresses and routes, which CRIU restores; a device on process
//!   sockets gets a placeholder link holding its name and ifindex;
//! - restore, attach ([`attach`], `RESUME_DEVICES_LATE`, the tasks' fds
//!   restored, tasks not yet running): the placeholder is swapped for the
//!   device on the restored process's UDP sockets, with its PDP table,
//!   addresses and routes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use gtp_state::model::{GtpSocket, GtpState, Sockets};
use gtp_state::{Netns, RestoreOptions, SocketSource};

use crate::fault::{self, Injected};
use crate::images;
use crate::task::{self, Task};

/// Largest gtp image we read back: 100k contexts take ~2 MB.
const MAX_IMAGE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gtp device with ifindex {0} has no name in this netns")]
    NoSuchIfindex(u32),
    #[error("capturing gtp device {dev}: {source}")]
    Capture {
        dev: String,
        source: gtp_state::Error,
    },
    #[error("{file}: {source}")]
    Image {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Decode {
        file: String,
        source: gtp_state::format::FormatError,
    },
    #[error("{dev} encapsulates with a socket no process holds ({which:?}, inode {inode}): it cannot be re-attached after a restore")]
    Unowned {
        dev: String,
        which: GtpSocket,
        inode: u64,
    },
    #[error("re-creating {dev} in the restored netns: {source}")]
    Restore {
        dev: String,
        source: gtp_state::Error,
    },
    #[error("{dev}: no restored task in its netns holds its {which:?} socket (fd {fd}, bound to {addr:?})")]
    SocketNotFound {
        dev: String,
        which: GtpSocket,
        fd: u32,
        addr: Option<SocketAddr>,
    },
    #[error("{0}")]
    Injected(#[from] Injected),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Dumps the gtp device `ifindex` of the current netns into the image dir
/// `dir`. Reads only: a failed dump changes nothing.
pub fn dump_link(dir: RawFd, ifindex: u32) -> Result<String, Error> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(Error::NoSuchIfindex(ifindex));
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let dev = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    fault::point("gtp-capture")?;
    let st = gtp_state::capture::capture_here(&dev).map_err(|source| Error::Capture {
        dev: dev.clone(),
        source,
    })?;
    if let Sockets::Process { .. } = st.sockets {
        if let Some(s) = st.sockets_found.sockets.iter().find(|s| s.owner.is_none()) {
            return Err(Error::Unowned {
                dev,
                which: s.which,
                inode: s.inode,
            });
        }
    }
    let file = images::gtp_image_name(ifindex);
    let bytes = gtp_state::format::encode(&st).map_err(|source| Error::Decode {
        file: file.clone(),
        source,
    })?;
    fault::point("gtp-write")?;
    images::write(dir, &file, &bytes).map_err(|source| Error::Image {
        file: file.clone(),
        source,
    })?;
    Ok(format!(
        "dumped gtp device {dev} (ifindex {ifindex}, {} sockets, {} PDP contexts, {} routes) to {file} ({} bytes)",
        match st.sockets {
            Sockets::Kernel { .. } => "kernel-created",
            Sockets::Process { .. } => "process-owned",
        },
        st.pdps.len(),
        st.routes.len(),
        bytes.len()
    ))
}

fn load(dir: RawFd, file: &str) -> Result<GtpState, Error> {
    let data = images::read(dir, file, MAX_IMAGE).map_err(|source| Error::Image {
        file: file.to_string(),
        source,
    })?;
    if data.is_empty() {
        return Err(Error::Image {
            file: file.to_string(),
            source: std::io::Error::other("the file is empty"),
        });
    }
    gtp_state::format::decode(&data).map_err(|source| Error::Decode {
        file: file.to_string(),
        source,
    })
}

/// The `setup-namespaces` step: the restored tree's netns (that of
/// `init_pid`) exists, CRIU has not restored its links yet. Returns what
/// was done, a line per device.
pub fn setup_namespaces(dir: RawFd, init_pid: u32) -> Result<Vec<String>, Error> {
    let ns = Netns::Pid(init_pid);
    let mut done = Vec::new();
    for file in images::gtp_images(dir).map_err(io("listing the image directory"))? {
        let st = load(dir, &file)?;
        let dev = st.device.name.clone();
        fault::point("gtp-setup")?;
        match st.sockets {
            Sockets::Kernel { .. } => {
                let opts = RestoreOptions {
                    // CRIU restores them from its own images.
                    addresses_and_routes: false,
                    ..Default::default()
                };
                gtp_state::restore(&ns, &st, &opts).map_err(|source| Error::Restore {
                    dev: dev.clone(),
                    source,
                })?;
                done.push(format!(
                    "{file}: re-created {dev} (ifindex {}) on kernel sockets with {} PDP contexts",
                    st.device.ifindex,
                    st.pdps.len()
                ));
            }
            Sockets::Process { .. } => {
                gtp_state::reserve(&ns, &st.device).map_err(|source| Error::Restore {
                    dev: dev.clone(),
                    source,
                })?;
                done.push(format!(
                    "{file}: placeholder for {dev} (ifindex {}) until the process's sockets are restored",
                    st.device.ifindex
                ));
            }
        }
    }
    Ok(done)
}

/// Devices already attached by this restore (image file names).
static ATTACHED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The `RESUME_DEVICES_LATE` step for task `pid`: every device of `pid`'s
/// netns still held by a placeholder is made on the restored sockets.
/// Returns what was done.
pub fn attach(dir: RawFd, pid: i32) -> Result<Vec<String>, Error> {
    let mut done = Vec::new();
    let files = images::gtp_images(dir).map_err(io("listing the image directory"))?;
    if files.is_empty() {
        return Ok(done);
    }
    let ns = Netns::Pid(pid as u32);
    for file in files {
        {
            let attached = ATTACHED.lock().unwrap_or_else(|p| p.into_inner());
            if attached.as_ref().is_some_and(|a| a.contains(&file)) {
                continue;
            }
        }
        let st = load(dir, &file)?;
        if !matches!(st.sockets, Sockets::Process { .. }) {
            continue;
        }
        let dev = st.device.name.clone();
        let placeholder =
            gtp_state::has_placeholder(&ns, &st.device).map_err(|source| Error::Restore {
                dev: dev.clone(),
                source,
            })?;
        if !placeholder {
            continue;
        }
        fault::point("gtp-attach")?;
        let fds = restored_sockets(&st, pid)?;
        let raw = |w: GtpSocket| {
            fds.iter()
                .find(|(which, _)| *which == w)
                .map(|(_, f)| f.as_raw_fd())
        };
        let opts = RestoreOptions {
            sockets: SocketSource::Fds {
                fd0: raw(GtpSocket::Gtp0),
                fd1: raw(GtpSocket::Gtp1u),
            },
            replace_placeholder: true,
            ..Default::default()
        };
        gtp_state::restore(&ns, &st, &opts).map_err(|source| Error::Restore {
            dev: dev.clone(),
            source,
        })?;
        ATTACHED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(file.clone());
        done.push(format!(
            "{file}: {dev} (ifindex {}) re-created on the restored process's sockets, {} PDP contexts, {} addresses, {} routes",
            st.device.ifindex,
            st.pdps.len(),
            st.addresses.len(),
            st.routes.len()
        ));
    }
    Ok(done)
}

/// After a failed `RESUME_DEVICES_LATE` for task `pid`: deletes the
/// devices [`attach`] made in its netns. A device on a process's sockets
/// keeps the netns alive after the process is killed, so it would stay
/// behind, half-made. Returns what was removed.
pub fn undo(dir: RawFd, pid: i32) -> Vec<String> {
    let files: Vec<String> = ATTACHED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map(|a| a.into_iter().collect())
        .unwrap_or_default();
    let ns = Netns::Pid(pid as u32);
    let mut out = Vec::new();
    for file in files {
        if let Ok(st) = load(dir, &file) {
            match gtp_state::delete_device(&ns, &st.device.name) {
                Ok(()) => out.push(format!("removed {} again", st.device.name)),
                Err(e) => out.push(format!("removing {}: {e}", st.device.name)),
            }
        }
    }
    out
}

/// The restored UDP sockets the device used: the fd numbers recorded at
/// dump, looked up in the recorded pid if it is in `pid`'s netns (CRIU
/// restores pids), else in any task of that netns, and only taken if the
/// socket is UDP and bound where the dumped one was.
fn restored_sockets(st: &GtpState, pid: i32) -> Result<Vec<(GtpSocket, OwnedFd)>, Error> {
    let Sockets::Process { gtp0, gtp1u } = st.sockets else {
        return Ok(Vec::new());
    };
    let ns = task::netns_of(pid).map_err(io(format!("netns of task {pid}")))?;
    let mut out = Vec::new();
    for s in &st.sockets_found.sockets {
        let Some(owner) = s.owner else {
            continue;
        };
        let addr = match s.which {
            GtpSocket::Gtp0 => gtp0,
            GtpSocket::Gtp1u => gtp1u,
        };
        let mut candidates = vec![owner.pid as i32, pid];
        candidates.extend(tasks_in_netns(ns));
        let found = candidates.into_iter().find_map(|c| {
            if task::netns_of(c).ok()? != ns {
                return None;
            }
            let f = Task::open(c).ok()?.fd(owner.fd as i32).ok()?;
            let ok = task::protocol(f.as_fd()) == Some(libc::IPPROTO_UDP)
                && addr.map_or(true, |a| task::local_addr(f.as_fd()) == Some(a));
            ok.then_some(f)
        });
        match found {
            Some(f) => out.push((s.which, f)),
            None => {
                return Err(Error::SocketNotFound {
                    dev: st.device.name.clone(),
                    which: s.which,
                    fd: owner.fd,
                    addr,
                })
            }
        }
    }
    Ok(out)
}

/// Every process in netns `ns` (by inode), lowest pid first.
fn tasks_in_netns(ns: u64) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .filter(|p| task::netns_of(*p).ok() == Some(ns))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}
