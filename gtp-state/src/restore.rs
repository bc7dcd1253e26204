//! Re-creating a gtp device and its PDP contexts in a netns.

use std::net::IpAddr;
use std::os::fd::RawFd;

use netlink_packet_route::link::{GtpRole, InfoGtp};

use crate::model::{pdp_conflict, Device, GtpState, Pdp, Role, Sockets, Tunnel};
use crate::netns::Netns;
use crate::nl::{GtpNl, Install, Nl};
use crate::rt::{self, LinkSel, NewGtp};
use crate::Error;

/// Where the restored device's UDP sockets come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SocketSource {
    /// As captured: kernel-created sockets are re-created on the recorded
    /// local address; process-owned ones need [`SocketSource::Fds`].
    #[default]
    AsCaptured,
    /// Kernel-created (IFLA_GTP_CREATE_SOCKETS) on `local` (wildcard if
    /// None), whatever the capture says.
    Kernel { local: Option<IpAddr> },
    /// The restored process's UDP sockets (fds of this process): `fd0` for
    /// GTPv0 (may be absent), `fd1` for GTPv1-U. Passed as IFLA_GTP_FD0/1.
    Fds {
        fd0: Option<RawFd>,
        fd1: Option<RawFd>,
    },
}

/// How to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    pub sockets: SocketSource,
    /// How the PDP contexts are sent: by default GTP_CMD_NEWPDPS where
    /// the kernel has it, else batches of GTP_CMD_NEWPDP.
    pub install: Install,
    /// PDP hash size of the new device; None: as captured. The kernel's
    /// default, 1024, makes chains of ~100 contexts at 100k (installing
    /// them takes ~1.7x as long as with 16384 buckets); the re-created
    /// device then differs from the captured one in this field only.
    pub hash_size: Option<u32>,
    /// Re-apply the captured addresses and routes (off when someone else,
    /// such as CRIU restoring the netns, puts them back).
    pub addresses_and_routes: bool,
    /// A placeholder made by [`reserve`] for this device (a `dummy` link
    /// with the same name and ifindex) is removed first and replaced,
    /// instead of the name and ifindex counting as taken.
    pub replace_placeholder: bool,
    /// Make the device with its captured ifindex, or fail (needed where
    /// CRIU sets links up by ifindex). Off: the captured ifindex if it is
    /// free, else one the kernel picks, for a netns someone else made (a
    /// container runtime's), where another link may hold it.
    pub keep_ifindex: bool,
}

/// The largest PDP hash size restore asks for (two arrays of pointers of
/// this many buckets; the kernel's own limit is the allocation).
pub const MAX_HASH_SIZE: u32 = 1 << 20;

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            sockets: SocketSource::AsCaptured,
            install: Install::default(),
            hash_size: None,
            addresses_and_routes: true,
            replace_placeholder: false,
            keep_ifindex: true,
        }
    }
}

/// The IFLA_GTP_* socket attributes, after checking they can carry the
/// contexts.
fn socket_attrs(st: &GtpState, src: &SocketSource) -> Result<Vec<InfoGtp>, Error> {
    let kernel = |local: Option<IpAddr>| {
        let mut v = vec![InfoGtp::CreateSockets(true)];
        match local {
            Some(IpAddr::V4(a)) => v.push(InfoGtp::Local(a)),
            Some(IpAddr::V6(a)) => v.push(InfoGtp::Local6(a)),
            None => {}
        }
        (v, true, true, local.is_some_and(|l| l.is_ipv6()))
    };
    let (attrs, has0, has1, v6) = match src {
        SocketSource::AsCaptured => match &st.sockets {
            Sockets::Kernel { local } => kernel(*local),
            Sockets::Process { gtp0, gtp1u } => {
                return Err(Error::NeedsSocketFds(format!(
                    "{} used process-owned sockets (GTPv0 {}, GTPv1-U {}): restore needs the restored process's fds (--fd0/--fd1), or kernel-created sockets (--kernel-sockets)",
                    st.device.name,
                    gtp0.map(|a| a.to_string()).unwrap_or_else(|| "none found".into()),
                    gtp1u.map(|a| a.to_string()).unwrap_or_else(|| "none found".into()),
                )))
            }
        },
        SocketSource::Kernel { local } => kernel(*local),
        SocketSource::Fds { fd0, fd1 } => {
            if fd0.is_none() && fd1.is_none() {
                return Err(Error::Invalid("no socket fd given".into()));
            }
            let mut v = Vec::new();
            for (fd, mk) in [(fd0, InfoGtp::Fd0 as fn(u32) -> InfoGtp), (fd1, InfoGtp::Fd1)] {
                if let Some(fd) = fd {
                    let fd = u32::try_from(*fd)
                        .map_err(|_| Error::Invalid(format!("bad fd {fd}")))?;
                    v.push(mk(fd));
                }
            }
            // The socket family decides the peer family; check it below
            // against the contexts only when we know it.
            let v6 = st.pdps.first().is_some_and(|p| p.peer.is_ipv6());
            (v, fd0.is_some(), fd1.is_some(), v6)
        }
    };
    for p in &st.pdps {
        match p.tunnel {
            Tunnel::V0 { .. } if !has0 => {
                return Err(Error::Invalid(format!("{p} needs a GTPv0 socket (fd0)")))
            }
            Tunnel::V1 { .. } if !has1 => {
                return Err(Error::Invalid(format!("{p} needs a GTPv1-U socket (fd1)")))
            }
            _ => {}
        }
        if p.peer.is_ipv6() != v6 {
            return Err(Error::Invalid(format!(
                "{p}: peer family differs from the sockets' ({})",
                if v6 { "IPv6" } else { "IPv4" }
            )));
        }
    }
    Ok(attrs)
}

