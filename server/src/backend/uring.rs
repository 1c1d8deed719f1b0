//! The io_uring backend: a core's tokio-uring runtime, its accept, and the HTTP phase's IO (a
//! tokio `AsyncRead + AsyncWrite` over a tokio-uring `TcpStream` for hyper).
//!
//! tokio-uring operations own their buffers and complete even if their future is dropped (a
//! dropped read still completes later and swallows the bytes it read), so the adapter keeps
//! each in-flight read or write future until it finishes and never starts a second one beside
//! it. Once the service accepts a WebSocket upgrade the adapter starts no more reads, so none
//! is in flight when the socket and any bytes already read go to the core's reader: no byte
//! the client sent is lost, and no buffer stays pinned by the kernel for the connection's life.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

use super::{ConnSocket, CoreMain, HttpSocket, Listener, UpgradedIo, WriteSlot};

/// Submission queue entries of a core's tokio-uring ring.
const RING_ENTRIES: u32 = 4096;
/// Completion queue entries: generous, a broadcast completes one writev per subscriber at once.
const COMPLETION_ENTRIES: u32 = 8 * RING_ENTRIES;

/// Read buffer for HTTP requests: a typical upgrade request fits; hyper reads again for
/// bigger headers.
const HTTP_READ_BUFFER: usize = 2048;

/// An in-flight read: resolves to the result and the buffer the kernel filled.
type PendingRead = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;

/// Where the read side stands.
enum ReadState {
    /// No read in flight; `buf[pos..]` are bytes read but not yet handed out.
    Idle {
        /// Buffer of the last read.
        buf: Vec<u8>,
        /// Bytes of `buf` already handed out.
        pos: usize,
    },
    /// A read is in flight.
    InFlight(PendingRead),
    /// The peer closed its side (a read returned 0).
    Eof,
}

/// Runs a core on tokio-uring's runtime.
pub(super) fn run_core(listener: std::net::TcpListener, core: impl CoreMain) {
    let mut completion = tokio_uring::uring_builder();
    completion.setup_cqsize(COMPLETION_ENTRIES);
    let mut builder = tokio_uring::builder();
    builder.entries(RING_ENTRIES).uring_builder(&completion);
    match tokio_uring::Runtime::new(&builder) {
        Ok(runtime) => runtime.block_on(core.serve(Ok(TcpListener::from_std(listener)))),
        Err(error) => core.runtime_failed(error),
    }
}

/// The HTTP-phase adapter.
pub struct UringIo {
    /// The socket, shared with the in-flight operations.
    stream: Rc<TcpStream>,
    /// Read side.
    read: ReadState,
    /// A write accepted from hyper and not yet completed, and how long it has waited.
    write: WriteSlot,
    /// Set once the service accepted an upgrade: a read started after it would outlive the
    /// HTTP phase and, on an idle connection, keep its buffer for the connection's life.
    upgraded: Rc<Cell<bool>>,
}

impl UringIo {
    /// Wraps an accepted socket (`upgraded`: see the field). A connection
    /// that ends in the HTTP phase may leave a read in flight: its owner (`http::serve`) shuts
    /// the socket down, which completes that read so the fd is released.
    fn new(stream: Rc<TcpStream>, upgraded: Rc<Cell<bool>>) -> Self {
        UringIo {
            stream,
            read: ReadState::Idle {
                buf: Vec::new(),
                pos: 0,
            },
            write: WriteSlot::default(),
            upgraded,
        }
    }

    /// Ends the HTTP phase (after hyper flushed the 101 response).
    fn into_upgraded(mut self) -> io::Result<UpgradedIo> {
        let read = std::mem::replace(&mut self.read, ReadState::Eof);
        let buffered = match read {
            ReadState::Idle { mut buf, pos } => {
                buf.drain(..pos);
                buf
            }
            // Only a read started before the upgrade was accepted can be in flight, and hyper
            // starts none while it runs the service: refuse rather than lose its bytes.
            ReadState::InFlight(_) => {
                return Err(io::Error::other("a read was in flight at the upgrade"))
            }
            ReadState::Eof => Vec::new(),
        };
        Ok(UpgradedIo {
            socket: ConnSocket::from_uring(&self.stream)?,
            buffered,
        })
    }

