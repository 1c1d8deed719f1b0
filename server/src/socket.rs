//! The socket of an upgraded WebSocket connection, the same on both IO backends: registered
//! with tokio's reactor for readiness, read without a buffer of its own, shut down once.
//!
//! Reads wait for readiness and then read into the core's one scratch buffer (`conn.rs`), so
//! an idle connection holds no read buffer and no read in flight; only an incomplete frame's
//! tail is copied into the connection. The epoll backend also waits here for writability when
//! the kernel's send buffer is full (`epoll_output.rs`). On the io_uring backend the fd is
//! owned by tokio-uring's stream (its HTTP phase ran on it, and the output ring writes to it),
//! so the registration only borrows the fd and is dropped first.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// A raw fd as tokio's reactor sees it; the [`ConnSocket`] that holds it keeps the fd open.
#[derive(Debug)]
struct RegisteredFd(RawFd);

impl AsRawFd for RegisteredFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Who keeps the fd open.
enum Owner {
    /// io_uring backend: tokio-uring's stream (closes the fd when the last Rc goes).
    Uring(Rc<tokio_uring::net::TcpStream>),
    /// epoll backend: a plain nonblocking socket.
    Std(std::net::TcpStream),
}

/// An upgraded connection's socket.
pub struct ConnSocket {
    /// Readiness registration. Declared first: it is dropped (deregistered) before the owner
    /// closes the fd.
    readiness: AsyncFd<RegisteredFd>,
    /// Keeps the fd open.
    owner: Owner,
}

impl ConnSocket {
    /// Registers a socket owned by tokio-uring (io_uring backend).
    pub fn from_uring(stream: Rc<tokio_uring::net::TcpStream>) -> io::Result<Self> {
        Self::register(Owner::Uring(stream))
    }

    /// Registers a plain socket (epoll backend); it is switched to nonblocking mode.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Self::register(Owner::Std(stream))
    }

    fn register(owner: Owner) -> io::Result<Self> {
        let fd = match &owner {
            Owner::Uring(stream) => stream.as_raw_fd(),
            Owner::Std(stream) => stream.as_raw_fd(),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        // SAFETY: `owner` keeps the fd open, and the same file, for as long as the registration
        // lives: both live in the returned ConnSocket, which drops the registration first.
        let readiness = unsafe { AsyncFd::register_with_interest(RegisteredFd(fd), interest) }
            .map_err(io::Error::from)?;
        Ok(ConnSocket { readiness, owner })
    }

    /// The fd, for writes submitted by the output backend.
    pub fn fd(&self) -> RawFd {
        self.readiness.get_ref().0
    }

    /// Waits until the socket is readable (or shut down, or failed).
    pub async fn readable(&self) -> io::Result<ReadReady<'_>> {
        Ok(ReadReady(self.readiness.readable().await?))
    }

    /// Waits until the socket is writable, then runs `write` (a nonblocking write returning
    /// WouldBlock when the send buffer is full again, which waits once more).
    pub async fn write_when_ready(
        &self,
        mut write: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            let mut ready = self.readiness.writable().await?;
            if let Ok(result) = ready.try_io(|fd| write(fd.as_raw_fd())) {
                return result;
            }
        }
    }

    /// `shutdown(2)`: ends the peer's stream and makes pending reads, waits and writes finish.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &self.owner {
            Owner::Uring(stream) => stream.shutdown(how),
            Owner::Std(stream) => stream.shutdown(how),
        }
    }
}

/// The socket was readable: read without waiting, synchronously (into the core's scratch
/// buffer, which no other connection uses meanwhile).
pub struct ReadReady<'a>(AsyncFdReadyGuard<'a, RegisteredFd>);

impl ReadReady<'_> {
    /// Reads into `buf`: Some(0) at end of stream, None when nothing was readable after all
    /// (readiness is then cleared, and the caller waits again).
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        self.recv_raw(ptr, len)
    }

    /// Reads into the spare capacity of `buf` and appends what was read (as `recv`).
    pub fn recv_spare(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
        let read = self.recv_raw(ptr, len)?;
        if let Some(read) = read {
            // SAFETY: recv initialised `read` (<= spare length) bytes right after the length.
            unsafe { buf.set_len(buf.len() + read) };
        }
        Ok(read)
    }

    /// `recv` into `len` writable bytes at `ptr`.
    fn recv_raw(&mut self, ptr: *mut u8, len: usize) -> io::Result<Option<usize>> {
        match self.0.try_io(|fd| recv_now(fd.as_raw_fd(), ptr, len)) {
            Ok(result) => result.map(Some),
            Err(_would_block) => Ok(None),
        }
    }
}

/// One nonblocking `recv` (MSG_DONTWAIT, not O_NONBLOCK: on the io_uring backend the fd stays
/// blocking, because io_uring reads and writes on an O_NONBLOCK socket fail with EAGAIN instead
/// of waiting in the kernel).
fn recv_now(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: the callers pass `len` writable bytes at `ptr`, borrowed for the call.
    cvt(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) })
}

/// A libc return value as io::Result.
pub fn cvt(result: isize) -> io::Result<usize> {
    usize::try_from(result).map_err(|_| io::Error::last_os_error())
}
