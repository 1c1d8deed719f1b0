//! The WebSocket upgrade of `/ws/{room}` (`/ws`: room `default`): the checks (GET with the
//! upgrade headers, HTTP/1.1 with a valid key and version 13, origin, no body, not shutting down, the JWT when one is required), then
//! the admission into the room before the 101 goes out.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{
    HeaderValue, HOST, ORIGIN, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::reply::text;
use super::{HttpService, UpgradeSlot};
use crate::auth::{bearer_token, query_token, Rejection};
use crate::fanout::{is_valid_room, Since, DEFAULT_ROOM};
use crate::metrics::AuthOutcome;
use crate::ws::negotiate_deflate;

/// The room a WebSocket path names: None for a path that is not a WebSocket endpoint, Err for
/// an invalid room name.
pub fn room_of(path: &str) -> Option<Result<String, ()>> {
    match path {
        "/ws" => Some(Ok(DEFAULT_ROOM.to_owned())),
        _ => path
            .strip_prefix("/ws/")
            .map(|name| is_valid_room(name).then(|| name.to_owned()).ok_or(())),
    }
}

/// Answers an upgrade request for `room` (as [`room_of`] gave it). An accepted upgrade leaves
/// its ticket in `slot`: the subscriber has joined the room.
pub fn upgrade(
    service: &HttpService,
    slot: &UpgradeSlot,
    mut request: Request<Incoming>,
    room: Result<String, ()>,
) -> Response<Full<Bytes>> {
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
    if let Some(refused) = handshake_error(&request) {
        return refused;
    }
    let config = &service.state.config;
    let headers = request.headers();
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &config.allowed_origins) {
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
    if service.is_shutting_down() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n",
        );
    }
    if let Some(refused) = check_jwt(service, &request, &room) {
        return refused;
    }
    let since = match recovery_asked(request.uri().query()) {
        Ok(since) => since,
        Err(problem) => return text(StatusCode::BAD_REQUEST, "text/plain", problem),
    };
    // An offer that cannot be accepted declines the extension, never the upgrade (RFC 7692 5).
    let deflate = config
        .deflate
        .and_then(|_| {
            let offers = request.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
            negotiate_deflate(offers.iter().map(HeaderValue::as_bytes))
        })
        .and_then(|agreement| {
            let response = HeaderValue::try_from(agreement.response()).ok()?;
            Some((agreement, response))
        });
    match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok((switching, _upgrade_future)) => {
            // The future is for hyper's `with_upgrades` path; `without_shutdown` is used instead.
            let permit = slot.permit.borrow_mut().take();
            let agreement = deflate.as_ref().map(|(agreement, _)| *agreement);
            let ticket = service.reader.admit(&room, permit, since, agreement);
            *slot.ticket.borrow_mut() = Some(ticket);
            slot.upgraded.set(true);
            let (mut head, _) = switching.into_parts();
            if let Some((_, response)) = deflate {
                head.headers.insert(SEC_WEBSOCKET_EXTENSIONS, response);
            }
            Response::from_parts(head, Full::new(Bytes::new()))
        }
        Err(err) => text(StatusCode::BAD_REQUEST, "text/plain", format!("{err}\n")),
    }
}

/// Longest epoch a client may name (the server's are 16 hex digits).
const MAX_EPOCH_LEN: usize = 64;
/// Most messages `?history=` may ask for.
const MAX_HISTORY_ASKED: usize = 1_000_000;

/// What the upgrade's query asks of the room's history: `?since=` (the room's position),
/// `?since=EPOCH:OFFSET` (what followed OFFSET), `?history=N` (the last N messages), or none.
/// A malformed value is a 400 with the reason; a well-formed one the server cannot serve
/// (unknown epoch, an offset gone or still to come) is answered `reset` after the upgrade.
pub fn recovery_asked(query: Option<&str>) -> Result<Option<Since>, &'static str> {
    let mut asked = None;
    for pair in query.unwrap_or("").split('&') {
        let since = if let Some(value) = pair.strip_prefix("since=") {
            since_value(value)?
        } else if let Some(value) = pair.strip_prefix("history=") {
            let count = parse_digits(value)
                .filter(|&count| count <= MAX_HISTORY_ASKED as u64)
                .ok_or("history= takes a count of messages, 0 to 1000000\n")?;
            Since::Last(count as usize)
        } else {
            continue;
        };
        if asked.replace(since).is_some() {
            return Err("ask for one of since= and history=, once\n");
        }
    }
    Ok(asked)
}

