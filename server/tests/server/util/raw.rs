//! A frame-level WebSocket client over a plain TCP stream, for traffic a correct client library
//! refuses to send: unmasked frames, reserved bits and opcodes, oversized control frames,
//! invalid UTF-8, hand-made fragmentation; and for clients that never read or never answer.
//! Over TLS when `RINGCAST_TEST_TLS=1` (see [`super::tls`]): the frames are the same, sealed.

use std::net::SocketAddr;

pub use ringcast_proto::opcode::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use ringcast_proto::{Frame, Header, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;

use super::tls::{self, Stream};
use super::WAIT;

/// The masking key of every masked frame we send (any value works; a fixed one keeps failures
/// reproducible).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as the client puts it on the wire.
pub struct FrameSpec<'a> {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// RSV1-3 as the low three bits (0 = none set, which is all a server without extensions
    /// accepts).
    pub rsv: u8,
    /// Opcode (4 bits).
    pub opcode: u8,
    /// Whether to mask the payload, as RFC 6455 requires of clients.
    pub masked: bool,
    /// Unmasked payload.
    pub payload: &'a [u8],
}

impl<'a> FrameSpec<'a> {
    /// A correct, masked, final frame.
    pub fn new(opcode: u8, payload: &'a [u8]) -> Self {
        FrameSpec {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
            payload,
        }
    }

    /// The same frame with FIN cleared (a non-final fragment).
    pub fn not_final(self) -> Self {
        FrameSpec { fin: false, ..self }
    }

    /// Encodes the frame (header, masking key, masked payload).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        Frame {
            fin: self.fin,
            rsv: self.rsv,
            opcode: self.opcode,
            mask: self.masked.then_some(MASK),
            payload: self.payload,
        }
        .encode(&mut out);
        out
    }
}

