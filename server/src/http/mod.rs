//! The HTTP/1.1 phase of every connection (hyper): the routes (`routes.rs`: the chat page,
//! health, metrics), the WebSocket upgrade (`upgrade.rs`) and `POST /publish` (`publish.rs`).
//!
//! hyper's `with_upgrades` needs `Send` IO, which tokio-uring sockets are not, so the
//! connection is served with `without_shutdown`: once the 101 response is flushed hyper hands
//! back the IO and any bytes read past the request, and the core's reader takes over
//! (`input/reader.rs`). The socket comes from either IO backend ([`HttpSocket`]).
//!
//! Limits of this phase: the connection holds a `--max-connections` slot from accept; hyper
//! buffers at most `--max-header-size` of request head (431 beyond) and answers a malformed
//! request with 400; the head must arrive within `--header-timeout`; a write that makes no
//! progress for `--write-timeout` closes the connection (as in the WebSocket phase), which with
//! hyper's bounded buffers (it parses no next request while a response is unflushed past
//! `max_buf_size`) bounds what a pipelining client that never reads can hold, in bytes and in
//! time. A connection that ends here is closed lingering: the server stops sending, discards what the client still sends for
//! a moment, then closes, so the answer is not lost to a reset.

mod io;
mod publish;
mod reply;
mod routes;
mod upgrade;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::backend::{HttpSocket, UpgradedIo, WriteSlot};
use crate::fanout::Hub;
use crate::input::{Reader, UpgradeTicket};
use crate::metrics::CoreMetrics;
use crate::state::{ConnectionPermit, Refused, ServerState};
use crate::tls::{TlsHttpIo, TlsSession, TlsUpgrade};
use io::HttpIo;

/// Lingering close: how long, and how many bytes, the client's leftover request is discarded
/// for after the last answer.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
/// Discard buffer of a lingering close.
const LINGER_BUFFER: usize = 4096;
/// Answer to a connection accepted beyond --max-connections, before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";
/// Answer to a connection accepted beyond --max-connections-per-ip, before it is closed: 429,
/// not 503, because the server has room, this client's address has taken its share (a proxy
/// or balancer reading 503 as "server full" would take the node out for everyone).
const TOO_MANY_FROM_ADDRESS: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n\
content-length: 39\r\nconnection: close\r\n\r\ntoo many connections from this address\n";

/// What one core's HTTP service answers with.
#[derive(Debug)]
pub struct HttpService {
    /// Config (limits, origins, credentials) and what `/metrics` and `/readyz` report.
    state: Arc<ServerState>,
    /// This core's metrics (upgrades checked for a token, `POST /publish` requests).
    metrics: Arc<CoreMetrics>,
    /// Rooms of this core (`POST /publish` publishes through it).
    hub: Rc<Hub>,
    /// The core's reader: admits upgrades and reads the upgraded connections.
    reader: Rc<Reader>,
    /// Set once graceful shutdown began: no new connections or upgrades.
    shutting_down: Cell<bool>,
}

impl HttpService {
    /// The HTTP service of a core.
    pub fn new(
        state: Arc<ServerState>,
        metrics: Arc<CoreMetrics>,
        hub: Rc<Hub>,
        reader: Rc<Reader>,
    ) -> Self {
        HttpService {
            state,
            metrics,
            hub,
            reader,
            shutting_down: Cell::new(false),
        }
    }

    /// Graceful shutdown began: upgrades are refused (503) from now on.
    pub fn shut_down(&self) {
        self.shutting_down.set(true);
    }

    /// True once graceful shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }
}

/// State the HTTP service shares with [`serve`] and the IO adapter.
struct UpgradeSlot {
    /// Set when the service accepts an upgrade.
    ticket: RefCell<Option<UpgradeTicket>>,
    /// The connection's --max-connections slot; moves into the subscriber at upgrade.
    permit: RefCell<Option<ConnectionPermit>>,
    /// Set once the service accepted an upgrade: the IO adapter starts no more reads (the
    /// WebSocket reader reads what follows the request from the socket itself).
    upgraded: Rc<Cell<bool>>,
}

