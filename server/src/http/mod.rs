//! The HTTP/1.1 phase of every connection (hyper): routes, WebSocket upgrade checks, the chat
//! page, health and metrics.
//!
//! hyper's `with_upgrades` needs `Send` IO, which tokio-uring sockets are not, so the
//! connection is served with `without_shutdown`: once the 101 response is flushed hyper hands
//! back the IO and any bytes read past the request, and the WebSocket takes over (`conn.rs`).
//! The socket comes from either IO backend ([`HttpSocket`]).
//!
//! Limits of this phase: the connection holds a `--max-connections` slot from accept; hyper
//! buffers at most `--max-header-size` of request head (431 beyond) and answers a malformed
//! request with 400; the head must arrive within `--header-timeout`. A connection that ends
//! here is closed lingering: the server stops sending, discards what the client still sends for
//! a moment, then closes, so the answer is not lost to a reset.

pub mod publish;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, ORIGIN, UPGRADE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::auth::{bearer_token, query_token, Rejection};
use crate::backend::uring::finish_write;
use crate::backend::HttpSocket;
use crate::core::CoreContext;
use crate::fanout::hub::Room;
use crate::input::connection as conn;
use crate::metrics::{render_prometheus, AuthOutcome, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::output::subscriber::Subscriber;
use crate::state::ConnectionPermit;

/// The chat page served at `GET /`.
const CHAT_PAGE: &str = include_str!("../../static/index.html");
/// Room of a bare `/ws`.
const DEFAULT_ROOM: &str = "default";
/// Longest room name.
const MAX_ROOM_LEN: usize = 64;
/// Lingering close: how long, and how many bytes, the client's leftover request is discarded
/// for after the last answer.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
/// Discard buffer of a lingering close.
const LINGER_BUFFER: usize = 4096;

/// What an accepted upgrade carries into the WebSocket phase. The subscriber has already
/// joined its room (before the 101 went out), so it misses nothing published after the
/// handshake; its frames wait in its queue until the writer starts.
#[derive(Debug)]
pub struct UpgradeTicket {
    /// The room joined.
    pub room: Rc<Room>,
    /// The new connection's queue and close state (holds its --max-connections permit).
    pub subscriber: Rc<Subscriber>,
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
pub async fn serve<S: HttpSocket>(core: Rc<CoreContext>, stream: S, permit: ConnectionPermit) {
    let slot = Rc::new(UpgradeSlot {
        ticket: RefCell::new(None),
        permit: RefCell::new(Some(permit)),
        upgraded: Rc::new(Cell::new(false)),
    });
    let stream = Rc::new(stream);
    let (io, last_write) = S::http_io(&stream, Rc::clone(&slot.upgraded));
    let service = {
        let core = Rc::clone(&core);
        let slot = Rc::clone(&slot);
        service_fn(move |request| {
            let response = respond(&core, &slot, request);
            async move { Ok::<_, Infallible>(response.await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(core.state.config.header_timeout)
        .max_buf_size(core.state.config.max_header_size)
        .serve_connection(TokioIo::new(io), service)
        .without_shutdown();
    let result = connection.await;
    let ticket = slot.ticket.borrow_mut().take();
    match (result, ticket) {
        (Ok(parts), Some(ticket)) => match S::into_upgraded(parts.io.into_inner(), stream) {
            Ok(upgraded) => conn::start(&core, upgraded, &parts.read_buf, ticket),
            Err(err) => {
                // Only a socket the backend cannot take out of its HTTP adapter fails here.
                tracing::warn!(%err, "cannot start the WebSocket phase");
                core.hub.leave(&ticket.room, &ticket.subscriber);
            }
        },
        (result, ticket) => {
            if let Some(ticket) = ticket {
                // The 101 never completed: undo the join (this drops the permit too).
                core.hub.leave(&ticket.room, &ticket.subscriber);
            }
            if let Err(err) = result {
                tracing::debug!(%err, "http connection ended");
            }
            finish_write(&last_write).await;
            linger(&*stream).await;
        }
    }
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
    core: &Rc<CoreContext>,
    slot: &UpgradeSlot,
    request: Request<Incoming>,
) -> impl Future<Output = Response<Full<Bytes>>> + 'static {
    let routed = if publish::is_publish_request(core, request.uri().path()) {
        Err((Rc::clone(core), request))
    } else {
        Ok(route(core, slot, request))
    };
    async move {
        match routed {
            Ok(response) => response,
            Err((core, request)) => publish::handle(&core, request).await,
        }
    }
}

/// `/readyz`: 200 while the node serves and, with `--broker`, reaches the other nodes; 503
/// (still serving its own clients) while the broker is down. `/healthz` says only that the node
/// serves.
fn readiness(core: &CoreContext) -> Response<Full<Bytes>> {
    match core.state.broker.get() {
        Some(broker) if !broker.stats.is_up() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "broker down: serving this node's clients, not reaching the other nodes\n",
        ),
        Some(_) => text(StatusCode::OK, "text/plain", "ready: broker up\n"),
        None => text(StatusCode::OK, "text/plain", "ready\n"),
    }
}

/// Routes a request that needs no body. An accepted upgrade leaves its ticket in `slot`.
fn route(
    core: &CoreContext,
    slot: &UpgradeSlot,
    mut request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let room = match path {
        "/ws" => Some(Ok(DEFAULT_ROOM.to_owned())),
        _ => path
            .strip_prefix("/ws/")
            .map(|name| is_valid_room(name).then(|| name.to_owned()).ok_or(())),
    };
    let Some(room) = room else {
        return match (request.method(), path) {
            (&Method::GET, "/") => text(StatusCode::OK, "text/html; charset=utf-8", CHAT_PAGE),
            (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/readyz") => readiness(core),
            (&Method::GET, "/metrics") => text(
                StatusCode::OK,
                METRICS_CONTENT_TYPE,
                render_prometheus(
                    &core.state.metrics,
                    &core.state.memory,
                    core.state.backend(),
                    core.state.broker.get(),
                ),
            ),
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        };
    };
    let Ok(room) = room else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "room names are 1-64 characters of A-Z a-z 0-9 _ . -\n",
        );
    };
    if request.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&request) {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "text/plain",
            "this endpoint speaks WebSocket\n",
        );
        response
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    let headers = request.headers();
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &core.state.config.allowed_origins) {
        return text(StatusCode::FORBIDDEN, "text/plain", "origin not allowed\n");
    }
    if !request.body().is_end_stream() {
        // Its body would be read by hyper after the 101, which reads nothing more by then.
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "a WebSocket upgrade request has no body\n",
        );
    }
    if core.is_shutting_down() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n",
        );
    }
    if let Some(refused) = check_jwt(core, &request, &room) {
        return refused;
    }
    match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok((switching, _upgrade_future)) => {
            // The future is for hyper's `with_upgrades` path; `without_shutdown` is used instead.
            let subscriber = Rc::new(Subscriber::new(
                core.state.config.max_backlog,
                slot.permit.borrow_mut().take(),
                Rc::clone(core.hub.output()),
                core.hub.now(),
            ));
            let room = core.hub.join(&room, Rc::clone(&subscriber));
            *slot.ticket.borrow_mut() = Some(UpgradeTicket { room, subscriber });
            slot.upgraded.set(true);
            let (head, _) = switching.into_parts();
            Response::from_parts(head, Full::new(Bytes::new()))
        }
        Err(err) => text(StatusCode::BAD_REQUEST, "text/plain", format!("{err}\n")),
    }
}

