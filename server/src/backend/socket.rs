//! The socket of an upgraded WebSocket connection, the same on both IO backends: read without a
//! buffer of its own, written by the output backend, shut down once.
//!
//! The socket is not registered with tokio's reactor: the core's reader (`input/reader.rs`)
//! watches it in the core's epoll set. Only the epoll driver's write to a full send buffer
//! (`output/epoll.rs`) registers it with tokio's reactor, for as long as it waits. On the
//! io_uring backend the fd is owned by tokio-uring's stream (its HTTP phase ran on it, and the
//! output ring writes to it).

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;
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
    /// Keeps the fd open.
    owner: Owner,
}

impl ConnSocket {
    /// A socket owned by tokio-uring (io_uring backend).
    pub(super) fn from_uring(stream: Rc<tokio_uring::net::TcpStream>) -> Self {
        ConnSocket {
            owner: Owner::Uring(stream),
        }
    }

    /// A plain socket (epoll backend); it is switched to nonblocking mode.
    pub(super) fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(ConnSocket {
            owner: Owner::Std(stream),
        })
    }

    /// The fd, for the reader's epoll set and the output backend's writes.
    pub fn fd(&self) -> RawFd {
        match &self.owner {
            Owner::Uring(stream) => stream.as_raw_fd(),
            Owner::Std(stream) => stream.as_raw_fd(),
        }
    }

    /// Reads what is readable into `buf` without waiting: Some(0) at end of stream, None when
    /// nothing is readable.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        self.recv_raw(ptr, len)
    }

    /// Reads into the spare capacity of `buf` and appends what was read (as `recv`).
    pub fn recv_spare(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
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
    fn recv_raw(&self, ptr: *mut u8, len: usize) -> io::Result<Option<usize>> {
        match recv_now(self.fd(), ptr, len) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            result => result.map(Some),
        }
    }

    /// Waits until the socket is writable, then runs `write` (a nonblocking write returning
    /// WouldBlock when the send buffer is full again, which waits once more). The socket is
    /// registered with tokio's reactor only while this waits: a lagging client's write, never
    /// an idle connection.
    pub async fn write_when_ready(
        &self,
        mut write: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        // SAFETY: `self` keeps the fd open, and the same file, for as long as the registration
        // lives: it is dropped (deregistered) before this returns.
        let registration =
            unsafe { AsyncFd::register_with_interest(RegisteredFd(self.fd()), Interest::WRITABLE) }
                .map_err(io::Error::from)?;
        loop {
            let mut ready = registration.writable().await?;
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
