//! Safe Rust over the kernel's SCTP repair mode (see `kernel-patches/`).
//!
//! Repair mode is the SCTP analogue of `TCP_REPAIR`: while a socket is in
//! it, the association sends nothing and can be read out or re-created
//! without the peer noticing. This crate is where SCTP state is *read*
//! (capture) and *written* (restore); CRIU integration lives in
//! `criu-plugin`.

// System calls, and so `unsafe`, only in `sys`.
#![deny(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

mod capture;
mod diag;
mod frozen;
#[cfg(feature = "serde")]
mod json;
mod queues;
mod restore;
pub mod snapshot;
mod sockaddr;
mod state;
#[allow(unsafe_code)]
pub mod sys;

pub use capture::capture;
pub use frozen::{freeze, freeze_and_capture, Frozen};
pub use queues::QueueRecord;
pub use restore::{restore, restore_onto};
pub use snapshot::{FormatError, Kind, Member, Snapshot, SockOpt};
pub use state::AssocInfo;

/// Errors from repair-mode operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The running kernel does not know the SCTP repair socket options.
    #[error("this kernel has no SCTP repair mode (apply kernel-patches/ and boot it)")]
    Unsupported,
    /// The caller lacks CAP_NET_ADMIN in the socket's network namespace.
    #[error("SCTP repair mode needs CAP_NET_ADMIN in the socket's network namespace")]
    PermissionDenied,
    /// The fd is not an SCTP socket.
    #[error("not an SCTP socket")]
    NotSctp,
    /// The kernel has no repair mode for this type of SCTP socket: a
    /// peeled-off association, or a one-to-many socket on a kernel with
    /// the series up to one-to-one sockets only.
    #[error("this SCTP socket cannot be frozen or captured: SCTP repair mode takes one-to-one (SOCK_STREAM) and one-to-many (SOCK_SEQPACKET) sockets, not a peeled-off association (sctp_peeloff); an older kernel series takes one-to-one sockets only")]
    NotRepairable,
    /// A one-to-many socket's association cannot get its id back: another
    /// association of this host holds it (ids are global to the kernel).
    #[error("association id {0} is taken on this host by another association; the application knows the association by that id, so it is not restored under another")]
    AssocIdInUse(i32),
    /// A listener holds associations that are established but not yet
    /// accept()ed, and is not frozen (or the kernel cannot list them): a
    /// snapshot of the listener would lose them.
    #[error("the listener holds {pending} association(s) not yet accept()ed, which a snapshot can carry only of a frozen listener on a kernel with SCTP_REPAIR_ASSOC_IDS (kernel-patches/sctp/0020); freeze it first")]
    AcceptQueue { pending: u32 },
    /// Something is in progress that a snapshot cannot hold: a handshake
    /// or shutdown (repair mode refused), or an ASCONF, stream reset or
    /// partial delivery (capture refused). It completes once the socket
    /// runs again; [`freeze_and_capture`] retries for that reason.
    #[error("the association is busy (handshake, shutdown, ASCONF, stream reset or partial delivery in progress); only a settled ESTABLISHED association, a listener or a fresh socket can be frozen and captured")]
    Busy,
    /// Capturing an association needs the socket in repair mode first.
    #[error("the socket is not in repair mode; freeze it before capturing")]
    NotFrozen,
    /// The socket has no association (and is not listening).
    #[error("the socket has no association to capture")]
    NoAssociation,
    /// A snapshot that cannot be used.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A local address of the snapshot is taken in this namespace.
    #[error("address {0} is already in use here")]
    AddressInUse(SocketAddr),
    /// A local address of the snapshot does not exist in this namespace.
    #[error("address {0} does not exist in this network namespace")]
    AddressNotAvailable(SocketAddr),
    /// The kernel refused the state (e.g. the peer already has an
    /// association with us on that port).
    #[error("{op}: the kernel refused the state: {source}")]
    Rejected {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Any other failure of a system call, with what we were doing.
    #[error("{op}: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Repair mode of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Normal operation.
    Off,
    /// Frozen: nothing sent, input dropped silently, close() is silent.
    On,
}