    /// Starts reading into a fresh HTTP buffer.
    fn start_read(&self) -> PendingRead {
        let stream = Rc::clone(&self.stream);
        let buffer = Vec::with_capacity(HTTP_READ_BUFFER);
        Box::pin(async move { stream.read(buffer).await })
    }

    /// Drives the pending write (if any) to completion.
    fn poll_pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slot = self.write.pending.borrow_mut();
        if let Some(write) = slot.as_mut() {
            let result = ready!(write.as_mut().poll(cx));
            *slot = None;
            result?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for UringIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.read {
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Idle { buf, pos } if *pos < buf.len() => {
                    let count = (buf.len() - *pos).min(out.remaining());
                    out.put_slice(&buf[*pos..*pos + count]);
                    *pos += count;
                    return Poll::Ready(Ok(()));
                }
                // Never woken: hyper finishes with the 101's write, not with a read.
                ReadState::Idle { .. } if this.upgraded.get() => return Poll::Pending,
                ReadState::Idle { .. } => this.read = ReadState::InFlight(this.start_read()),
                ReadState::InFlight(pending) => {
                    let (result, buf) = ready!(pending.as_mut().poll(cx));
                    match result {
                        Ok(0) => this.read = ReadState::Eof,
                        Ok(_) => this.read = ReadState::Idle { buf, pos: 0 },
                        Err(err) => {
                            this.read = ReadState::Idle {
                                buf: Vec::new(),
                                pos: 0,
                            };
                            return Poll::Ready(Err(err));
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for UringIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending_write(cx))?;
        // Accept the bytes now and complete the write in the background; errors surface on the
        // next write or flush. hyper flushes before handing the connection back.
        let write = write_all(
            Rc::clone(&this.stream),
            data.to_vec(),
            Rc::clone(&this.write),
        );
        *this.write.pending.borrow_mut() = Some(Box::pin(write));
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_pending_write(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending_write(cx))?;
        Poll::Ready(this.stream.shutdown(std::net::Shutdown::Write))
    }
}

/// Writes all of `owned`, telling `writes` of every partial completion: a client that reads
/// slowly keeps its connection as long as the kernel takes some bytes within
/// `--write-timeout` (tokio-uring's own `write_all` would show no progress until the end).
async fn write_all(stream: Rc<TcpStream>, owned: Vec<u8>, writes: WriteSlot) -> io::Result<()> {
    writes.waiting();
    let mut rest = owned.slice_full();
    while rest.bytes_init() != 0 {
        let (result, slice) = stream.write(rest).submit().await;
        let written = result?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = slice.slice(written..);
        writes.progressed(rest.bytes_init() != 0);
    }
    Ok(())
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

impl HttpSocket for TcpStream {
    type Io = UringIo;

    fn http_io(socket: &Rc<Self>, upgraded: Rc<Cell<bool>>) -> (UringIo, WriteSlot) {
        let io = UringIo::new(Rc::clone(socket), upgraded);
        let slot = Rc::clone(&io.write);
        (io, slot)
    }

    fn into_upgraded(io: UringIo, _socket: Rc<Self>) -> io::Result<UpgradedIo> {
        io.into_upgraded()
    }

    async fn read_discard(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        // A read dropped by a timeout still completes (into its own buffer) when the socket is
        // shut down; its bytes were to be discarded anyway.
        let (result, returned) = self.read(std::mem::take(buf)).await;
        *buf = returned;
        buf.clear();
        result
    }

    async fn write_all(&self, bytes: &'static [u8]) -> io::Result<()> {
        TcpStream::write_all(self, bytes).await.0
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }

    fn set_nodelay(&self) -> io::Result<()> {
        TcpStream::set_nodelay(self, true)
    }
}
