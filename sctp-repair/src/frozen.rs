//! A socket held in repair mode (libsoccr's shape): [`freeze`] it, then
//! [`Frozen::capture`], [`Frozen::thaw`] or [`Frozen::release`] it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::{Mode, Result, Snapshot};

/// A socket in repair mode: it sends nothing, drops what comes in, and
/// closes silently.
///
/// `F` is how the handle holds the socket: a [`BorrowedFd`] of the
/// caller's socket (from [`freeze`]), or the [`OwnedFd`] that
/// [`crate::restore`] made.
///
/// Dropping a handle from [`freeze`] or [`freeze_and_capture`] thaws the
/// socket (best effort: use [`Frozen::thaw`] to see an error); use
/// [`Frozen::release`] to keep it frozen, e.g. to close it without the
/// peer hearing. Dropping one from [`crate::restore`] closes the socket
/// still frozen: a restored association is not abandoned with an ABORT.
#[derive(Debug)]
pub struct Frozen<F: AsFd = OwnedFd> {
    /// `Some` until `thaw` or `release` take it.
    sock: Option<F>,
    thaw_on_drop: bool,
}

/// Puts `sock` into repair mode. A socket already frozen is held as it is
/// (the handle thaws it all the same).
pub fn freeze<F: AsFd>(sock: F) -> Result<Frozen<F>> {
    crate::set_mode(sock.as_fd(), Mode::On)?;
    Ok(Frozen::held(sock))
}

/// Freezes `sock` (unless it is a one-to-one listener, which is captured
/// running) and captures it. A partial delivery or a request waiting for
/// its answer cannot be captured ([`crate::Error::Busy`]) but completes if
/// the association runs for a moment, so the socket is thawed and the
/// capture tried again, with a growing pause, for up to `patience`. A
/// socket the caller froze is not thawed here on an error; on success the
/// handle returned holds it like any other.
pub fn freeze_and_capture<F: AsFd>(sock: F, patience: Duration) -> Result<(Frozen<F>, Snapshot)> {
    let snap = crate::capture::freeze_and_capture(sock.as_fd(), patience)?;
    Ok((Frozen::held(sock), snap))
}

impl<F: AsFd> Frozen<F> {
    /// A handle of a socket already in repair mode, thawed when dropped.
    pub(crate) fn held(sock: F) -> Self {
        Frozen {
            sock: Some(sock),
            thaw_on_drop: true,
        }
    }

    /// A handle of a restored socket, closed frozen when dropped.
    pub(crate) fn restored(sock: F) -> Self {
        Frozen {
            sock: Some(sock),
            thaw_on_drop: false,
        }
    }

    /// The socket's complete state (see [`crate::capture()`]).
    pub fn capture(&self) -> Result<Snapshot> {
        crate::capture(self.as_fd())
    }

    /// Takes the socket out of repair mode and gives it back. On error the
    /// socket is dropped: a borrowed one stays frozen, an owned one is
    /// closed, silently.
    pub fn thaw(mut self) -> Result<F> {
        let sock = self.take();
        crate::set_mode(sock.as_fd(), Mode::Off)?;
        Ok(sock)
    }

    /// Gives the socket back still frozen: whoever has it now thaws it
    /// (with [`crate::set_mode`]) or closes it, silently.
    pub fn release(mut self) -> F {
        self.take()
    }

    fn take(&mut self) -> F {
        match self.sock.take() {
            Some(s) => s,
            // `thaw` and `release` consume the handle: only they take it.
            None => unreachable!("a Frozen handle without its socket"),
        }
    }
}

impl<F: AsFd> AsFd for Frozen<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Some(s) => s.as_fd(),
            // `thaw` and `release` consume the handle: only they take it.
            None => unreachable!("a Frozen handle without its socket"),
        }
    }
}

impl<F: AsFd> Drop for Frozen<F> {
    fn drop(&mut self) {
        if let Some(s) = &self.sock {
            if self.thaw_on_drop {
                // Nothing to report an error to; thaw() is for that.
                let _ = crate::set_mode(s.as_fd(), Mode::Off);
            }
        }
    }
}
