//! The epoll backend's readiness: one epoll set per core holding every connection being read
//! (level-triggered, `data` = the connection's reader key), registered once with tokio's
//! reactor. What is left in a socket after one read is reported again by the next
//! `epoll_wait`, so a flooding client gets one read per turn like every other.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

use crate::backend::cvt;
use crate::output::ConnectionKey;

/// Most readiness events taken per `epoll_wait` (one turn of the reader).
const EVENTS_PER_TURN: usize = 256;

/// A core's epoll set of connections being read.
pub struct EpollSet {
    /// The epoll instance, registered with tokio's reactor.
    poller: AsyncFd<OwnedFd>,
    /// Buffer for `epoll_wait`.
    events: RefCell<Vec<libc::epoll_event>>,
}

impl std::fmt::Debug for EpollSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollSet").finish_non_exhaustive()
    }
}

impl EpollSet {
    /// An empty set; must be created inside the core's runtime (it registers with tokio's
    /// reactor).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before it is used as an fd.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as isize)?;
        // SAFETY: `fd` is a new epoll instance nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: the AsyncFd owns `epoll`, which stays open and the same until it is dropped.
        let poller = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(EpollSet {
            poller,
            events: RefCell::new(Vec::with_capacity(EVENTS_PER_TURN)),
        })
    }

    /// Puts `fd`, the socket of connection `key`, into the set.
    pub fn watch(&self, fd: RawFd, key: ConnectionKey) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: u64::from(key.0),
        };
        // SAFETY: both fds are open; the event is read by the call only.
        cvt(
            unsafe { libc::epoll_ctl(self.poller.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) }
                as isize,
        )
        .map(drop)
    }

    /// Takes `fd` out of the set.
    pub fn unwatch(&self, fd: RawFd) {
        // SAFETY: both fds are open. Failing means the fd is not in the set: the goal.
        unsafe {
            libc::epoll_ctl(
                self.poller.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits until the set has a ready socket; the guard's readiness is cleared by the caller
    /// once a turn found none ready (an edge is only reported again after that).
    pub async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        self.poller.readable().await
    }

    /// The keys of the ready connections, at most EVENTS_PER_TURN, without waiting.
    pub fn ready(&self, keys: &mut Vec<ConnectionKey>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        events.clear();
        let ready = loop {
            // SAFETY: the buffer has room for EVENTS_PER_TURN events; the kernel initialises
            // the number it returns, which becomes the length.
            let ready = cvt(unsafe {
                libc::epoll_wait(
                    self.poller.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_PER_TURN as i32,
                    0,
                )
            } as isize);
            match ready {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                ready => break ready?,
            }
        };
        // SAFETY: see above.
        unsafe { events.set_len(ready) };
        keys.extend(events.iter().map(|event| ConnectionKey(event.u64 as u32)));
        Ok(())
    }
}
