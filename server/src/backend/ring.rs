//! A ring of a core's own beside tokio-uring's, driven with the `io-uring` crate: the output
//! path's writes (`output/uring.rs`) and the reader's receives (`input/recv_ring.rs`) each
//! have one. Its completions signal an eventfd that tokio's reactor watches, so the task that
//! owns the ring sleeps in the runtime like any other and wakes once per burst of completions.

use std::cell::{RefCell, RefMut};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{squeue, IoUring};
use tokio::io::unix::AsyncFd;

/// A core's ring and the eventfd its completions signal.
pub struct CoreRing {
    /// The ring (SQ and CQ).
    ring: RefCell<IoUring>,
    /// Signalled by the kernel on every completion; watched by tokio's reactor.
    completions: AsyncFd<OwnedFd>,
}

impl std::fmt::Debug for CoreRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreRing").finish_non_exhaustive()
    }
}

impl CoreRing {
    /// Sets up a ring of `submissions` SQ and `completions` CQ entries and its eventfd; must run
    /// inside the core's runtime (the eventfd is registered with tokio's reactor).
    pub fn new(submissions: u32, completions: u32) -> io::Result<Self> {
        // Only this core's thread submits (SINGLE_ISSUER, 6.0+), and completions need no
        // interrupt to be posted early (COOP_TASKRUN, 5.19+): each is run at the thread's next
        // kernel entry, which a busy core makes often. Older kernels refuse the flags: then the
        // ring is set up without them.
        let ring = IoUring::builder()
            .setup_cqsize(completions)
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(submissions)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(completions)
                    .build(submissions)
            })?;
        // SAFETY: eventfd(2) with constant flags; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(CoreRing {
            ring: RefCell::new(ring),
            // SAFETY: the OwnedFd is moved into the AsyncFd, so it stays open and the same
            // file until the AsyncFd (which deregisters it first) drops it.
            completions: unsafe {
                AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE)
            }
            .map_err(io::Error::from)?,
        })
    }

    /// The ring, borrowed (never across an await).
    pub fn borrow_mut(&self) -> RefMut<'_, IoUring> {
        self.ring.borrow_mut()
    }

    /// Queues `entry`, handing the queue to the kernel first if it is full.
    ///
    /// # Safety
    /// Whatever `entry` points to must stay valid until its last completion is reaped.
    pub unsafe fn push(&self, entry: &squeue::Entry) -> io::Result<()> {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: the caller's promise.
            if unsafe { ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            ring.submit()?;
        }
    }

    /// Waits until the eventfd is readable and empties it. Readiness is cleared at once: a
    /// completion signalled after the read is a new edge for the reactor, and every completion
    /// posted so far is reaped after this returns.
    pub async fn signalled(&self) -> io::Result<()> {
        let mut guard = self.completions.readable().await?;
        let mut counter = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `counter`, which outlives the call. EAGAIN (the
        // counter was already emptied) is harmless.
        unsafe {
            libc::read(
                self.completions.get_ref().as_raw_fd(),
                counter.as_mut_ptr().cast(),
                counter.len(),
            );
        }
        guard.clear_ready();
        Ok(())
    }
}
