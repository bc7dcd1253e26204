//! Capture and re-create Linux `gtp` devices and their PDP/TEID tables.
//!
//! An SPGW's (or GGSN's, UPF's) user plane is a `gtp` link plus its table
//! of PDP contexts. [`capture`] reads both out of a network namespace: the
//! link over rtnetlink (name, ifindex, role, PDP hash size, restart count,
//! MTU, up, addresses, routes through it), the contexts from a
//! `GTP_CMD_GETPDP` dump of the `gtp` generic-netlink family, and which
//! UDP sockets it encapsulates with, as far as they can be found (see
//! [`sockets`]). [`restore`] re-creates all of it in another namespace: the
//! link with the same name and ifindex, with kernel-created sockets or with
//! the UDP sockets of a restored process ([`SocketSource::Fds`]), the
//! contexts in `GTP_CMD_NEWPDPS` requests of many contexts each where the
//! kernel has that command (kernel-patches/gtp/0005), else in batches of
//! `GTP_CMD_NEWPDP` requests per send() ([`Install`]), then addresses and
//! routes. It refuses to restore over anything that exists,
//! before it changes anything, and removes what it made if a later step
//! fails. [`format`] is the capture file; [`GtpState`] serialises to JSON.
//!
//! ```no_run
//! use gtp_state::{capture, restore, Netns, RestoreOptions};
//! let st = capture(&Netns::named("spgw"), "gtp0")?;
//! let bytes = gtp_state::format::encode(&st)?;
//! let back = gtp_state::format::decode(&bytes)?;
//! restore(&Netns::named("spgw-new"), &back, &RestoreOptions::default())?;
//! # Ok::<(), gtp_state::Error>(())
//! ```

pub mod capture;
pub mod format;
pub mod model;
pub mod netns;
mod nl;
pub mod restore;
mod rt;
pub mod sockets;

pub use capture::capture;
pub use format::FormatError;
pub use model::{
    Address, Device, FdOwner, FoundBy, GtpSocket, GtpState, Pdp, Role, Route, SocketId, Sockets,
    SocketsFound, Tunnel,
};
pub use netns::Netns;
pub use nl::{Install, DEFAULT_BATCH};
pub use restore::{
    add_pdps, delete_device, has_placeholder, kernel_has_bulk_install, reserve, restore,
    RestoreOptions, SocketSource, MAX_HASH_SIZE,
};

/// Errors from capturing or restoring gtp state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No link of that name or index in the namespace.
    #[error("no such device: {0}")]
    NoSuchDevice(String),
    /// The link exists but is not of kind "gtp".
    #[error("{name} is not a gtp device (kind {kind})")]
    NotGtp { name: String, kind: String },
    /// Restore target: a link of that name exists.
    #[error("device name {0} is taken in the target netns")]
    NameTaken(String),
    /// Restore target: a link with that ifindex exists.
    #[error("ifindex {ifindex} is taken in the target netns (by {name})")]
    IfindexTaken { ifindex: u32, name: String },
    /// Two contexts (or a context and the kernel) claim the same MS
    /// address or TEI/TID.
    #[error("PDP context conflict: {0}")]
    PdpConflict(String),
    /// A route to restore exists already in the target.
    #[error("route conflict: {0}")]
    RouteConflict(String),
    /// The kernel refused for lack of CAP_NET_ADMIN (or CAP_SYS_ADMIN to
    /// enter a netns).
    #[error("permission denied {0}: needs CAP_NET_ADMIN in the target netns (and CAP_SYS_ADMIN to enter another netns)")]
    PermissionDenied(&'static str),
    /// The kernel has no `gtp` generic-netlink family (CONFIG_GTP off).
    #[error("the kernel has no gtp support (no \"gtp\" generic netlink family)")]
    NoGtpSupport,
    /// Process-owned sockets cannot be re-created without the process's fds.
    #[error("{0}")]
    NeedsSocketFds(String),
    /// The capture or the options do not describe something restorable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The netns file could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
    /// A corrupt, truncated or unsupported capture file.
    #[error("corrupt capture: {0}")]
    Format(#[from] FormatError),
    /// The kernel refused one PDP context.
    #[error("the kernel refused PDP context {pdp}: {source}")]
    PdpRejected { pdp: String, source: std::io::Error },
    /// The kernel refused a request.
    #[error("{op}: {source}")]
    Netlink {
        op: &'static str,
        errno: i32,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
    /// An unexpected netlink reply.
    #[error("netlink protocol: {0}")]
    Protocol(String),
    /// A restore failed and removing the half-made device failed too.
    #[error("{error}; and removing the half-made device failed: {cleanup}")]
    CleanupFailed {
        error: Box<Error>,
        cleanup: Box<Error>,
    },
}

impl Error {
    /// A kernel errno (positive) answering `op`.
    pub(crate) fn from_errno(op: &'static str, errno: i32) -> Error {
        match errno {
            libc::EPERM | libc::EACCES => Error::PermissionDenied(op),
            _ => Error::Netlink {
                op,
                errno,
                source: std::io::Error::from_raw_os_error(errno),
            },
        }
    }

    pub(crate) fn from_io(op: &'static str, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            Some(n @ (libc::EPERM | libc::EACCES)) => Error::from_errno(op, n),
            _ => Error::Io { op, source: e },
        }
    }

    /// The errno of a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_decoding_rejects_unknown_values() {
        assert_eq!(Role::from_raw(0), Some(Role::Ggsn));
        assert_eq!(Role::from_raw(1), Some(Role::Sgsn));
        assert_eq!(Role::from_raw(2), None);
    }

    #[test]
    fn errors_name_their_cause() {
        assert!(matches!(
            Error::from_errno("x", libc::EPERM),
            Error::PermissionDenied("x")
        ));
        let e = Error::from_errno("creating the gtp device", libc::EADDRINUSE);
        assert_eq!(e.errno(), Some(libc::EADDRINUSE));
        assert!(e.to_string().starts_with("creating the gtp device: "));
    }

    #[test]
    fn json_shape() {
        let st = crate::model::test_state(vec![Pdp {
            tunnel: Tunnel::V1 { i_tei: 1, o_tei: 2 },
            peer: "192.0.2.3".parse().unwrap(),
            ms: "10.45.0.2".parse().unwrap(),
        }]);
        let j = serde_json::to_value(&st).unwrap();
        assert_eq!(j["device"]["role"], "ggsn");
        assert_eq!(j["sockets"]["mode"], "kernel");
        assert_eq!(j["pdps"][0]["version"], "v1");
        assert_eq!(j["pdps"][0]["i_tei"], 1);
        assert_eq!(j["pdps"][0]["ms"], "10.45.0.2");
    }
}