/// The value of `since=`: empty, or `EPOCH:OFFSET` (the colon may be percent-encoded).
fn since_value(value: &str) -> Result<Since, &'static str> {
    if value.is_empty() {
        return Ok(Since::Nothing);
    }
    const MALFORMED: &str = "since= takes EPOCH:OFFSET (as the server told it) or nothing\n";
    let (epoch, offset) = value
        .split_once(':')
        .or_else(|| value.split_once("%3A"))
        .or_else(|| value.split_once("%3a"))
        .ok_or(MALFORMED)?;
    let epoch_ok = (1..=MAX_EPOCH_LEN).contains(&epoch.len())
        && epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    let offset = parse_digits(offset).filter(|_| epoch_ok).ok_or(MALFORMED)?;
    Ok(Since::After {
        epoch: epoch.to_owned(),
        offset,
    })
}

/// A decimal number of 1-20 digits that fits a u64 (no sign, no spaces).
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// With `--jwt-secret`/`--jwt-public-key`: the upgrade's token (`?token=`, else
/// `Authorization: Bearer`) must be valid for `room`; returns the 401/403 answer if it is not.
/// Runs before the subscriber is created or the room joined.
fn check_jwt(
    service: &HttpService,
    request: &Request<Incoming>,
    room: &str,
) -> Option<Response<Full<Bytes>>> {
    let jwt = service.state.config.jwt.as_ref()?;
    let token = query_token(request.uri().query()).or_else(|| bearer_token(request.headers()));
    let verdict = jwt.check(token, room);
    let metrics = &service.metrics;
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

/// The checks of RFC 6455 4.2.1 and 4.2.2 that fastwebsockets leaves out: an upgrade needs
/// HTTP/1.1, a `Sec-WebSocket-Key` that is base64 of 16 bytes, and version 13 (another version
/// gets 426 with the version this server speaks, as 4.2.2 requires). Returns the refusal.
fn handshake_error(request: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if request.version() != Version::HTTP_11 {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "a WebSocket upgrade needs HTTP/1.1\n",
        ));
    }
    let headers = request.headers();
    match headers.get(SEC_WEBSOCKET_VERSION) {
        Some(version) if version == "13" => {}
        Some(_) => {
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "text/plain",
                "this server speaks WebSocket version 13\n",
            );
            let response_headers = response.headers_mut();
            response_headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            response_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            return Some(response);
        }
        None => {
            return Some(text(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "Sec-WebSocket-Version is missing\n",
            ))
        }
    }
    if !headers
        .get(SEC_WEBSOCKET_KEY)
        .is_some_and(|key| is_websocket_key(key.as_bytes()))
    {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "Sec-WebSocket-Key must be base64 of 16 bytes\n",
        ));
    }
    None
}

/// True for the base64 of exactly 16 bytes (RFC 6455 4.1): 22 base64 characters, the last of
/// which carries only 2 bits of data (so it is one of `A Q g w`), then `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let is_base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(is_base64)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
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

    #[test]
    fn keys_are_base64_of_16_bytes() {
        // RFC 6455's sample key, and the extremes of the alphabet.
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_websocket_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(is_websocket_key(b"/////////////////////w=="));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",       // no padding
            b"dGhlIHNhbXBsZSBub25jZR==",     // bits past the 16th byte
            b"c2hvcnQ=",                     // 5 bytes
            b"dGhlIHNhbXBsZSBub25jZSE=",     // 17 bytes
            b"dGhlIHNhbXBsZSBub2-jZQ==",     // URL-safe alphabet
            b"dGhlIHNhbXBsZSBub25jZQ==\x00", // trailing byte
        ] {
            assert!(!is_websocket_key(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
