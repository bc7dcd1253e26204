//! gtp devices through CRIU.
//!
//! CRIU dumps a network namespace's links itself but knows nothing of kind
//! "gtp": it offers such a link to `DUMP_EXT_LINK`, and on restore only
//! sets the parameters of a link that must already exist, with the same
//! ifindex, when its `restore_links()` runs. No 4.1.1 plugin hook runs
//! there; its `setup-namespaces` action script does. And a gtp device
//! cannot exist without its UDP sockets, which for an SPGW that made them
//! itself (OAI, OsmoGGSN) are the process's own, restored much later.
//! A netns a container runtime made (runc hands it to CRIU as external)
//! is worse off: CRIU dumps and restores none of its links, addresses or
//! routes and never calls `DUMP_EXT_LINK`. Hence:
//! - dump ([`checkpoint_task`], `CHECKPOINT_DEVICES`, every task, the tree
//!   frozen): the devices of each netns of the tree, their PDP tables,
//!   addresses, routes and which process fds hold their sockets, to
//!   `epcmig-gtp-<ifindex>.img`, and the netns's forwarding sysctls and
//!   ruleset ([`crate::netconf`]); [`dump_link`] (`DUMP_EXT_LINK`) only
//!   marks that CRIU owns the netns;
//! - restore into a netns CRIU makes, setup ([`setup_namespaces`], run by
//!   `epcmig-criu-action` as the `setup-namespaces` script, links not yet
//!   restored): a device on kernel-created sockets is re-created whole but
//!   for addresses and routes, which CRIU restores; a device on process
//!   sockets gets a placeholder link holding its name and ifindex;
//! - restore, attach ([`attach`], `RESUME_DEVICES_LATE`, the tasks' fds
//!   restored, tasks not yet running): the placeholder is swapped for the
//!   device on the restored process's UDP sockets, with its PDP table,
//!   addresses and routes; in a runtime's netns every device is made
//!   whole there, and the sysctls and ruleset put back.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use gtp_state::model::{GtpSocket, GtpState, Sockets};
use gtp_state::{Netns, RestoreOptions, SocketSource};
use sctp_repair::sys;

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
    #[error("gtp device {dev} is in criu's own network namespace (the host's) and task {pid} holds its socket (fd {fd}): the plugin carries the gtp devices of a netns the dumped tree has to itself only")]
    HostNetns { dev: String, pid: i32, fd: u32 },
    #[error("gtp device {dev} would go to {file}, which another network namespace of the tree has already written: the plugin carries the gtp devices of one netns per dump")]
    TwoNetns { dev: String, file: String },
    #[error("{what} the netns's forwarding sysctls and ruleset: {source}")]
    NetConf {
        what: &'static str,
        source: crate::netconf::Error,
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

/// Marks, in the image dir, that CRIU dumped the links of the netns the
/// gtp devices are in (`DUMP_EXT_LINK` ran): on restore CRIU re-creates
/// that netns and needs the devices in place before it restores links. No
/// marker: the netns was not CRIU's (a container runtime's, handed to it
/// as external), CRIU restores none of its links, addresses or routes, and
/// the plugin re-creates the devices whole, with the netns's forwarding
/// sysctls and ruleset ([`crate::netconf`]).
pub const LINKS_BY_CRIU: &str = "epcmig-links-dumped-by-criu";

/// Network namespaces [`checkpoint_task`] has looked at in this dump.
static SEEN_NETNS: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

/// `CHECKPOINT_DEVICES(pid)`, the tree frozen, before CRIU's network lock:
/// the first time a netns of the tree is seen, every gtp device in it, and
/// its forwarding sysctls and ruleset, go to the image dir. This runs
/// whether or not CRIU will dump the netns (with an external one it never
/// calls `DUMP_EXT_LINK`), so no device is left behind unnoticed.
///
/// A device in criu's own netns (the host's) is not the tree's to take:
/// only one whose sockets a task of the tree holds fails the dump, since
/// the task would come back without its tunnels.
pub fn checkpoint_task(dir: RawFd, pid: i32) -> Result<Vec<String>, Error> {
    let ns_ino = task::netns_of(pid).map_err(io(format!("netns of task {pid}")))?;
    {
        let mut seen = SEEN_NETNS.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.get_or_insert_with(HashSet::new).insert(ns_ino) {
            return Ok(Vec::new());
        }
    }
    let ns = Netns::Pid(pid as u32);
    let devices = gtp_state::capture::devices(&ns).map_err(|source| Error::Capture {
        dev: format!("(listing the gtp devices of task {pid}'s netns)"),
        source,
    })?;
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let ours = task::netns_of(std::process::id() as i32).map_err(io("criu's own netns"))?;
    let mut done = Vec::new();
    if ns_ino == ours {
        for (dev, _) in devices {
            // Not the tree's unless one of its tasks holds a socket: a
            // device this capture cannot read is someone else's business.
            let Ok(st) = gtp_state::capture(&ns, &dev) else {
                continue;
            };
            let held = st
                .sockets_found
                .sockets
                .iter()
                .find(|s| s.owner.is_some_and(|o| o.pid == pid as u32));
            if let Some(s) = held {
                return Err(Error::HostNetns {
                    dev,
                    pid,
                    fd: s.owner.map_or(0, |o| o.fd),
                });
            }
        }
        return Ok(done);
    }
    for (dev, ifindex) in devices {
        let file = images::gtp_image_name(ifindex);
        if images::exists(dir, &file) {
            return Err(Error::TwoNetns { dev, file });
        }
        let t = std::time::Instant::now();
        let st = capture_device(&ns, &dev)?;
        let msg = write_image(dir, ifindex, &st)?;
        done.push(format!("{msg} {}", crate::took(t)));
    }
    let t = std::time::Instant::now();
    let conf = crate::netconf::capture(pid).map_err(|source| Error::NetConf {
        what: "capturing",
        source,
    })?;
    let len = crate::netconf::write(dir, &conf).map_err(|source| Error::NetConf {
        what: "writing",
        source,
    })?;
    done.push(format!(
        "netns of task {pid}: {} forwarding sysctl(s) and a ruleset of {} line(s) to {} ({len} bytes) {}",
        conf.sysctls.len(),
        crate::netconf::rule_lines(&conf),
        crate::netconf::IMAGE,
        crate::took(t)
    ));
    Ok(done)
}

/// `DUMP_EXT_LINK` for a gtp device (criu is in the dumped netns): CRIU
/// owns this netns. The device was captured at `CHECKPOINT_DEVICES`;
/// only a criu that did not call that hook leaves it to this one.
pub fn dump_link(dir: RawFd, ifindex: u32) -> Result<String, Error> {
    fault::point("gtp-link")?;
    match images::write(dir, LINKS_BY_CRIU, b"") {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(Error::Image {
                file: LINKS_BY_CRIU.into(),
                source,
            })
        }
    }
    let file = images::gtp_image_name(ifindex);
    if images::exists(dir, &file) {
        return Ok(format!(
            "gtp device with ifindex {ifindex}: captured before the network lock to {file}; \
             CRIU dumps the link"
        ));
    }
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
    let st = capture_device(&Netns::Current, &dev)?;
    write_image(dir, ifindex, &st)
}