/// Re-creates `st` in netns `ns`: the device with the same name and
/// ifindex, its PDP contexts (in batches), MTU and state, addresses, routes.
///
/// Refused before anything changes if the name or ifindex is taken, a
/// route exists, the contexts conflict with each other, or the sockets
/// cannot carry them. If a later step fails the device is deleted again.
pub fn restore(ns: &Netns, st: &GtpState, opts: &RestoreOptions) -> Result<(), Error> {
    ns.run(|| restore_here(st, opts))
}

/// [`restore`] in the calling thread's netns.
pub fn restore_here(st: &GtpState, opts: &RestoreOptions) -> Result<(), Error> {
    let d = &st.device;
    let hash_size = opts.hash_size.unwrap_or(d.hash_size);
    if hash_size == 0 || hash_size > MAX_HASH_SIZE {
        return Err(Error::Invalid(format!(
            "PDP hash size {hash_size} not in 1..={MAX_HASH_SIZE}"
        )));
    }
    if let Some((a, b)) = pdp_conflict(&st.pdps) {
        return Err(Error::PdpConflict(format!("{a} and {b}")));
    }
    let sockets = socket_attrs(st, &opts.sockets)?;

    // Check first: nothing is changed unless everything can be made.
    let mut nl = Nl::route()?;
    let mut gtp = GtpNl::open()?;
    if opts.replace_placeholder {
        remove_placeholder(&mut nl, d)?;
    }
    if rt::get_link(&mut nl, LinkSel::Name(&d.name))?.is_some() {
        return Err(Error::NameTaken(d.name.clone()));
    }
    let mut want_ifindex = d.ifindex;
    if let Some(l) = rt::get_link(&mut nl, LinkSel::Index(d.ifindex))? {
        if opts.keep_ifindex {
            return Err(Error::IfindexTaken {
                ifindex: d.ifindex,
                name: l.name,
            });
        }
        // 0: the kernel picks.
        want_ifindex = 0;
    }
    if !st.routes.is_empty() {
        let existing = rt::dump_routes(&mut nl, None)?;
        for r in &st.routes {
            if existing.iter().any(|e| rt::same_slot(e, r)) {
                return Err(Error::RouteConflict(format!(
                    "{}/{} (table {}) exists in the target",
                    r.dst, r.dst_len, r.table
                )));
            }
        }
    }

    let role = match d.role {
        Role::Ggsn => GtpRole::Ggsn,
        Role::Sgsn => GtpRole::Sgsn,
    };
    match rt::create_gtp(
        &mut nl,
        &NewGtp {
            name: &d.name,
            ifindex: want_ifindex,
            role,
            hash_size,
            restart_count: d.restart_count,
            sockets,
        },
    ) {
        Ok(()) => {}
        // Taken between the check and the creation.
        Err(Error::Netlink { errno, .. }) if errno == libc::EEXIST => {
            return Err(Error::NameTaken(d.name.clone()))
        }
        Err(e) => return Err(e),
    }
    let ifindex = match rt::get_link(&mut nl, LinkSel::Name(&d.name))? {
        Some(l) if l.ifindex == d.ifindex || !opts.keep_ifindex => l.ifindex,
        Some(l) => {
            // Not ours to keep: delete by the index it got.
            let _ = rt::del_link(&mut nl, l.ifindex);
            return Err(Error::Protocol(format!(
                "the kernel gave {} ifindex {} instead of {}",
                d.name, l.ifindex, d.ifindex
            )));
        }
        None => {
            return Err(Error::Protocol(format!(
                "{} vanished after creation",
                d.name
            )))
        }
    };
    let res = fill(&mut nl, &mut gtp, st, opts, ifindex);
    if let Err(e) = res {
        return match rt::del_link(&mut nl, ifindex) {
            Ok(()) => Err(e),
            Err(c) => Err(Error::CleanupFailed {
                error: Box::new(e),
                cleanup: Box::new(c),
            }),
        };
    }
    Ok(())
}

