//! The epoll backend: a core's plain tokio current-thread runtime, its accept, and the HTTP
//! phase's IO (tokio's own sockets, shared between hyper and the HTTP phase's owner, which
//! still needs the socket for a lingering close after hyper is done).
//!
//! Reads and writes go straight to the socket through tokio's readiness (`try_read` /
//! `try_write` after `poll_*_ready`), so nothing is ever left in flight: at the upgrade the
//! socket leaves tokio's registration, and the core's reader watches it in its own epoll set
//! (`input/reader.rs`).

use std::cell::Cell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::{ConnSocket, CoreMain, HttpSocket, Listener, UpgradedIo, WriteSlot};

/// Runs a core on a plain tokio current-thread runtime.
pub(super) fn run_core(listener: std::net::TcpListener, core: impl CoreMain) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => tokio::task::LocalSet::new().block_on(&runtime, async {
            // Registering the listener needs the runtime's reactor: inside it.
            core.serve(TcpListener::from_std(listener)).await;
        }),
        Err(error) => core.runtime_failed(error),
    }
}

/// hyper's IO over a shared tokio socket.
pub struct EpollIo {
    /// The socket.
    stream: Rc<TcpStream>,
    /// Set when the upgrade was accepted: no more reads (see [`HttpSocket::http_io`]).
    upgraded: Rc<Cell<bool>>,
    /// How long a write has waited for room in the send buffer.
    writes: WriteSlot,
}

impl AsyncRead for EpollIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.upgraded.get() {
            // Never woken: hyper finishes with the 101's write, not with a read.
            return Poll::Pending;
        }
        let stream = &self.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read_buf(out) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for EpollIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = &self.stream;
        loop {
            if stream.poll_write_ready(cx)?.is_pending() {
                self.writes.waiting();
                return Poll::Pending;
            }
            match stream.try_write(data) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => {
                    self.writes.progressed(false);
                    return Poll::Ready(result);
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go to the kernel at once: nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown(&self.stream, Shutdown::Write))
    }
}

/// `shutdown(2)` on a tokio socket shared by reference.
fn shutdown(stream: &TcpStream, how: Shutdown) -> io::Result<()> {
    socket2::SockRef::from(stream).shutdown(how)
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

impl HttpSocket for TcpStream {
    type Io = EpollIo;

    fn http_io(socket: &Rc<Self>, upgraded: Rc<Cell<bool>>) -> (EpollIo, WriteSlot) {
        // Writes complete before poll_write returns: no write is ever left pending.
        let writes = WriteSlot::default();
        let io = EpollIo {
            stream: Rc::clone(socket),
            upgraded,
            writes: Rc::clone(&writes),
        };
        (io, writes)
    }

    fn into_upgraded(io: EpollIo, socket: Rc<Self>) -> io::Result<UpgradedIo> {
        drop(io);
        let stream = Rc::try_unwrap(socket)
            .map_err(|_| io::Error::other("the HTTP socket is still shared at upgrade"))?;
        Ok(UpgradedIo {
            socket: ConnSocket::from_std(stream.into_std()?)?,
            buffered: Vec::new(),
        })
    }

    async fn read_discard(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        loop {
            self.readable().await?;
            match self.try_read_buf(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return result,
            }
        }
    }

    async fn write_all(&self, bytes: &'static [u8]) -> io::Result<()> {
        let mut remaining = bytes;
        while !remaining.is_empty() {
            self.writable().await?;
            match self.try_write(remaining) {
                Ok(written) => remaining = &remaining[written..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(self, how)
    }

    fn set_nodelay(&self) -> io::Result<()> {
        TcpStream::set_nodelay(self, true)
    }
}
