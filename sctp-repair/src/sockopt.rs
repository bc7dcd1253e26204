//! Raw SOL_SCTP / SOL_SOCKET option calls. The only `unsafe` of the crate
//! lives here, each call with its buffer and exact length.

use std::io;

use epcmig_sys::linux;
use std::os::fd::{AsRawFd, BorrowedFd};

/// SOL_SCTP; libc exports the same number only as IPPROTO_SCTP.
pub(crate) const SOL_SCTP: libc::c_int = libc::IPPROTO_SCTP;

/// Largest option buffer we ever ask for (a hostile or broken kernel
/// answer must not make us allocate without bound).
const MAX_OPT: usize = 16 << 20;

/// getsockopt into `buf`; returns the length the kernel wrote.
pub(crate) fn get(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
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
    // SCTP_SOCKOPT_PEELOFF returns the new fd, not 0.
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((len as usize).min(buf.len()))
}

const SCTP_SOCKOPT_PEELOFF: libc::c_int = linux::SCTP_SOCKOPT_PEELOFF as libc::c_int;

/// sctp_peeloff(): association `id` of one-to-many socket `sock` on a new
/// socket of its own.
pub(crate) fn peeloff(sock: BorrowedFd<'_>, id: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // sctp_peeloff_arg_t { sctp_assoc_t associd; int sd; }
    let mut arg = [0u8; 8];
    arg[..4].copy_from_slice(&id.to_ne_bytes());
    get(sock, SOL_SCTP, SCTP_SOCKOPT_PEELOFF, &mut arg)?;
    let fd = i32::from_ne_bytes([arg[4], arg[5], arg[6], arg[7]]);
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the kernel installed `fd` for this call: it is ours alone.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
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
        let mut len = libc::socklen_t::try_from(size)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: as in `get`.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                level,
                name,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            buf.truncate((len as usize).min(size));
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        let needed = len as usize;
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
    let len = libc::socklen_t::try_from(val.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `val` is valid for `len` readable bytes for the call.
    let rc = unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, val.as_ptr().cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An int option.
pub(crate) fn get_int(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut b = [0u8; 4];
    get(sock, level, name, &mut b)?;
    Ok(libc::c_int::from_ne_bytes(b))
}

pub(crate) fn set_int(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    set(sock, level, name, &v.to_ne_bytes())
}