/// Serves one accepted connection, counted under `permit`: HTTP requests until it upgrades or
/// closes.
pub async fn serve<S: HttpSocket>(service: Rc<HttpService>, stream: S, permit: ConnectionPermit) {
    let slot = Rc::new(UpgradeSlot {
        ticket: RefCell::new(None),
        permit: RefCell::new(Some(permit)),
        upgraded: Rc::new(Cell::new(false)),
    });
    let stream = Rc::new(stream);
    let (io, writes) = S::http_io(&stream, Rc::clone(&slot.upgraded));
    let config = &service.state.config;
    let io = match &config.tls {
        None => HttpIo::Plain(io),
        Some(acceptor) => match acceptor.session() {
            Ok(session) => HttpIo::Tls(Box::new(TlsHttpIo::new(io, session, Arc::clone(acceptor)))),
            Err(err) => {
                tracing::warn!(%err, "cannot start a TLS session; closing the connection");
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        },
    };
    let handler = {
        let service = Rc::clone(&service);
        let slot = Rc::clone(&slot);
        service_fn(move |request| {
            let response = respond(&service, &slot, request);
            async move { Ok::<_, Infallible>(response.await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_size)
        .serve_connection(TokioIo::new(io), handler)
        .without_shutdown();
    // hyper has no write deadline: without this one a client that pipelines requests and
    // never reads would keep the connection waiting on a full send buffer for good.
    let Some(result) = within_write_timeout(&writes, config.write_timeout, connection).await else {
        return close_stalled(&service, &slot, &*stream);
    };
    let ticket = slot.ticket.borrow_mut().take();
    match (result, ticket) {
        (Ok(parts), Some(ticket)) => match upgraded_io(parts.io.into_inner(), stream) {
            Ok((upgraded, tls)) => service.reader.start(ticket, upgraded, &parts.read_buf, tls),
            Err(err) => {
                // Only a socket the backend cannot take out of its HTTP adapter (or, on
                // io_uring, duplicate: out of fds) fails here.
                tracing::warn!(%err, "cannot start the WebSocket phase");
                service.reader.cancel(ticket);
            }
        },
        (result, ticket) => {
            if let Some(ticket) = ticket {
                // The 101 never completed: undo the join (this drops the permit too).
                service.reader.cancel(ticket);
            }
            match result {
                Err(err) => tracing::debug!(%err, "http connection ended"),
                // Ended cleanly (the client closed, or `connection: close`): over TLS the
                // shutdown sends close_notify first.
                Ok(parts) => {
                    let mut io = parts.io.into_inner();
                    let shutdown = tokio::io::AsyncWriteExt::shutdown(&mut io);
                    if within_write_timeout(&writes, config.write_timeout, shutdown)
                        .await
                        .is_none()
                    {
                        return close_stalled(&service, &slot, &*stream);
                    }
                }
            }
            if within_write_timeout(&writes, config.write_timeout, writes.finish())
                .await
                .is_none()
            {
                return close_stalled(&service, &slot, &*stream);
            }
            linger(&*stream).await;
        }
    }
}

/// Ends the HTTP phase of an upgraded connection: its socket for the WebSocket phase, with
/// the plaintext read past the request and, over TLS, the session (the records read past the
/// request decrypted).
fn upgraded_io<S: HttpSocket>(
    io: HttpIo<S::Io>,
    stream: Rc<S>,
) -> std::io::Result<(UpgradedIo, Option<TlsSession>)> {
    match io {
        HttpIo::Plain(io) => Ok((S::into_upgraded(io, stream)?, None)),
        HttpIo::Tls(io) => {
            let TlsUpgrade {
                inner,
                mut session,
                mut plain,
            } = (*io).into_upgrade()?;
            let mut upgraded = S::into_upgraded(inner, stream)?;
            if !upgraded.buffered.is_empty() {
                session
                    .receive(&mut upgraded.buffered, &mut plain)
                    .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
            }
            upgraded.buffered = plain;
            Ok((upgraded, Some(session)))
        }
    }
}

/// Runs `future` unless a write of `writes` makes no progress for `timeout` first (then None).
async fn within_write_timeout<F: Future>(
    writes: &WriteSlot,
    timeout: Duration,
    future: F,
) -> Option<F::Output> {
    tokio::select! {
        output = future => Some(output),
        () = writes.stalled(timeout) => None,
    }
}

/// Closes a connection whose writes stalled past --write-timeout: no lingering close (there is
/// no answer left that could still reach the client), so its slot is free at once. The
/// shutdown also completes the adapter's read and write still in flight (io_uring), which
/// releases the fd.
fn close_stalled(service: &HttpService, slot: &UpgradeSlot, stream: &impl HttpSocket) {
    tracing::debug!("http connection closed: no write progress for --write-timeout");
    CoreMetrics::add(&service.metrics.write_timeout_closes, 1);
    if let Some(ticket) = slot.ticket.borrow_mut().take() {
        // The 101 never went out: undo the join.
        service.reader.cancel(ticket);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Answers a connection over --max-connections with 503, or over --max-connections-per-ip
/// with 429, and closes it. Its request is not read: the answer goes out at once (it fits an
/// empty send buffer) and the socket is shut down after it. Over TLS it is closed without an
/// answer: a handshake would cost the full server what the limit is there to spare.
pub async fn refuse(service: Rc<HttpService>, stream: impl HttpSocket, refused: Refused) {
    let answer = match refused {
        Refused::Full => TOO_MANY_CONNECTIONS,
        Refused::PerIp => TOO_MANY_FROM_ADDRESS,
    };
    if service.state.config.tls.is_none() {
        let _ = stream.write_all(answer).await;
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Closes a connection that ends in the HTTP phase without resetting it: stops sending (the
/// answer hyper flushed goes first), discards what the client still sends for at most
/// [`LINGER_TIME`] or [`LINGER_BYTES`], then shuts the socket down, which also completes a
/// read hyper left in flight so the fd is released (nginx's lingering close).
async fn linger(stream: &impl HttpSocket) {
    // An error means the socket is already disconnected.
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut buffer = Vec::with_capacity(LINGER_BUFFER);
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline.into(), stream.read_discard(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => discarded += read,
            _ => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Answers one request: `POST /publish` (which reads its body) in the returned future,
/// everything else at once. An accepted upgrade leaves its ticket in `slot` before this returns.
fn respond(
    service: &Rc<HttpService>,
    slot: &UpgradeSlot,
    request: Request<Incoming>,
) -> impl Future<Output = Response<Full<Bytes>>> + 'static {
    let routed = if publish::is_publish_request(service, request.uri().path()) {
        Err((Rc::clone(service), request))
    } else {
        Ok(route(service, slot, request))
    };
    async move {
        match routed {
            Ok(response) => response,
            Err((service, request)) => publish::handle(&service, request).await,
        }
    }
}

/// Routes a request that needs no body: a WebSocket path to the upgrade, the rest to the
/// plain routes. An accepted upgrade leaves its ticket in `slot`.
fn route(
    service: &HttpService,
    slot: &UpgradeSlot,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match upgrade::room_of(request.uri().path()) {
        Some(room) => upgrade::upgrade(service, slot, request, room),
        None => routes::plain(service, &request),
    }
}
