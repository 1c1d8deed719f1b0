//! `POST /publish/{room}`: a backend publishes into a room without opening a WebSocket.
//!
//! Enabled by `--publish-token`; the request must carry `Authorization: Bearer TOKEN`
//! (compared in constant time). The body is the message: `Content-Type: text/*` makes a text
//! frame (the body must be UTF-8), anything else a binary one. It takes the same path as a
//! WebSocket message, encoded once by the receiving core's hub and mailed to the other cores,
//! so it reaches the room's members on every core; a room with no member anywhere drops it.
//!
//! Limits: the body is read through a `--max-message` cap (a declared `Content-Length` over it
//! is refused before any byte is read; a chunked body at the first byte past it), so at most
//! `--max-message` bytes are buffered; it must arrive within `--header-timeout`; while the
//! held bytes pass twice `--fanout-budget` (where WebSocket publishers stop being read too)
//! the request is refused with 503 before its body is read.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use super::reply::text;
use super::HttpService;
use crate::auth::bearer_token;
use crate::fanout::is_valid_room;
use crate::metrics::PublishOutcome;
use crate::ws::MessageKind;

/// Path prefix of the endpoint; the rest is the room name.
pub const PUBLISH_PREFIX: &str = "/publish/";
/// What a client told to wait (503) should wait before retrying, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// True when `path` is the publish endpoint and it is enabled (`--publish-token` set);
/// otherwise it is an unknown path (404).
pub fn is_publish_request(service: &HttpService, path: &str) -> bool {
    service.state.config.publish_token.is_some() && path.starts_with(PUBLISH_PREFIX)
}

/// Answers one publish request.
pub async fn handle(service: &HttpService, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (answer, outcome, published) = publish(service, request).await;
    service.metrics.count_publish(outcome, published);
    answer
}

/// Checks, reads and publishes; returns the answer, its outcome and the payload bytes
/// published.
async fn publish(
    service: &HttpService,
    request: Request<Incoming>,
) -> (Response<Full<Bytes>>, PublishOutcome, usize) {
    let config = &service.state.config;
    let room = request
        .uri()
        .path()
        .strip_prefix(PUBLISH_PREFIX)
        .unwrap_or_default()
        .to_owned();
    if request.method() != Method::POST {
        let mut answer = refuse(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        answer
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
        return (answer, PublishOutcome::BadRequest, 0);
    }
    let token = bearer_token(request.headers()).unwrap_or_default();
    if !config
        .publish_token
        .as_ref()
        .is_some_and(|secret| secret.matches(token.as_bytes()))
    {
        let mut answer = refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
        answer.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
        return (answer, PublishOutcome::Unauthorized, 0);
    }
    if !is_valid_room(&room) {
        let answer = refuse(
            StatusCode::BAD_REQUEST,
            "room names are 1-64 characters of A-Z a-z 0-9 _ . -\n",
        );
        return (answer, PublishOutcome::BadRequest, 0);
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > config.max_message as u64) {
        return (too_large(config.max_message), PublishOutcome::TooLarge, 0);
    }
    if service.state.budget.must_pause(false) {
        let mut answer = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "server overloaded, try again later\n",
        );
        answer
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        return (answer, PublishOutcome::Overloaded, 0);
    }
    let kind = message_kind(request.headers().get(CONTENT_TYPE));
    let body = Limited::new(request.into_body(), config.max_message).collect();
    let body = match tokio::time::timeout(config.header_timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return (too_large(config.max_message), PublishOutcome::TooLarge, 0);
        }
        Ok(Err(_)) => {
            let answer = refuse(StatusCode::BAD_REQUEST, "the request body was cut short\n");
            return (answer, PublishOutcome::BadRequest, 0);
        }
        Err(_) => {
            let answer = refuse(StatusCode::REQUEST_TIMEOUT, "the body took too long\n");
            return (answer, PublishOutcome::Timeout, 0);
        }
    };
    if kind == MessageKind::Text && std::str::from_utf8(&body).is_err() {
        let answer = refuse(
            StatusCode::BAD_REQUEST,
            "a text/* body must be valid UTF-8\n",
        );
        return (answer, PublishOutcome::BadRequest, 0);
    }
    service.hub.publish_named(&room, kind, &body);
    let answer = serde_json::json!({
        "room": room,
        "bytes": body.len(),
        "kind": if kind == MessageKind::Text { "text" } else { "binary" },
    });
    let response = text(
        StatusCode::OK,
        "application/json",
        answer.to_string() + "\n",
    );
    (response, PublishOutcome::Published, body.len())
}

/// `text/*` (any parameters, any case) is a text message; everything else, no type included,
/// is binary.
fn message_kind(content_type: Option<&HeaderValue>) -> MessageKind {
    let is_text = content_type
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim_start().get(..5))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("text/"));
    if is_text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

/// 413 for a body over `--max-message`.
fn too_large(max_message: usize) -> Response<Full<Bytes>> {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over --max-message ({max_message} bytes)\n"),
    )
}

/// An error answer. The connection is closed after it: the body may be partly unread, and
/// hyper could not find the next request in it.
fn refuse(status: StatusCode, message: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = text(status, "text/plain", message);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_make_text_frames() {
        let kind = |value: &'static str| message_kind(Some(&HeaderValue::from_static(value)));
        assert_eq!(kind("text/plain; charset=utf-8"), MessageKind::Text);
        assert_eq!(kind("TEXT/html"), MessageKind::Text);
        assert_eq!(kind("application/json"), MessageKind::Binary);
        assert_eq!(kind("text"), MessageKind::Binary);
        assert_eq!(message_kind(None), MessageKind::Binary);
    }
}
