//! Plain HTTP/1.1 requests over a raw TCP stream (`Connection: close`, read to the end), so the
//! tests see exactly the status, headers and body the server wrote. Over TLS when
//! `RINGCAST_TEST_TLS=1` (see [`super::tls`]).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::{tls, WAIT};

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// Status code from the status line.
    pub status: u16,
    /// Header lines as (lower-cased name, value).
    pub headers: Vec<(String, String)>,
    /// Body bytes (as sent; the tests' routes do not use chunked encoding for small bodies,
    /// and `body_text` is only compared by containment when they might).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `GET path` with the extra header lines (each `Name: value`) and reads the response.
pub async fn get(addr: SocketAddr, path: &str, extra_headers: &[&str]) -> Response {
    send(addr, "GET", path, extra_headers, &[]).await
}

/// Sends `POST path` with the extra header lines and `body` (its `Content-Length` added) and
/// reads the response.
pub async fn post(addr: SocketAddr, path: &str, extra_headers: &[&str], body: &[u8]) -> Response {
    let length = format!("Content-Length: {}", body.len());
    let headers: Vec<&str> = extra_headers
        .iter()
        .copied()
        .chain([length.as_str()])
        .collect();
    send(addr, "POST", path, &headers, body).await
}

/// Sends one request (head, then `body` as is) and reads the response to the end.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[&str],
    body: &[u8],
) -> Response {
    let stream = tls::connect(addr).await;
    send_on(stream, addr, method, path, extra_headers, body).await
}

/// Like [`send`], on a stream already connected to `addr`.
pub async fn send_on(
    mut stream: tls::Stream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[&str],
    body: &[u8],
) -> Response {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in extra_headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.expect("write request");
    stream.flush().await.expect("flush request");
    let mut raw = Vec::new();
    timeout(WAIT, read_to_end(&mut stream, &mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: the server did not finish the response"))
        .unwrap_or_else(|err| panic!("{method} {path}: read failed: {err}"));
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path}: unparsable response {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Reads to the end of the stream. Over TLS, a connection the server closes without a
/// close_notify alert (rustls: UnexpectedEof) also ends the response: ringcast closes a
/// `Connection: close` response that way (seen with --tls-cert; the response is complete and
/// parsed as such, and browsers accept it the same way).
async fn read_to_end(stream: &mut tls::Stream, raw: &mut Vec<u8>) -> std::io::Result<usize> {
    match stream.read_to_end(raw).await {
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(raw.len()),
        result => result,
    }
}

fn parse(raw: &[u8]) -> Option<Response> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(Response {
        status,
        headers,
        body: raw[head_end + 4..].to_vec(),
    })
}
