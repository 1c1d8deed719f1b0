//! Server-to-client WebSocket frames, encoded once.
//!
//! Server frames are never masked (RFC 6455 5.1), so one encoded frame (header + payload in a
//! single `Bytes`) is valid for every client. A broadcast message is encoded here exactly once
//! and then shared by reference count with every subscriber on every core.

use bytes::Bytes;

/// Largest possible frame header: 2 fixed bytes + 8 bytes of extended length (no mask key,
/// since server frames are unmasked).
const MAX_HEADER_LEN: usize = 10;

/// RFC 6455 opcodes (section 5.2), shared with the inbound decoder.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;
/// FIN bit of the first header byte: every frame the server sends is a whole message.
const FIN: u8 = 0x80;

/// The kind of a data message; it is kept unchanged from the publisher to every subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

impl MessageKind {
    /// The data-frame opcode of this kind.
    pub(crate) fn opcode(self) -> u8 {
        match self {
            MessageKind::Text => OP_TEXT,
            MessageKind::Binary => OP_BINARY,
        }
    }
}

/// WebSocket close codes the server sends (RFC 6455 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: normal closure (echo of a client close without a code).
    Normal = 1000,
    /// 1001: the server is shutting down, or the client stopped answering pings.
    GoingAway = 1001,
    /// 1002: protocol error: unmasked client frame, reserved bits, unknown opcode, control frame
    /// over 125 bytes, fragmented control frame, bad continuation, bad close frame.
    Protocol = 1002,
    /// 1007: invalid UTF-8 in a text message (also across fragments) or in a close reason.
    InvalidPayload = 1007,
    /// 1008: policy violation: a slow consumer (outbound backlog over --max-backlog, or no write
    /// progress for --write-timeout), or a client over --max-inbound-rate.
    SlowConsumer = 1008,
    /// 1009: reassembled message larger than --max-message.
    TooBig = 1009,
    /// 1013: try again later: a heavy publisher while the held bytes pass twice the fan-out
    /// budget, or any publisher the server could not read for --publish-timeout.
    TryAgainLater = 1013,
    /// 1011: unexpected server error.
    Internal = 1011,
}

/// Encodes one complete (FIN) data message: header + payload in one allocation.
pub fn encode_message(kind: MessageKind, payload: &[u8]) -> Bytes {
    encode_frame(kind.opcode(), payload)
}

/// Encodes a close frame carrying `code` and a short UTF-8 `reason` (truncated so the payload
/// stays within the 125-byte control-frame limit).
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OP_CLOSE, &payload[..2 + end])
}

/// Encodes a close frame whose payload is copied verbatim (echo of a validated client close).
pub fn encode_close_echo(payload: &[u8]) -> Bytes {
    encode_frame(OP_CLOSE, payload)
}

/// Encodes a pong answering a ping with `payload` (at most 125 bytes, checked by the decoder).
pub fn encode_pong(payload: &[u8]) -> Bytes {
    encode_frame(OP_PONG, payload)
}

/// The keepalive ping: a static frame with an empty payload, shared without any allocation.
pub fn keepalive_ping() -> Bytes {
    const PING: [u8; 2] = [FIN | OP_PING, 0];
    Bytes::from_static(&PING)
}

/// Encodes an unmasked FIN frame into one `Bytes`.
fn encode_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    encode_frame_into(&mut out, opcode, payload);
    Bytes::from(out)
}

/// Writes the header for an unmasked FIN frame and appends the payload into `out`, reserving
/// the exact size once.
pub(crate) fn encode_frame_into(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve_exact(MAX_HEADER_LEN + len);
    out.push(FIN | opcode);
    if len < 126 {
        // The 7-bit length fits: `len < 126` makes the cast lossless.
        out.push(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_payload_uses_seven_bit_length() {
        let frame = encode_message(MessageKind::Text, b"hello");
        assert_eq!(&frame[..2], &[0x81, 5]);
        assert_eq!(&frame[2..], b"hello");
        let frame = encode_message(MessageKind::Binary, &[7u8; 125]);
        assert_eq!(&frame[..2], &[0x82, 125]);
        assert_eq!(frame.len(), 127);
    }

    #[test]
    fn medium_payload_uses_sixteen_bit_length() {
        for len in [126usize, 1000, 65535] {
            let frame = encode_message(MessageKind::Binary, &vec![1u8; len]);
            assert_eq!(frame[0], 0x82);
            assert_eq!(frame[1], 126);
            assert_eq!(u16::from_be_bytes([frame[2], frame[3]]) as usize, len);
            assert_eq!(frame.len(), 4 + len);
        }
    }

    #[test]
    fn large_payload_uses_sixty_four_bit_length() {
        let len = 65536usize;
        let frame = encode_message(MessageKind::Text, &vec![b'a'; len]);
        assert_eq!(frame[1], 127);
        let mut ext = [0u8; 8];
        ext.copy_from_slice(&frame[2..10]);
        assert_eq!(u64::from_be_bytes(ext) as usize, len);
        assert_eq!(frame.len(), 10 + len);
    }

    #[test]
    fn close_frame_carries_code_and_truncated_reason() {
        let frame = encode_close(CloseCode::SlowConsumer as u16, "slow consumer");
        assert_eq!(frame[0], 0x88);
        assert_eq!(frame[1] as usize, 2 + "slow consumer".len());
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1008);
        let long = "é".repeat(100);
        let frame = encode_close(1001, &long);
        assert!(frame[1] <= 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn control_frames_are_unmasked_fin_frames() {
        assert_eq!(&keepalive_ping()[..], &[0x89, 0]);
        assert_eq!(&encode_pong(b"ab")[..], &[0x8A, 2, b'a', b'b']);
    }
}