/// Captures `dev` in `ns`; refuses a device whose sockets no process holds
/// (it could not be re-attached after a restore).
fn capture_device(ns: &Netns, dev: &str) -> Result<GtpState, Error> {
    fault::point("gtp-capture")?;
    let st = gtp_state::capture(ns, dev).map_err(|source| Error::Capture {
        dev: dev.to_string(),
        source,
    })?;
    if let Sockets::Process { .. } = st.sockets {
        if let Some(s) = st.sockets_found.sockets.iter().find(|s| s.owner.is_none()) {
            return Err(Error::Unowned {
                dev: dev.to_string(),
                which: s.which,
                inode: s.inode,
            });
        }
    }
    Ok(st)
}

fn write_image(dir: RawFd, ifindex: u32, st: &GtpState) -> Result<String, Error> {
    let dev = &st.device.name;
    let file = images::gtp_image_name(ifindex);
    let bytes = gtp_state::format::encode(st).map_err(|source| Error::Decode {
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

/// The netns settings applied by [`attach`] in this restore, to undo;
/// Some once it has dealt with them (empty if the dump wrote none).
static NETCONF_APPLIED: Mutex<Option<crate::netconf::Applied>> = Mutex::new(None);

/// The `RESUME_DEVICES_LATE` step for task `pid`, whose fds are restored
/// and which does not run yet.
///
/// In a netns CRIU made, every device of `pid`'s netns still held by a
/// placeholder is made on the restored sockets. In one a runtime made
/// (no [`LINKS_BY_CRIU`] marker) nothing is there yet: every device is
/// made whole (the kernel picks its ifindex), with its addresses and
/// routes, then the netns's forwarding sysctls and ruleset are put back.
/// Returns what was done.
pub fn attach(dir: RawFd, pid: i32) -> Result<Vec<String>, Error> {
    let mut done = Vec::new();
    let files = images::gtp_images(dir).map_err(io("listing the image directory"))?;
    if files.is_empty() {
        return Ok(done);
    }
    let by_criu = images::exists(dir, LINKS_BY_CRIU);
    let ns = Netns::Pid(pid as u32);
    for file in files {
        {
            let attached = ATTACHED.lock().unwrap_or_else(|p| p.into_inner());
            if attached.as_ref().is_some_and(|a| a.contains(&file)) {
                continue;
            }
        }
        let st = load(dir, &file)?;
        let dev = st.device.name.clone();
        let opts = if by_criu {
            if !matches!(st.sockets, Sockets::Process { .. }) {
                continue;
            }
            let placeholder =
                gtp_state::has_placeholder(&ns, &st.device).map_err(|source| Error::Restore {
                    dev: dev.clone(),
                    source,
                })?;
            if !placeholder {
                continue;
            }
            RestoreOptions {
                replace_placeholder: true,
                ..Default::default()
            }
        } else {
            RestoreOptions {
                addresses_and_routes: true,
                keep_ifindex: false,
                ..Default::default()
            }
        };
        fault::point("gtp-attach")?;
        let fds = restored_sockets(&st, pid)?;
        let raw = |w: GtpSocket| {
            fds.iter()
                .find(|(which, _)| *which == w)
                .map(|(_, f)| f.as_raw_fd())
        };
        let opts = RestoreOptions {
            sockets: match st.sockets {
                Sockets::Process { .. } => SocketSource::Fds {
                    fd0: raw(GtpSocket::Gtp0),
                    fd1: raw(GtpSocket::Gtp1u),
                },
                Sockets::Kernel { .. } => SocketSource::AsCaptured,
            },
            ..opts
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
            "{file}: {dev} re-created on the restored {}, {} PDP contexts, {} addresses, {} routes{}",
            match st.sockets {
                Sockets::Process { .. } => "process's sockets",
                Sockets::Kernel { .. } => "kernel sockets",
            },
            st.pdps.len(),
            st.addresses.len(),
            st.routes.len(),
            if by_criu {
                ""
            } else {
                " (in a netns the container runtime made)"
            }
        ));
    }
    let mut applied = NETCONF_APPLIED.lock().unwrap_or_else(|p| p.into_inner());
    if !by_criu && applied.is_none() {
        let conf = crate::netconf::load(dir).map_err(|source| Error::NetConf {
            what: "reading",
            source,
        })?;
        *applied = Some(crate::netconf::Applied::default());
        if let Some(conf) = conf {
            *applied =
                Some(
                    crate::netconf::apply(pid, &conf).map_err(|source| Error::NetConf {
                        what: "restoring",
                        source,
                    })?,
                );
            done.push(format!(
                "{}: {} forwarding sysctl(s) and a ruleset of {} line(s) restored in task {pid}'s netns",
                crate::netconf::IMAGE,
                conf.sysctls.len(),
                crate::netconf::rule_lines(&conf)
            ));
        }
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
    if let Some(a) = NETCONF_APPLIED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        out.extend(crate::netconf::undo(pid, a));
    }
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
            let ok = sys::getsockopt(f.as_fd(), sys::Protocol).ok() == Some(libc::IPPROTO_UDP)
                && addr.map_or(true, |a| {
                    sys::local_addr(f.as_fd()).ok().flatten() == Some(a)
                });
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
