//! The HTTP/1.1 upgrade request (RFC 6455 4.1), written by hand: it is one small write and one
//! read per connection, and doing it ourselves lets failures be classified precisely.

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::failure::ConnectFailure;

/// Fixed GUID of RFC 6455 used to derive Sec-WebSocket-Accept.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A response head larger than this is not a WebSocket server talking.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The value a server must answer in Sec-WebSocket-Accept for `key`.
pub fn expected_accept(key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// Performs the upgrade on a connected stream. Returns the bytes the server sent after its
/// response head: they already belong to the WebSocket stream.
pub async fn upgrade(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    key_seed: [u8; 16],
) -> Result<Vec<u8>, ConnectFailure> {
    let key = base64::engine::general_purpose::STANDARD.encode(key_seed);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ConnectFailure::from_io(&e))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ConnectFailure::from_io(&e))?;
        if read == 0 {
            return Err(ConnectFailure::Other(
                "connection closed during handshake".into(),
            ));
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(ConnectFailure::Other("oversized handshake response".into()));
        }
    };
    check_response(&head[..head_end], &expected_accept(&key))?;
    Ok(head.split_off(head_end))
}

/// Checks the status line (101) and Sec-WebSocket-Accept of a response head.
fn check_response(head: &[u8], accept: &str) -> Result<(), ConnectFailure> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ConnectFailure::Other(format!("bad status line `{status_line}`")))?;
    if status != 101 {
        return Err(ConnectFailure::Status(status));
    }
    let answered = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim().to_string())
    });
    match answered {
        Some(value) if value == accept => Ok(()),
        _ => Err(ConnectFailure::Other(
            "wrong or missing Sec-WebSocket-Accept".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            expected_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn classifies_responses() {
        let accept = expected_accept("k");
        let good =
            format!("HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: {accept}\r\n\r\n");
        assert!(check_response(good.as_bytes(), &accept).is_ok());
        let refused = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(matches!(
            check_response(refused, &accept),
            Err(ConnectFailure::Status(503))
        ));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(matches!(
            check_response(wrong, &accept),
            Err(ConnectFailure::Other(_))
        ));
    }
}
