//! The HTTP/1.1 upgrade request (RFC 6455 4.1), written by hand: it is one small write and one
//! read per connection, and doing it ourselves lets failures be classified precisely.

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::deflate;
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

/// An upgraded connection's start.
#[derive(Debug, Default)]
pub struct Upgraded {
    /// The bytes the server sent after its response head: they already belong to the
    /// WebSocket stream.
    pub leftover: Vec<u8>,
    /// Whether the server accepted permessage-deflate (only ever when it was offered).
    pub deflate: bool,
}

/// Performs the upgrade on a connected stream (a socket, or TLS over one), offering
/// permessage-deflate when `deflate`.
pub async fn upgrade(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    host: &str,
    path: &str,
    key_seed: [u8; 16],
    deflate: bool,
) -> Result<Upgraded, ConnectFailure> {
    let key = base64::engine::general_purpose::STANDARD.encode(key_seed);
    let offer = if deflate {
        format!("Sec-WebSocket-Extensions: {}\r\n", deflate::OFFER)
    } else {
        String::new()
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ConnectFailure::from_io(&e))?;
    // A TLS stream may still hold the sealed request when write_all returns (a socket write
    // that would block): it goes out on flush.
    stream
        .flush()
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
    let negotiated = check_response(&head[..head_end], &expected_accept(&key))?;
    // A server that answers with an extension nobody offered breaks RFC 6455 9.1.
    if negotiated && !deflate {
        return Err(ConnectFailure::Other(
            "Sec-WebSocket-Extensions answered, none offered".into(),
        ));
    }
    Ok(Upgraded {
        leftover: head.split_off(head_end),
        deflate: negotiated,
    })
}

/// Checks the status line (101) and Sec-WebSocket-Accept of a response head; returns whether
/// it accepted permessage-deflate (see `deflate::accepted`).
fn check_response(head: &[u8], accept: &str) -> Result<bool, ConnectFailure> {
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
    let mut answered = None;
    let mut extensions = Vec::new();
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            answered = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            extensions.push(value);
        }
    }
    if answered != Some(accept) {
        return Err(ConnectFailure::Other(
            "wrong or missing Sec-WebSocket-Accept".into(),
        ));
    }
    deflate::accepted(&extensions)
        .map_err(|why| ConnectFailure::Other(format!("bad Sec-WebSocket-Extensions: {why}")))
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
        assert_eq!(check_response(good.as_bytes(), &accept), Ok(false));
        let refused = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(matches!(
            check_response(refused, &accept),
            Err(ConnectFailure::Status(503))
        ));
        let deflate = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\
             sec-websocket-extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        );
        assert_eq!(check_response(deflate.as_bytes(), &accept), Ok(true));
        let bad = deflate.replace("permessage-deflate", "x-mystery");
        assert_eq!(
            check_response(bad.as_bytes(), &accept),
            Err(ConnectFailure::Other(
                "bad Sec-WebSocket-Extensions: extension `x-mystery` was not offered".into()
            ))
        );
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(matches!(
            check_response(wrong, &accept),
            Err(ConnectFailure::Other(_))
        ));
    }
}