/// Maps the errno of a repair sockopt to our error, naming the operation.
pub(crate) fn classify(op: &'static str, err: io::Error) -> Error {
    match err.raw_os_error() {
        // An unpatched kernel answers an unknown SOL_SCTP option this way.
        Some(libc::ENOPROTOOPT) => Error::Unsupported,
        Some(libc::EPERM) => Error::PermissionDenied,
        Some(libc::ENOTSOCK) => Error::NotSctp,
        // A peeled-off association (or, on an older series, any
        // one-to-many socket).
        Some(libc::EOPNOTSUPP) => Error::NotRepairable,
        // A handshake or shutdown in progress cannot be frozen.
        Some(libc::EBUSY) => Error::Busy,
        _ => Error::Os { op, source: err },
    }
}

/// Fails with [`Error::NotSctp`] unless `sock` is an SCTP socket, so that
/// an unknown SOL_SCTP option (ENOPROTOOPT) can only mean "no repair mode".
pub(crate) fn ensure_sctp(sock: BorrowedFd<'_>) -> Result<()> {
    match sys::getsockopt(sock, sys::Protocol) {
        Ok(libc::IPPROTO_SCTP) => Ok(()),
        Ok(_) => Err(Error::NotSctp),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => Err(Error::NotSctp),
        Err(source) => Err(Error::Os {
            op: "getsockopt(SO_PROTOCOL)",
            source,
        }),
    }
}

/// Whether `sock` is an SCTP socket (false if that cannot be read).
pub fn is_sctp(sock: BorrowedFd<'_>) -> bool {
    ensure_sctp(sock).is_ok()
}

/// How many associations a one-to-many (SOCK_SEQPACKET) socket holds; the
/// kernel answers this for one-to-many sockets only.
pub fn association_count(sock: BorrowedFd<'_>) -> Result<u32> {
    sys::getsockopt(sock, sys::AssocNumber)
        .map_err(|e| classify("getsockopt(SCTP_GET_ASSOC_NUMBER)", e))
        .map_err(|e| refine(sock, e))
}

/// The repair mode `sock` is in.
pub fn mode(sock: BorrowedFd<'_>) -> Result<Mode> {
    mode_of_sctp(sock).map_err(|e| refine(sock, e))
}

/// Only SCTP sockets take SOL_SCTP options, so the happy path needs no
/// SO_PROTOCOL check; a failure is told apart from "not SCTP" afterwards.
fn refine(sock: BorrowedFd<'_>, e: Error) -> Error {
    match ensure_sctp(sock) {
        Ok(()) => e,
        Err(not_sctp) => not_sctp,
    }
}

/// [`mode`] of a socket known to be SCTP.
pub(crate) fn mode_of_sctp(sock: BorrowedFd<'_>) -> Result<Mode> {
    sys::getsockopt(sock, sys::Repair).map_err(|e| classify("getsockopt(SCTP_REPAIR)", e))
}

/// Puts `sock` into or out of repair mode: the low-level switch, for a
/// socket no [`Frozen`] handle holds (e.g. one found frozen in another
/// process). Prefer [`freeze`] and the handle's `thaw`/`release`.
pub fn set_mode(sock: BorrowedFd<'_>, mode: Mode) -> Result<()> {
    set_mode_of_sctp(sock, mode).map_err(|e| refine(sock, e))
}

/// [`set_mode`] on a socket known to be SCTP.
pub(crate) fn set_mode_of_sctp(sock: BorrowedFd<'_>, mode: Mode) -> Result<()> {
    sys::setsockopt(sock, sys::Repair, &mode).map_err(|e| classify("setsockopt(SCTP_REPAIR)", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_names_the_cause() {
        let e = classify("x", io::Error::from_raw_os_error(libc::ENOPROTOOPT));
        assert!(matches!(e, Error::Unsupported));
        assert!(e.to_string().contains("no SCTP repair mode"));
        let e = classify("x", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(e, Error::PermissionDenied));
        let e = classify("op", io::Error::from_raw_os_error(libc::EINVAL));
        assert!(e.to_string().starts_with("op: "));
    }

    #[test]
    fn non_socket_fd_is_refused() {
        let f = std::fs::File::open("/dev/null").expect("open /dev/null");
        let fd = std::os::fd::AsFd::as_fd(&f);
        assert!(matches!(set_mode(fd, Mode::On), Err(Error::NotSctp)));
        assert!(matches!(mode(fd), Err(Error::NotSctp)));
    }

    #[test]
    fn tcp_socket_is_not_taken_for_an_old_kernel() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = std::os::fd::AsFd::as_fd(&l);
        assert!(matches!(set_mode(fd, Mode::On), Err(Error::NotSctp)));
    }
}
