//! Well-behaved WebSocket clients (tokio-tungstenite): connect to a room, read the next data
//! message, wait for the server's close frame. Over TLS when `RINGCAST_TEST_TLS=1` (see
//! [`super::tls`]).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;

use super::tls::{self, Stream};
use super::WAIT;

/// A connected client.
pub type Client = WebSocketStream<Stream>;

/// The URL of `path` (e.g. `/ws/lobby`) on the server at `addr`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    let scheme = if tls::enabled() { "wss" } else { "ws" };
    format!("{scheme}://{addr}{path}")
}

/// Opens a WebSocket to `path`, optionally with an `Origin` header; returns the handshake
/// error (e.g. an HTTP status) instead of panicking so tests can assert on refusals.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    origin: Option<&str>,
) -> Result<Client, Error> {
    let origin: Vec<_> = origin
        .map(|origin| ("Origin", origin))
        .into_iter()
        .collect();
    try_connect_with_headers(addr, path, &origin).await
}

/// Opens a WebSocket to `path` with extra handshake headers (name, value); returns the
/// handshake error instead of panicking.
pub async fn try_connect_with_headers(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Client, Error> {
    let mut request = url(addr, path).into_client_request()?;
    for &(name, value) in headers {
        let value = HeaderValue::from_str(value).expect("test header is a valid header value");
        request.headers_mut().insert(name, value);
    }
    let connecting = async {
        let stream = tls::try_connect(addr).await?;
        tokio_tungstenite::client_async(request, stream).await
    };
    let (client, _response) = timeout(WAIT, connecting)
        .await
        .unwrap_or_else(|_| panic!("WebSocket handshake to {path} did not finish"))?;
    Ok(client)
}

/// Opens a WebSocket to `path` and panics if the server refuses it.
pub async fn connect(addr: SocketAddr, path: &str) -> Client {
    try_connect(addr, path, None)
        .await
        .unwrap_or_else(|err| panic!("connect to {path}: {err}"))
}

/// The HTTP status with which the server refused a handshake (panics if it was accepted).
pub async fn refused_status(addr: SocketAddr, path: &str, origin: Option<&str>) -> u16 {
    match try_connect(addr, path, origin).await {
        Ok(_) => panic!("handshake to {path} (origin {origin:?}) was accepted, expected a refusal"),
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("handshake to {path} failed without an HTTP status: {err}"),
    }
}

/// Sends one message.
pub async fn send(client: &mut Client, message: Message) {
    timeout(WAIT, client.send(message))
        .await
        .expect("send did not finish")
        .expect("send failed");
}

/// Sends one text message.
pub async fn send_text(client: &mut Client, text: &str) {
    send(client, Message::text(text)).await;
}

/// The next text or binary message (pings and pongs are skipped; tungstenite answers pings).
pub async fn next_data(client: &mut Client) -> Message {
    loop {
        let message = timeout(WAIT, client.next())
            .await
            .expect("no message arrived")
            .expect("connection ended while waiting for a message")
            .expect("read error while waiting for a message");
        match message {
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(frame) => {
                panic!("closed by the server while waiting for data: {frame:?}")
            }
            other => return other,
        }
    }
}

/// The next data message, which must be text.
pub async fn next_text(client: &mut Client) -> String {
    match next_data(client).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns it (`None` = close without a code).
/// Data messages before it are skipped; a connection that ends without a close frame fails.
pub async fn expect_close(client: &mut Client) -> Option<CloseFrame> {
    loop {
        let next = timeout(WAIT, client.next())
            .await
            .expect("the server did not close");
        match next {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// The close code of the server's next message, which must be its close frame (a data
/// message before it fails).
pub async fn close_code_before_any_data(client: &mut Client) -> u16 {
    loop {
        let next = timeout(WAIT, client.next())
            .await
            .expect("the server did not close");
        match next {
            Some(Ok(Message::Close(frame))) => {
                return u16::from(frame.expect("close frame without a status code").code)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("data before the close frame: {other:?}"),
            Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// The close code the server sent (panics when it sent none).
pub async fn expect_close_code(client: &mut Client) -> u16 {
    let frame = expect_close(client)
        .await
        .expect("close frame without a status code");
    u16::from(frame.code)
}

/// The first message of a client that asked `?since=` or `?history=`: (what it says, epoch,
/// offset).
pub async fn first_notice(client: &mut Client) -> (String, String, u64) {
    let text = next_text(client).await;
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (
        value["ringcast"]
            .as_str()
            .expect("ringcast field")
            .to_owned(),
        value["epoch"].as_str().expect("epoch field").to_owned(),
        value["offset"].as_u64().expect("offset field"),
    )
}