/// A frame the server sent.
#[derive(Debug)]
pub struct ServerFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1: a compressed message (only from a server that agreed to permessage-deflate).
    pub rsv1: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The status code of a close frame (`None` for an empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// What reading the next frame found.
#[derive(Debug)]
pub enum Next {
    /// A whole frame.
    Frame(ServerFrame),
    /// The server ended the TCP connection (FIN or reset).
    Closed,
}

/// A handshaken WebSocket connection driven frame by frame.
pub struct RawClient {
    /// The TCP stream, or TLS over it.
    stream: Stream,
    /// Bytes read but not yet parsed into frames.
    buffered: Vec<u8>,
    /// The server agreed to permessage-deflate: RSV1 may be set on its data frames.
    deflate: bool,
}

impl RawClient {
    /// Connects and performs the opening handshake on `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawClient {
        let stream = tls::connect(addr).await;
        Self::handshake(stream, addr, path, "", &[]).await.0
    }

    /// Like `connect`, with `headers` (each line ending in CRLF) added to the upgrade request;
    /// also returns the response head, lowercased.
    pub async fn connect_with_headers(
        addr: SocketAddr,
        path: &str,
        headers: &str,
    ) -> (RawClient, String) {
        let stream = tls::connect(addr).await;
        Self::handshake(stream, addr, path, headers, &[]).await
    }

    /// Like `connect`, with `first` (e.g. an encoded frame) sent in the same write as the
    /// upgrade request, before the 101 can have come back.
    pub async fn connect_sending(addr: SocketAddr, path: &str, first: &[u8]) -> RawClient {
        let stream = tls::connect(addr).await;
        Self::handshake(stream, addr, path, "", first).await.0
    }

    /// Like `connect`, with a small receive buffer so a client that never reads stalls the
    /// server's writes quickly (the kernel would otherwise absorb megabytes).
    pub async fn connect_with_small_rcvbuf(addr: SocketAddr, path: &str) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("TCP connect");
        let stream = tls::wrap(stream, addr).await;
        Self::handshake(stream, addr, path, "", &[]).await.0
    }

    async fn handshake(
        mut stream: Stream,
        addr: SocketAddr,
        path: &str,
        headers: &str,
        first: &[u8],
    ) -> (RawClient, String) {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        )
        .into_bytes();
        request.extend_from_slice(first);
        stream.write_all(&request).await.expect("write handshake");
        // Over TLS the last record may wait in the session until a flush.
        stream.flush().await.expect("flush handshake");
        let mut buffered = Vec::new();
        let head_end = loop {
            if let Some(pos) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("no handshake response")
                .expect("read handshake response");
            assert!(n > 0, "connection closed during the handshake");
            buffered.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffered[..head_end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 101"),
            "handshake refused: {head}"
        );
        // RFC 6455 4.2.2: the accept value for the sample key above.
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "wrong or missing Sec-WebSocket-Accept: {head}"
        );
        buffered.drain(..head_end);
        let deflate = head.contains("sec-websocket-extensions: permessage-deflate");
        let client = RawClient {
            stream,
            buffered,
            deflate,
        };
        (client, head)
    }

    /// The stream (TCP, or TLS over it) and the bytes already read past the handshake, for a
    /// client that reads or writes in bulk instead of frame by frame.
    pub fn into_parts(self) -> (Stream, Vec<u8>) {
        (self.stream, self.buffered)
    }

    /// Writes raw bytes (one or more encoded frames, or deliberately broken data).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The server may close mid-write after a protocol error; that is what the callers
        // test, so a failed write is not an error here: the close is checked when reading.
        let stream = &mut self.stream;
        let _ = timeout(WAIT, async move {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .expect("write stalled");
    }

    /// Writes raw bytes unless the server stops reading them: false if the write did not
    /// complete within `limit` (part of it may have been sent).
    pub async fn send_bytes_within(&mut self, bytes: &[u8], limit: std::time::Duration) -> bool {
        let stream = &mut self.stream;
        let written = timeout(limit, async move {
            stream.write_all(bytes).await?;
            stream.flush().await
        });
        matches!(written.await, Ok(Ok(())))
    }

    /// Encodes and writes one frame.
    pub async fn send(&mut self, frame: FrameSpec<'_>) {
        self.send_bytes(&frame.encode()).await;
    }

    /// Reads the next frame the server sent (fails if none comes within `WAIT`).
    pub async fn next(&mut self) -> Next {
        timeout(WAIT, self.read_next())
            .await
            .expect("the server sent nothing")
    }

    async fn read_next(&mut self) -> Next {
        loop {
            if let Some(frame) = self.parse_buffered() {
                return Next::Frame(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Removes one complete frame from the front of `buffered`, if there is one. Fails the
    /// test on a frame no server may send (masked, reserved bits but RSV1 of a negotiated
    /// permessage-deflate, a bad length).
    fn parse_buffered(&mut self) -> Option<ServerFrame> {
        let allowed = if self.deflate { 0x40 } else { 0 };
        let header = Header::decode_with(&self.buffered, Role::Server, allowed)
            .unwrap_or_else(|error| panic!("the server sent a bad frame: {error}"))?;
        let frame_len = header.frame_len().expect("frame length fits usize");
        let payload = self.buffered.get(header.header_len..frame_len)?.to_vec();
        self.buffered.drain(..frame_len);
        Some(ServerFrame {
            fin: header.fin,
            rsv1: header.rsv1,
            opcode: header.opcode,
            payload,
        })
    }

    /// Reads frames until the server's close frame and returns its code; pings and data are
    /// skipped. Fails if the connection ends without a close frame or the frame has no code.
    pub async fn expect_close_code(&mut self) -> u16 {
        loop {
            match self.next().await {
                Next::Frame(frame) if frame.opcode == CLOSE => {
                    return frame
                        .close_code()
                        .expect("close frame without a status code")
                }
                Next::Frame(_) => continue,
                Next::Closed => panic!("the server dropped the connection without a close frame"),
            }
        }
    }

    /// The next data frame (pings and pongs skipped).
    pub async fn next_data_frame(&mut self) -> ServerFrame {
        loop {
            match self.next().await {
                Next::Frame(frame) if frame.opcode == PING || frame.opcode == PONG => continue,
                Next::Frame(frame) => return frame,
                Next::Closed => panic!("connection ended while waiting for data"),
            }
        }
    }
}
