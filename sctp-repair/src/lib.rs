//! Safe Rust over the kernel's SCTP repair mode (see `kernel-patches/`).
//!
//! Repair mode is the SCTP analogue of `TCP_REPAIR`: while a socket is in
//! it, the association sends nothing and can be read out or re-created
//! without the peer noticing. This crate is where SCTP state is *read*
//! (capture) and *written* (restore); CRIU integration lives in
//! `criu-plugin`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use epcmig_sys::sctp_repair as uapi;

mod capture;
mod diag;
#[cfg(feature = "serde")]
mod json;
mod queues;
mod restore;
pub mod snapshot;
mod sockopt;
mod state;

pub use capture::{capture, freeze_and_capture};
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

impl Mode {
    fn raw(self) -> libc::c_int {
        // The uapi constants are small; the casts cannot truncate.
        match self {
            Mode::Off => uapi::SCTP_REPAIR_OFF as libc::c_int,
            Mode::On => uapi::SCTP_REPAIR_ON as libc::c_int,
        }
    }
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
    let mut proto: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd for the call; pointers to a live c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut proto as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOTSOCK) => Err(Error::NotSctp),
            _ => Err(Error::Os {
                op: "getsockopt(SO_PROTOCOL)",
                source: err,
            }),
        };
    }
    if proto != libc::IPPROTO_SCTP {
        return Err(Error::NotSctp);
    }
    Ok(())
}

/// SCTP_GET_ASSOC_NUMBER (uapi/linux/sctp.h).
const SCTP_GET_ASSOC_NUMBER: libc::c_int = 28;

/// How many associations a one-to-many (SOCK_SEQPACKET) socket holds; the
/// kernel answers this for one-to-many sockets only.
pub fn association_count(sock: BorrowedFd<'_>) -> Result<u32> {
    sockopt::get_int(sock, libc::IPPROTO_SCTP, SCTP_GET_ASSOC_NUMBER)
        .map(|n| n as u32)
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
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd for the call; pointers to a live c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_SCTP,
            uapi::SCTP_REPAIR as libc::c_int,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(classify(
            "getsockopt(SCTP_REPAIR)",
            io::Error::last_os_error(),
        ));
    }
    match val {
        v if v == Mode::On.raw() => Ok(Mode::On),
        v if v == Mode::Off.raw() => Ok(Mode::Off),
        v => Err(Error::Os {
            op: "getsockopt(SCTP_REPAIR)",
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown repair mode {v}"),
            ),
        }),
    }
}

/// Puts `sock` into or out of repair mode.
pub fn set_mode(sock: BorrowedFd<'_>, mode: Mode) -> Result<()> {
    set_mode_of_sctp(sock, mode).map_err(|e| refine(sock, e))
}

/// [`set_mode`] on a socket known to be SCTP.
pub(crate) fn set_mode_of_sctp(sock: BorrowedFd<'_>, mode: Mode) -> Result<()> {
    let val = mode.raw();
    // SAFETY: the fd is borrowed for the call, and we pass a pointer to a
    // live c_int with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            // SOL_SCTP is IPPROTO_SCTP (132); libc only exports the latter.
            libc::IPPROTO_SCTP,
            uapi::SCTP_REPAIR as libc::c_int,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(classify(
            "setsockopt(SCTP_REPAIR)",
            io::Error::last_os_error(),
        ))
    }
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