/// Everything after the link exists, as `ifindex`.
fn fill(
    nl: &mut Nl,
    gtp: &mut GtpNl,
    st: &GtpState,
    opts: &RestoreOptions,
    ifindex: u32,
) -> Result<(), Error> {
    let d = &st.device;
    gtp.add_pdps(ifindex, &st.pdps, opts.install)?;
    rt::set_link(nl, ifindex, d.mtu, d.up)?;
    if !opts.addresses_and_routes {
        return Ok(());
    }
    for a in &st.addresses {
        rt::add_address(nl, ifindex, a)?;
    }
    for r in &st.routes {
        rt::add_route(nl, ifindex, r)?;
    }
    Ok(())
}

/// The link kind [`reserve`] makes.
const PLACEHOLDER_KIND: &str = "dummy";

/// Holds `dev`'s name and ifindex in netns `ns` with a placeholder link (a
/// `dummy` with the same MTU) until the device can be made: a gtp device
/// needs its UDP sockets at creation, and a process's own sockets may only
/// exist later (CRIU restores links before the process's files). Restore
/// with [`RestoreOptions::replace_placeholder`] swaps it for the device.
pub fn reserve(ns: &Netns, dev: &Device) -> Result<(), Error> {
    let dev = dev.clone();
    ns.run(move || {
        let mut nl = Nl::route()?;
        if rt::get_link(&mut nl, LinkSel::Name(&dev.name))?.is_some() {
            return Err(Error::NameTaken(dev.name.clone()));
        }
        if let Some(l) = rt::get_link(&mut nl, LinkSel::Index(dev.ifindex))? {
            return Err(Error::IfindexTaken {
                ifindex: dev.ifindex,
                name: l.name,
            });
        }
        match rt::create_dummy(&mut nl, &dev.name, dev.ifindex, dev.mtu) {
            Err(Error::Netlink { errno, .. }) if errno == libc::EEXIST => {
                Err(Error::NameTaken(dev.name.clone()))
            }
            r => r,
        }
    })
}

/// Whether `ns` holds the placeholder [`reserve`] made for `dev`.
pub fn has_placeholder(ns: &Netns, dev: &Device) -> Result<bool, Error> {
    let dev = dev.clone();
    ns.run(move || {
        let mut nl = Nl::route()?;
        Ok(rt::get_link(&mut nl, LinkSel::Index(dev.ifindex))?
            .is_some_and(|l| is_placeholder(&l, &dev)))
    })
}

fn is_placeholder(l: &rt::LinkInfoOut, d: &Device) -> bool {
    l.kind.as_deref() == Some(PLACEHOLDER_KIND) && l.name == d.name && l.ifindex == d.ifindex
}

/// Deletes the placeholder of `d`; anything else holding its name or
/// index is left for the usual checks to refuse.
fn remove_placeholder(nl: &mut Nl, d: &Device) -> Result<(), Error> {
    match rt::get_link(nl, LinkSel::Index(d.ifindex))? {
        Some(l) if is_placeholder(&l, d) => rt::del_link(nl, d.ifindex),
        _ => Ok(()),
    }
}

/// Installs `pdps` on the existing gtp device `ifindex` in `ns`, as `how`
/// says. For setting up a device made by something else (tests, an eNB
/// emulator); restore uses the same path.
pub fn add_pdps(ns: &Netns, ifindex: u32, pdps: &[Pdp], how: Install) -> Result<(), Error> {
    ns.run(|| {
        let mut g = GtpNl::open()?;
        g.add_pdps(ifindex, pdps, how)
    })
}

/// Whether the kernel in `ns` has GTP_CMD_NEWPDPS, which
/// [`Install::Bulk`] uses.
pub fn kernel_has_bulk_install(ns: &Netns) -> Result<bool, Error> {
    ns.run(|| Ok(GtpNl::open()?.bulk))
}

/// Deletes the gtp device `dev` in `ns` (its contexts go with it).
/// Refuses a device that is not a gtp device.
pub fn delete_device(ns: &Netns, dev: &str) -> Result<(), Error> {
    let dev = dev.to_string();
    ns.run(move || {
        let mut nl = Nl::route()?;
        let l = rt::get_link(&mut nl, LinkSel::Name(&dev))?
            .ok_or_else(|| Error::NoSuchDevice(dev.clone()))?;
        if l.kind.as_deref() != Some("gtp") {
            return Err(Error::NotGtp {
                name: dev,
                kind: l.kind.unwrap_or_else(|| "none".into()),
            });
        }
        rt::del_link(&mut nl, l.ifindex)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_hash_size_is_refused_before_anything() {
        let st = crate::model::test_state(vec![]);
        for h in [0, MAX_HASH_SIZE + 1] {
            let opts = RestoreOptions {
                hash_size: Some(h),
                ..Default::default()
            };
            assert!(matches!(restore_here(&st, &opts), Err(Error::Invalid(_))));
        }
    }
}
