//! The plain routes: the chat page, health, readiness and metrics.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::reply::text;
use super::HttpService;
use crate::metrics;

/// The chat page served at `GET /`.
const CHAT_PAGE: &str = include_str!("../../static/index.html");

/// Answers `GET /`, `/healthz`, `/readyz`, `/metrics`; 404 for anything else.
pub fn plain(service: &HttpService, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => text(StatusCode::OK, "text/html; charset=utf-8", CHAT_PAGE),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => readiness(service),
        (&Method::GET, "/metrics") => {
            let state = &service.state;
            let body = metrics::render(
                &state.metrics,
                &state.budget,
                state.backend.name(),
                state.broker_stats.as_ref(),
                state.config.tls.as_ref(),
            );
            text(StatusCode::OK, metrics::CONTENT_TYPE, body)
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// `/readyz`: 200 while the node serves and, with `--broker`, reaches the other nodes; 503
/// (still serving its own clients) while the broker is down. `/healthz` says only that the node
/// serves.
fn readiness(service: &HttpService) -> Response<Full<Bytes>> {
    match &service.state.broker_stats {
        Some(broker) if !broker.is_up() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "broker down: serving this node's clients, not reaching the other nodes\n",
        ),
        Some(_) => text(StatusCode::OK, "text/plain", "ready: broker up\n"),
        None => text(StatusCode::OK, "text/plain", "ready\n"),
    }
}
