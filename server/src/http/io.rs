//! What hyper reads and writes through: the backend's socket adapter as it is, or wrapped in
//! TLS (`--tls-cert`), one type for hyper either way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::TlsHttpIo;

/// The HTTP phase's IO over the backend's adapter `I`.
pub enum HttpIo<I> {
    /// Plaintext HTTP.
    Plain(I),
    /// HTTPS: the handshake and records run over `I` (boxed: rustls' state is ~1 KiB).
    Tls(Box<TlsHttpIo<I>>),
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for HttpIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            HttpIo::Tls(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HttpIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpIo::Plain(io) => Pin::new(io).poll_write(cx, data),
            HttpIo::Tls(io) => Pin::new(&mut **io).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpIo::Plain(io) => Pin::new(io).poll_flush(cx),
            HttpIo::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            HttpIo::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}
