//! A tokio `AsyncRead + AsyncWrite` over a tokio-uring `TcpStream`, for hyper's HTTP phase.
//!
//! tokio-uring operations own their buffers and complete even if their future is dropped, so
//! the adapter keeps each in-flight read or write future until it finishes and never starts a
//! second one beside it (DESIGN 3, pitfall 1). After a WebSocket upgrade, [`UringIo::into_upgraded`]
//! hands the socket, any bytes already read, and a still-pending read to the connection's reader
//! task, so no byte the client sent is lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_uring::net::TcpStream;

/// Read buffer for HTTP requests: a typical upgrade request fits; hyper reads again for
/// bigger headers.
pub const HTTP_READ_BUFFER: usize = 2048;

/// An in-flight read: resolves to the result and the buffer the kernel filled.
pub type PendingRead = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;
/// An in-flight write of a whole buffer.
type PendingWrite = Pin<Box<dyn Future<Output = io::Result<()>>>>;
/// The adapter's in-flight write, shared with the HTTP phase's owner: hyper may finish with an
/// error (a 400 or 431 it just queued) before the write completed, and the owner must let it
/// complete before closing.
pub type WriteSlot = Rc<RefCell<Option<PendingWrite>>>;

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

/// The HTTP-phase adapter.
pub struct UringIo {
    /// The socket, shared with the in-flight operations.
    stream: Rc<TcpStream>,
    /// Read side.
    read: ReadState,
    /// A write accepted from hyper and not yet completed.
    write: WriteSlot,
    /// Buffer size of the next read. The HTTP service lowers it once it accepts an upgrade:
    /// a read hyper starts after that outlives the HTTP phase and, on an idle connection,
    /// stays in flight with its buffer for the connection's whole life.
    read_size: Rc<Cell<usize>>,
}

/// What the WebSocket reader inherits from the HTTP phase.
pub struct UpgradedIo {
    /// The socket.
    pub stream: Rc<TcpStream>,
    /// Bytes read from the socket that hyper did not consume.
    pub buffered: Vec<u8>,
    /// A read started during the HTTP phase that has not completed yet; its bytes come after
    /// `buffered`.
    pub pending_read: Option<PendingRead>,
}

impl UringIo {
    /// Wraps an accepted socket; reads use `read_size` bytes (see the field). A connection
    /// that ends in the HTTP phase may leave a read in flight: its owner (`http::serve`) shuts
    /// the socket down, which completes that read so the fd is released.
    pub fn new(stream: Rc<TcpStream>, read_size: Rc<Cell<usize>>) -> Self {
        UringIo {
            stream,
            read: ReadState::Idle {
                buf: Vec::new(),
                pos: 0,
            },
            write: WriteSlot::default(),
            read_size,
        }
    }

    /// Ends the HTTP phase (after hyper flushed the 101 response).
    pub fn into_upgraded(mut self) -> UpgradedIo {
        let read = std::mem::replace(&mut self.read, ReadState::Eof);
        let (buffered, pending_read) = match read {
            ReadState::Idle { mut buf, pos } => {
                buf.drain(..pos);
                (buf, None)
            }
            ReadState::InFlight(pending) => (Vec::new(), Some(pending)),
            ReadState::Eof => (Vec::new(), None),
        };
        UpgradedIo {
            stream: Rc::clone(&self.stream),
            buffered,
            pending_read,
        }
    }

    /// Starts reading into a fresh HTTP buffer.
    fn start_read(&self) -> PendingRead {
        let stream = Rc::clone(&self.stream);
        let buffer = Vec::with_capacity(self.read_size.get());
        Box::pin(async move { stream.read(buffer).await })
    }

    /// The in-flight write, for [`finish_write`] once hyper is done.
    pub fn write_slot(&self) -> WriteSlot {
        Rc::clone(&self.write)
    }

    /// Drives the pending write (if any) to completion.
    fn poll_pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slot = self.write.borrow_mut();
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
        let stream = Rc::clone(&this.stream);
        let owned = data.to_vec();
        // Accept the bytes now and complete the write in the background; errors surface on the
        // next write or flush. hyper flushes before handing the connection back.
        *this.write.borrow_mut() = Some(Box::pin(async move { stream.write_all(owned).await.0 }));
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

/// Waits for a write hyper left in flight (its last answer) to complete.
pub async fn finish_write(slot: &WriteSlot) {
    let pending = slot.borrow_mut().take();
    if let Some(write) = pending {
        // A failed write means the client is gone; there is nothing left to deliver.
        let _ = write.await;
    }
}