/// With `--jwt-secret`/`--jwt-public-key`: the upgrade's token (`?token=`, else
/// `Authorization: Bearer`) must be valid for `room`; returns the 401/403 answer if it is not.
/// Runs before the subscriber is created or the room joined.
fn check_jwt(
    core: &CoreContext,
    request: &Request<Incoming>,
    room: &str,
) -> Option<Response<Full<Bytes>>> {
    let jwt = core.state.config.jwt.as_ref()?;
    let token = query_token(request.uri().query()).or_else(|| bearer_token(request.headers()));
    let verdict = jwt.check(token, room);
    let metrics = core.hub.metrics();
    match verdict {
        Ok(()) => {
            metrics.count_auth(AuthOutcome::Accepted);
            None
        }
        Err(Rejection::Unauthorized) => {
            metrics.count_auth(AuthOutcome::Unauthorized);
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "a valid token is required (?token= or Authorization: Bearer)\n",
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
        Err(Rejection::Forbidden) => {
            metrics.count_auth(AuthOutcome::Forbidden);
            Some(text(
                StatusCode::FORBIDDEN,
                "text/plain",
                "the token does not grant this room\n",
            ))
        }
    }
}

/// A response with a text body.
pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Rooms are 1-64 characters of `[A-Za-z0-9_.-]`.
pub fn is_valid_room(name: &str) -> bool {
    (1..=MAX_ROOM_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// gorilla/websocket's default policy plus an allow-list: no Origin header, an Origin whose
/// host equals the Host header, an Origin listed in `allowed` (full origin or host), or `*`.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    let listed = allowed.iter().any(|entry| {
        entry == "*"
            || entry.eq_ignore_ascii_case(origin)
            || entry.eq_ignore_ascii_case(origin_host)
    });
    listed || host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_validated() {
        assert!(is_valid_room("default"));
        assert!(is_valid_room("a.b-c_9"));
        assert!(is_valid_room(&"x".repeat(64)));
        assert!(!is_valid_room(""));
        assert!(!is_valid_room(&"x".repeat(65)));
        assert!(!is_valid_room("a/b"));
        assert!(!is_valid_room("spa ce"));
        assert!(!is_valid_room("é"));
    }

    #[test]
    fn origins_follow_same_host_or_allow_list() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(None, Some("h:1"), &none));
        assert!(origin_allowed(Some("http://h:1"), Some("h:1"), &none));
        assert!(!origin_allowed(Some("http://evil"), Some("h:1"), &none));
        assert!(!origin_allowed(Some("http://evil"), None, &none));
        let listed = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(
            Some("https://app.example"),
            Some("h"),
            &listed
        ));
        assert!(!origin_allowed(
            Some("https://other.example"),
            Some("h"),
            &listed
        ));
        let any = vec!["*".to_owned()];
        assert!(origin_allowed(Some("http://evil"), Some("h"), &any));
    }
}
