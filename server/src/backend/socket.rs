//! The socket of an upgraded WebSocket connection, the same on both IO backends: read without a
//! buffer of its own, written by the output backend, shut down once.
//!
//! The socket is not registered with tokio's reactor: the core's reader (`input/reader.rs`)
//! receives from it on its ring (io_uring) or watches it in its epoll set (epoll). Only the
//! epoll driver's write to a full send buffer
//! (`output/epoll.rs`) registers it with tokio's reactor, for as long as it waits. On the
//! io_uring backend the HTTP phase ran on a tokio-uring stream, which lends its fd to nobody
//! for good: the connection keeps a duplicate of it instead, and the stream closes its own fd
//! when the HTTP phase drops it. (Keeping the stream would cost every connection two
//! allocations for its whole life, ~100 B of an idle connection's ~500; the duplicate costs one
//! `fcntl` at the upgrade.)

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// An upgraded connection's socket.
pub struct ConnSocket {
    /// Keeps the fd open (nonblocking on the epoll backend only, see [`recv_now`]).
    stream: std::net::TcpStream,
}

impl ConnSocket {
    /// A duplicate of the fd of tokio-uring's `stream` (io_uring backend), which the caller
    /// drops with the HTTP phase.
    pub(super) fn from_uring(stream: &tokio_uring::net::TcpStream) -> io::Result<Self> {
        // SAFETY: plain syscall on an open fd; the result is checked before it is used.
        let fd =
            cvt(unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) } as isize)?;
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(ConnSocket { stream: fd.into() })
    }

    /// A plain socket (epoll backend); it is switched to nonblocking mode.
    pub(super) fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(ConnSocket { stream })
    }

    /// The fd, for the reader's receives or epoll set and the output backend's writes.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
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
        self.stream.shutdown(how)
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
