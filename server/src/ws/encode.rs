//! Server-to-client WebSocket frames, encoded once.
//!
//! Server frames are never masked (RFC 6455 5.1), so one encoded frame (header + payload in a
//! single `Bytes`) is valid for every client. A broadcast message is encoded here exactly once
//! and then shared by reference count with every subscriber on every core.

use bytes::Bytes;
use ringcast_proto::{opcode, Frame};

#[cfg(any(test, feature = "testing"))]
use super::MessageKind;

/// Encodes one complete (FIN) data message: header + payload in one allocation.
#[cfg(any(test, feature = "testing"))]
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
    encode_frame(opcode::CLOSE, &payload[..2 + end])
}

/// Encodes a close frame whose payload is copied verbatim (echo of a validated client close).
pub fn encode_close_echo(payload: &[u8]) -> Bytes {
    encode_frame(opcode::CLOSE, payload)
}

/// Encodes a pong answering a ping with `payload` (at most 125 bytes, checked by the decoder),
/// as a buffer for the fan-out budget to track (`FanoutBudget::track`).
pub fn encode_pong(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, opcode::PONG, payload);
    out
}

/// The keepalive ping: a static frame with an empty payload, shared without any allocation.
pub fn keepalive_ping() -> Bytes {
    // FIN | PING with an empty payload: what `Frame::new(opcode::PING, b"")` encodes, written
    // out because a static cannot call it (the test below checks they agree).
    const PING: [u8; 2] = [0x80 | opcode::PING, 0];
    Bytes::from_static(&PING)
}

/// Encodes an unmasked FIN frame into one `Bytes`.
fn encode_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    encode_frame_into(&mut out, opcode, payload);
    Bytes::from(out)
}

/// Bytes of the (unmasked) server frame that carries `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    ringcast_proto::encoded_len(payload_len, false)
}

/// Appends an unmasked FIN frame to `out`, reserving its exact size first: a broadcast frame is
/// built in a fresh `Vec` and held until its last subscriber wrote it, so it takes one
/// allocation of exactly its size.
pub fn encode_frame_into(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let frame = Frame::new(opcode, payload);
    out.reserve_exact(frame.encoded_len());
    frame.encode(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::CloseCode;

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
        assert_eq!(keepalive_ping(), encode_frame(opcode::PING, b""));
        assert_eq!(&encode_pong(b"ab")[..], &[0x8A, 2, b'a', b'b']);
    }
}
