//! The HTTP phase over TLS: a tokio `AsyncRead + AsyncWrite` that hyper reads plaintext from
//! and writes plaintext to, running the handshake and the records over the backend's own
//! socket adapter (`I`), so hyper and the upgrade work the same on both backends. At the
//! upgrade it hands its session and the plaintext hyper has not read to the WebSocket phase.

use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{HandshakeCounters, Received, TlsAcceptor, TlsSession};

/// Most bytes read from the socket at once in the HTTP phase (a ClientHello, a request head).
const READ_CHUNK: usize = 4096;

/// Where the handshake stands, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// Not completed yet.
    Running,
    /// Completed (counted as ok).
    Done,
    /// Failed on the client's bytes (counted as failed).
    Failed,
}

/// hyper's IO on a TLS connection.
pub struct TlsHttpIo<I> {
    /// The backend's socket adapter (carries the TLS records).
    inner: I,
    /// The connection's TLS state.
    session: TlsSession,
    /// Where the handshake stands.
    handshake: HandshakeEnd,
    /// Plaintext decrypted and not handed to hyper yet, from `plain_read`.
    plain: Vec<u8>,
    /// Bytes of `plain` already handed to hyper.
    plain_read: usize,
    /// Records to write to `inner`, from `out_written`.
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_written: usize,
    /// The socket or the peer's close_notify ended the stream.
    eof: bool,
    /// close_notify was queued (shutdown).
    closed: bool,
}

/// What the WebSocket phase takes over from a TLS connection's HTTP phase.
pub struct TlsUpgrade<I> {
    /// The backend's socket adapter.
    pub inner: I,
    /// The established session.
    pub session: TlsSession,
    /// Plaintext decrypted past what hyper read (the client's first frames).
    pub plain: Vec<u8>,
}

impl<I> TlsHttpIo<I> {
    /// Runs `session` over `inner`; the handshake's end is counted in `acceptor`.
    pub fn new(inner: I, session: TlsSession, acceptor: Arc<TlsAcceptor>) -> Self {
        TlsHttpIo {
            inner,
            session,
            handshake: HandshakeEnd {
                acceptor,
                state: Handshake::Running,
            },
            plain: Vec::new(),
            plain_read: 0,
            out: Vec::new(),
            out_written: 0,
            eof: false,
            closed: false,
        }
    }

    /// Ends the HTTP phase (hyper flushed the 101): the socket adapter, the session and the
    /// plaintext hyper did not read. Fails if records are still unsent (hyper flushes before
    /// it returns the IO, so none are).
    pub fn into_upgrade(self) -> io::Result<TlsUpgrade<I>> {
        let TlsHttpIo {
            inner,
            session,
            mut plain,
            plain_read,
            out,
            out_written,
            ..
        } = self;
        if out_written < out.len() {
            return Err(io::Error::other("TLS records unsent at the upgrade"));
        }
        plain.drain(..plain_read);
        Ok(TlsUpgrade {
            inner,
            session,
            plain,
        })
    }
}

/// Counts how a connection's handshake ended, once: completed, failed, or (when dropped
/// before either) incomplete.
struct HandshakeEnd {
    /// Holds the counters.
    acceptor: Arc<TlsAcceptor>,
    /// Where the handshake stands.
    state: Handshake,
}

impl HandshakeEnd {
    /// Records the end (the first one only).
    fn end(&mut self, end: Handshake, counter: fn(&HandshakeCounters) -> &AtomicU64) {
        if self.state == Handshake::Running {
            self.state = end;
            HandshakeCounters::count(counter(self.acceptor.handshakes()));
        }
    }
}

impl Drop for HandshakeEnd {
    fn drop(&mut self) {
        // Ended before the handshake completed or failed: timed out, or the client left.
        self.end(Handshake::Failed, |counters| &counters.incomplete);
    }
}

impl<I: AsyncWrite + Unpin> TlsHttpIo<I> {
    /// Writes the records waiting in `out` to the socket adapter.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_written < self.out.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_written..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_written += written;
        }
        self.out.clear();
        self.out_written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsHttpIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_read < this.plain.len() {
                let count = (this.plain.len() - this.plain_read).min(buf.remaining());
                buf.put_slice(&this.plain[this.plain_read..this.plain_read + count]);
                this.plain_read += count;
                if this.plain_read == this.plain.len() {
                    this.plain.clear();
                    this.plain_read = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // A handshake flight goes out before the next read waits for the answer to it.
            ready!(this.poll_send(cx))?;
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let len = read.filled().len();
            if len == 0 {
                this.eof = true;
                continue;
            }
            match this.session.receive(&mut chunk[..len], &mut this.plain) {
                Ok(Received::Open) => {}
                Ok(Received::Closed) => this.eof = true,
                Err(err) => {
                    this.handshake
                        .end(Handshake::Failed, |counters| &counters.failed);
                    // The alert saying why goes out if the socket takes it now; the connection
                    // ends either way.
                    this.session.take_outgoing(&mut this.out);
                    let _ = this.poll_send(cx);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
                }
            }
            if !this.session.is_handshaking() {
                this.handshake.end(Handshake::Done, |counters| &counters.ok);
            }
            this.session.take_outgoing(&mut this.out);
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsHttpIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        this.session
            .seal(data, &mut this.out)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        // Start writing now; what the socket does not take yet goes with the next write or
        // the flush.
        if let Poll::Ready(Err(err)) = this.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The client learns the stream ended here, not that it was cut (RFC 8446 6.1).
        if !this.closed {
            this.closed = true;
            if !this.session.is_handshaking() {
                this.session
                    .close(&mut this.out)
                    .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
