//! Every system call of the crate, and with them all of its `unsafe`: the
//! rest of the crate calls these safe functions.
//!
//! Socket options have nix's shape: a type per option, with the type of
//! its value, read with [`getsockopt`] and written with [`setsockopt`].
//! Options whose value is a kernel structure (the repair blobs, the
//! replayed options of a snapshot) go by level and name as bytes
//! ([`get`], [`get_var`], [`set`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use epcmig_sys::linux;
use epcmig_sys::sctp_repair as uapi;
use libc::c_int;

use crate::sockaddr;
use crate::Mode;

/// SOL_SCTP; libc exports the same number only as IPPROTO_SCTP.
pub(crate) const SOL_SCTP: libc::c_int = libc::IPPROTO_SCTP;

/// Largest option buffer we ever ask for (a hostile or broken kernel
/// answer must not make us allocate without bound).
const MAX_OPT: usize = 16 << 20;

/// An option that can be read (nix's `GetSockOpt`).
pub trait GetSockOpt: Copy {
    type Val;
    fn get(self, sock: BorrowedFd<'_>) -> io::Result<Self::Val>;
}

/// An option that can be written (nix's `SetSockOpt`).
pub trait SetSockOpt: Copy {
    type Val;
    fn set(self, sock: BorrowedFd<'_>, val: &Self::Val) -> io::Result<()>;
}

/// Reads option `opt` of `sock`.
pub fn getsockopt<O: GetSockOpt>(sock: BorrowedFd<'_>, opt: O) -> io::Result<O::Val> {
    opt.get(sock)
}

/// Writes option `opt` of `sock`.
pub fn setsockopt<O: SetSockOpt>(sock: BorrowedFd<'_>, opt: O, val: &O::Val) -> io::Result<()> {
    opt.set(sock, val)
}

/// Int options, each a type; `bool` ones read as "not 0".
macro_rules! int_options {
    ($($(#[$doc:meta])* $name:ident: $val:ident = ($level:expr, $opt:expr), $($dir:ident)+;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        $(int_options!(@$dir $name, $val, $level, $opt);)+
    )*};
    (@get $name:ident, bool, $level:expr, $opt:expr) => {
        impl GetSockOpt for $name {
            type Val = bool;
            fn get(self, sock: BorrowedFd<'_>) -> io::Result<bool> {
                get_int(sock, $level, $opt as libc::c_int).map(|v| v != 0)
            }
        }
    };
    (@get $name:ident, $val:ident, $level:expr, $opt:expr) => {
        impl GetSockOpt for $name {
            type Val = $val;
            fn get(self, sock: BorrowedFd<'_>) -> io::Result<$val> {
                // Same width: the kernel's int seen as the option's type.
                get_int(sock, $level, $opt as libc::c_int).map(|v| v as $val)
            }
        }
    };
    (@set $name:ident, bool, $level:expr, $opt:expr) => {
        impl SetSockOpt for $name {
            type Val = bool;
            fn set(self, sock: BorrowedFd<'_>, val: &bool) -> io::Result<()> {
                set_int(sock, $level, $opt as libc::c_int, libc::c_int::from(*val))
            }
        }
    };
    (@set $name:ident, $val:ident, $level:expr, $opt:expr) => {
        impl SetSockOpt for $name {
            type Val = $val;
            fn set(self, sock: BorrowedFd<'_>, val: &$val) -> io::Result<()> {
                set_int(sock, $level, $opt as libc::c_int, *val as libc::c_int)
            }
        }
    };
}

int_options! {
    /// SO_PROTOCOL: IPPROTO_SCTP for an SCTP socket.
    Protocol: c_int = (libc::SOL_SOCKET, libc::SO_PROTOCOL), get;
    /// SO_DOMAIN: the address family.
    Domain: c_int = (libc::SOL_SOCKET, libc::SO_DOMAIN), get;
    /// SO_TYPE: SOCK_STREAM (one-to-one) or SOCK_SEQPACKET (one-to-many).
    SockType: c_int = (libc::SOL_SOCKET, libc::SO_TYPE), get;
    /// SO_ACCEPTCONN: whether the socket listens.
    AcceptConn: bool = (libc::SOL_SOCKET, libc::SO_ACCEPTCONN), get;
    /// SO_RCVBUF as the kernel reports it (twice what was asked).
    RcvBuf: c_int = (libc::SOL_SOCKET, libc::SO_RCVBUF), get;
    /// SO_SNDBUF as the kernel reports it.
    SndBuf: c_int = (libc::SOL_SOCKET, libc::SO_SNDBUF), get;
    /// SO_RCVBUFFORCE: SO_RCVBUF past rmem_max (CAP_NET_ADMIN).
    RcvBufForce: c_int = (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE), set;
    /// SO_SNDBUFFORCE: SO_SNDBUF past wmem_max (CAP_NET_ADMIN).
    SndBufForce: c_int = (libc::SOL_SOCKET, libc::SO_SNDBUFFORCE), set;
    /// IPV6_FREEBIND: bind to an address not (yet) usable.
    Ipv6FreeBind: bool = (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND), set;
    /// SCTP_GET_ASSOC_NUMBER: the associations of a one-to-many socket.
    AssocNumber: u32 = (SOL_SCTP, linux::SCTP_GET_ASSOC_NUMBER), get;
    /// SCTP_REPAIR_ASSOC_ID: the association of a one-to-many socket in
    /// repair mode that SCTP_REPAIR_* apply to (0: none).
    RepairAssocId: i32 = (SOL_SCTP, uapi::SCTP_REPAIR_ASSOC_ID), set;
    /// SCTP_REPAIR_QUEUE: the queue recvmsg and sendmsg work on.
    RepairQueue: u32 = (SOL_SCTP, uapi::SCTP_REPAIR_QUEUE), set;
}

/// SCTP_REPAIR: the repair mode.
#[derive(Debug, Clone, Copy)]
pub struct Repair;

impl Mode {
    fn raw(self) -> libc::c_int {
        // The uapi constants are small; the casts cannot truncate.
        match self {
            Mode::Off => uapi::SCTP_REPAIR_OFF as libc::c_int,
            Mode::On => uapi::SCTP_REPAIR_ON as libc::c_int,
        }
    }
}

impl GetSockOpt for Repair {
    type Val = Mode;
    fn get(self, sock: BorrowedFd<'_>) -> io::Result<Mode> {
        match get_int(sock, SOL_SCTP, uapi::SCTP_REPAIR as libc::c_int)? {
            v if v == Mode::On.raw() => Ok(Mode::On),
            v if v == Mode::Off.raw() => Ok(Mode::Off),
            v => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown repair mode {v}"),
            )),
        }
    }
}

impl SetSockOpt for Repair {
    type Val = Mode;
    fn set(self, sock: BorrowedFd<'_>, val: &Mode) -> io::Result<()> {
        set_int(sock, SOL_SCTP, uapi::SCTP_REPAIR as libc::c_int, val.raw())
    }
}

/// An errno as the result of a call that returned `rc`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socklen(n: usize) -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// getsockopt into `buf`: the call's return value (SCTP_SOCKOPT_PEELOFF
/// returns the new fd, not 0) and the length the kernel wrote or, with
/// ERANGE, needs. On -1 the caller reads errno at once.
fn getsockopt_raw(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<(libc::c_int, usize)> {
    let mut len = socklen(buf.len())?;
    // SAFETY: `buf` is valid for `len` writable bytes; `len` is a live
    // socklen_t the kernel updates.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Ok((rc, len as usize))
}

/// getsockopt into `buf`; returns the length the kernel wrote.
pub(crate) fn get(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let (rc, len) = getsockopt_raw(sock, level, name, buf)?;
    check(rc)?;
    Ok(len.min(buf.len()))
}

/// getsockopt of a variable-size option: starts with `first` bytes (the
/// buffer begins with `init`, e.g. a structure version) and, if the kernel
/// answers ERANGE with the size it needs, retries with that.
pub(crate) fn get_var(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    first: usize,
    init: &[u8],
) -> io::Result<Vec<u8>> {
    let mut size = first.max(8).max(init.len());
    for _ in 0..4 {
        let mut buf = vec![0u8; size];
        buf[..init.len()].copy_from_slice(init);
        let (rc, needed) = getsockopt_raw(sock, level, name, &mut buf)?;
        if rc == 0 {
            buf.truncate(needed.min(size));
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) || needed <= size || needed > MAX_OPT {
            return Err(err);
        }
        size = needed;
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// setsockopt with `val` as the option value.
pub(crate) fn set(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: &[u8],
) -> io::Result<()> {
    let len = socklen(val.len())?;
    // SAFETY: `val` is valid for `len` readable bytes for the call.
    check(unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, val.as_ptr().cast(), len) })
}

fn get_int(sock: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut b = [0u8; 4];
    get(sock, level, name, &mut b)?;
    Ok(libc::c_int::from_ne_bytes(b))
}

fn set_int(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    set(sock, level, name, &v.to_ne_bytes())
}

/// Takes ownership of an fd the kernel just made for us.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was returned by the kernel for this call: ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// sctp_peeloff(): association `id` of one-to-many socket `sock` on a new
/// socket of its own.
pub(crate) fn peeloff(sock: BorrowedFd<'_>, id: i32) -> io::Result<OwnedFd> {
    // sctp_peeloff_arg_t { sctp_assoc_t associd; int sd; }
    let mut arg = [0u8; 8];
    arg[..4].copy_from_slice(&id.to_ne_bytes());
    let name = linux::SCTP_SOCKOPT_PEELOFF as libc::c_int;
    let (rc, _) = getsockopt_raw(sock, SOL_SCTP, name, &mut arg)?;
    check(rc)?;
    let fd = i32::from_ne_bytes([arg[4], arg[5], arg[6], arg[7]]);
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // The kernel installed `fd` for this call.
    owned(fd)
}

/// socket(2) of `family` and `ty`, protocol SCTP.
pub(crate) fn sctp_socket(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right after.
    owned(unsafe { libc::socket(family, ty, libc::IPPROTO_SCTP) })
}

/// bind(2) to `a`.
pub(crate) fn bind(sock: BorrowedFd<'_>, a: &SocketAddr) -> io::Result<()> {
    let raw = sockaddr::encode(a);
    let len = socklen(raw.len())?;
    // SAFETY: `raw` holds a complete sockaddr of `len` bytes.
    check(unsafe { libc::bind(sock.as_raw_fd(), raw.as_ptr().cast(), len) })
}

/// listen(2).
pub(crate) fn listen(sock: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: plain listen(2) on a valid fd.
    check(unsafe { libc::listen(sock.as_raw_fd(), backlog) })
}

/// getsockname (`peer` false) or getpeername; `None` for a family that
/// is not IP.
fn name_of(sock: BorrowedFd<'_>, peer: bool) -> io::Result<Option<SocketAddr>> {
    let mut raw = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
    let mut len = socklen(raw.len())?;
    let at = raw.as_mut_ptr().cast();
    // SAFETY: `raw` is valid for `len` writable bytes; the kernel writes
    // at most that and updates `len`.
    let rc = unsafe {
        if peer {
            libc::getpeername(sock.as_raw_fd(), at, &mut len)
        } else {
            libc::getsockname(sock.as_raw_fd(), at, &mut len)
        }
    };
    check(rc)?;
    let got = raw.get(..len as usize).unwrap_or(&raw);
    Ok(sockaddr::decode(got).map(|(a, _)| a))
}

/// The address `sock` is bound to (getsockname).
pub fn local_addr(sock: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    name_of(sock, false)
}

/// The peer address of `sock` (getpeername).
pub fn peer_addr(sock: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    name_of(sock, true)
}

/// recvmsg(MSG_PEEK | MSG_DONTWAIT) into `buf`: the bytes read and
/// whether the record was longer (MSG_TRUNC).
pub(crate) fn recv_peek(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; we point it at `buf` only.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    // SAFETY: `mh` refers to live buffers for the duration of the call.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut mh,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, mh.msg_flags & libc::MSG_TRUNC != 0))
}

/// send(2) of `data` as one message.
pub(crate) fn send(sock: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for its length during the call.
    let n = unsafe { libc::send(sock.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// (device, inode) of an fd.
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, pointer to a live stat.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_dev, st.st_ino))
}

/// The network namespace of `sock` (SIOCGSKNS).
pub(crate) fn netns_of(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let req = linux::SIOCGSKNS as libc::c_ulong;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    owned(unsafe { libc::ioctl(sock.as_raw_fd(), req as _) })
}

/// Moves the calling thread into network namespace `ns`.
pub(crate) fn enter_netns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns on a namespace fd; it changes only the calling
    // thread's network namespace.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Kernel repair structures: plain C structs of integers (and
/// `sockaddr_storage`, itself integers), for which every bit pattern is a
/// valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers and arrays of
/// them, with no padding that matters and no invariants.
pub(crate) unsafe trait Plain {}
// SAFETY: bindgen structs of __u8/__u16/__u32 fields and sockaddr_storage.
unsafe impl Plain for uapi::sctp_repair_assoc {}
// SAFETY: as above.
unsafe impl Plain for uapi::sctp_repair_path {}
// SAFETY: as above.
unsafe impl Plain for uapi::sctp_repair_stream {}
// SAFETY: as above (the trailing flexible array has size 0).
unsafe impl Plain for uapi::sctp_repair_tsn_map {}
// SAFETY: as above.
unsafe impl Plain for uapi::sctp_repair_gap {}
// SAFETY: as above.
unsafe impl Plain for uapi::sctp_repair_chunk {}
// SAFETY: as above (the trailing flexible array has size 0).
unsafe impl Plain for uapi::sctp_repair_auth {}
// SAFETY: as above.
unsafe impl Plain for uapi::sctp_repair_auth_key {}
// SAFETY: as above.
unsafe impl Plain for uapi::sctp_repair_sock {}

/// The `T` at byte `at` of `b`, if `b` holds one there.
pub(crate) fn read<T: Plain>(b: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(std::mem::size_of::<T>())?;
    let src = b.get(at..end)?;
    // SAFETY: `src` holds size_of::<T>() bytes, T is Plain (any bit pattern
    // is valid), and read_unaligned copes with the slice's alignment.
    Some(unsafe { std::ptr::read_unaligned(src.as_ptr().cast::<T>()) })
}
