//! Client-to-server frame decoding: RFC 6455 validation and message reassembly, without
//! sockets (unit-testable; the core's reader feeds it each connection's bytes).
//!
//! Written here instead of using fastwebsockets' reader because that reader leaves masking, the
//! 125-byte limit on close frames, and a cap on the total size of a reassembled message to the
//! caller, and owns a fixed 8 KiB buffer per connection; this decoder works in place on
//! whatever buffer the caller read into (the core's scratch buffer, see `input/connection.rs`). The header layout,
//! the opcode and fragmentation rules and the unmasking come from `ringcast-proto`; what is
//! decided here is the server's: the size limit, reassembly, UTF-8 and close payloads, and the
//! close code of each violation.
//!
//! With permessage-deflate negotiated (`with_deflate`), RSV1 marks a compressed message on its
//! first frame (RFC 7692 6): the whole message's compressed bytes (within the size limit like
//! any payload) are inflated when its last frame arrives, under the same limit, and the
//! inflated bytes are validated and handed out like a plain message's.

use ringcast_proto::{apply_mask, is_sendable_close_code, opcode, Header, Role, RSV1};

use super::deflate::inflate_message;
use super::{CloseCode, MessageKind};

/// One complete thing the client said.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// A whole (reassembled if it was fragmented) data message.
    Message {
        /// Text or binary, as the client sent it.
        kind: MessageKind,
        /// Unmasked payload (inflated if it came compressed); valid UTF-8 when `kind` is Text.
        payload: &'a [u8],
        /// The compressed payload's length when the message came compressed
        /// (permessage-deflate), else 0.
        compressed_len: usize,
    },
    /// A ping to answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (answer to our keepalive ping).
    Pong,
    /// A validated close frame payload (empty, or a valid code and a UTF-8 reason).
    Close(&'a [u8]),
}

/// Result of one [`FrameDecoder::decode`] call.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer holds no complete frame yet. `frame_len` is the size of the whole frame once
    /// its header is known, so the caller can make room for it.
    NeedMore {
        /// Total bytes (header + payload) of the frame being received, if known.
        frame_len: Option<usize>,
    },
    /// A non-final fragment was stored; the caller drops `consumed` bytes and decodes on.
    Absorbed {
        /// Bytes of the buffer this frame used.
        consumed: usize,
    },
    /// A complete event; the caller drops `consumed` bytes after handling it.
    Event {
        /// What the client said.
        event: ClientEvent<'a>,
        /// Bytes of the buffer this frame used.
        consumed: usize,
    },
}

/// A violation that fails the connection with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// Close code to send (1002, 1007 or 1009).
    pub code: CloseCode,
    /// Short reason for the close frame and logs.
    pub reason: &'static str,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Fragments {
    /// Kind from the first fragment.
    kind: MessageKind,
    /// The first fragment had RSV1: `data` is compressed, inflated when the last one arrives.
    compressed: bool,
    /// Payload so far.
    data: Vec<u8>,
    /// Prefix of `data` known to be valid UTF-8 (text only); the rest may end mid-character.
    utf8_valid_up_to: usize,
}

/// What the decoder holds of a message being received or just handed out.
#[derive(Debug, Default)]
struct Held {
    /// The message being reassembled, if a fragmented one is in progress.
    fragments: Option<Fragments>,
    /// The last compressed message, inflated.
    inflated: Vec<u8>,
}

/// Per-connection decoder state.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Largest reassembled message (1009 beyond).
    max_message: usize,
    /// Fragments and inflated bytes, out of line and freed on the call after the message was
    /// handed out: most messages need neither, and a connection between messages holds a
    /// pointer here, not ~64 bytes.
    held: Option<Box<Held>>,
    /// A reassembled message was handed out from `held`'s fragments.
    delivered_fragments: bool,
    /// permessage-deflate was negotiated: RSV1 is allowed on a message's first frame.
    deflate: bool,
}

/// Builds a ProtocolError.
fn fail(code: CloseCode, reason: &'static str) -> ProtocolError {
    ProtocolError { code, reason }
}

impl FrameDecoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        FrameDecoder {
            max_message,
            held: None,
            delivered_fragments: false,
            deflate: false,
        }
    }

    /// The same decoder, taking compressed messages if permessage-deflate was `negotiated`.
    pub fn with_deflate(self, negotiated: bool) -> Self {
        FrameDecoder {
            deflate: negotiated,
            ..self
        }
    }

    /// Decodes the first frame of `buf`, unmasking it in place.
    pub fn decode<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Decoded<'a>, ProtocolError> {
        // Only a fragmented message still being received is kept (what was inflated belongs to
        // a message handed out).
        if self.delivered_fragments || self.fragments().is_none() {
            self.held = None;
            self.delivered_fragments = false;
        }
        let allowed = if self.deflate { RSV1 } else { 0 };
        let header = match Header::decode_with(buf, Role::Client, allowed) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(Decoded::NeedMore { frame_len: None }),
            Err(error) => return Err(fail(CloseCode::Protocol, error.reason())),
        };
        header
            .check(self.fragments().is_some())
            .map_err(|error| fail(CloseCode::Protocol, error.reason()))?;
        let Header {
            fin,
            rsv1,
            opcode: op,
            ..
        } = header;
        // RFC 7692 6: RSV1 belongs on a data message's first frame only.
        if rsv1 && (opcode::is_control(op) || op == opcode::CONTINUATION) {
            return Err(fail(
                CloseCode::Protocol,
                "RSV1 on a control or continuation frame",
            ));
        }
        if !opcode::is_control(op) {
            self.check_size(header.payload_len)?;
        }
        // Control payloads are at most 125 bytes (checked above), data payloads at most
        // max_message (a usize), so the frame length fits.
        let frame_len = header
            .frame_len()
            .ok_or(fail(CloseCode::TooBig, "message too big"))?;
        let (Some(mask), Some(payload)) = (
            header.mask_key(buf),
            buf.get_mut(header.header_len..frame_len),
        ) else {
            return Ok(Decoded::NeedMore {
                frame_len: Some(frame_len),
            });
        };
        apply_mask(payload, mask);
        let event = match op {
            opcode::PING => ClientEvent::Ping(payload),
            opcode::PONG => ClientEvent::Pong,
            opcode::CLOSE => ClientEvent::Close(validate_close(payload)?),
            _ => return self.data_frame(op, fin, rsv1, payload, frame_len),
        };
        Ok(Decoded::Event {
            event,
            consumed: frame_len,
        })
    }

    /// The reassembled size limit, checked at the header (before the payload arrives, so an
    /// oversized message is never buffered).
    fn check_size(&self, payload_len: u64) -> Result<(), ProtocolError> {
        let so_far = self.fragments().map_or(0, |f| f.data.len());
        let room = (self.max_message - so_far) as u64;
        if payload_len > room {
            return Err(fail(CloseCode::TooBig, "message too big"));
        }
        Ok(())
    }

    /// The fragmented message being reassembled, if one is in progress.
    fn fragments(&self) -> Option<&Fragments> {
        self.held.as_ref()?.fragments.as_ref()
    }

    /// A complete data frame: a whole message, or a fragment to reassemble.
    fn data_frame<'a>(
        &'a mut self,
        op: u8,
        fin: bool,
        compressed: bool,
        payload: &'a [u8],
        consumed: usize,
    ) -> Result<Decoded<'a>, ProtocolError> {
        let kind = if op == opcode::BINARY {
            MessageKind::Binary
        } else {
            MessageKind::Text
        };
        if op != opcode::CONTINUATION && fin {
            if compressed {
                let max = self.max_message;
                let held: &mut Held = self.held.get_or_insert_with(Box::default);
                return inflated(&mut held.inflated, kind, payload, max, consumed);
            }
            if kind == MessageKind::Text && std::str::from_utf8(payload).is_err() {
                return Err(fail(CloseCode::InvalidPayload, "invalid UTF-8"));
            }
            let event = ClientEvent::Message {
                kind,
                payload,
                compressed_len: 0,
            };
            return Ok(Decoded::Event { event, consumed });
        }
        let held: &mut Held = self.held.get_or_insert_with(Box::default);
        let fragments = held.fragments.get_or_insert_with(|| Fragments {
            kind,
            compressed,
            data: Vec::new(),
            utf8_valid_up_to: 0,
        });
        fragments.data.extend_from_slice(payload);
        // Compressed bytes are not text yet: checked once inflated.
        if fragments.kind == MessageKind::Text && !fragments.compressed {
            fragments.utf8_valid_up_to =
                validate_utf8_from(&fragments.data, fragments.utf8_valid_up_to, fin)?;
        }
        if !fin {
            return Ok(Decoded::Absorbed { consumed });
        }
        self.delivered_fragments = true;
        if fragments.compressed {
            let (kind, max) = (fragments.kind, self.max_message);
            return inflated(&mut held.inflated, kind, &fragments.data, max, consumed);
        }
        let event = ClientEvent::Message {
            kind: fragments.kind,
            payload: &fragments.data,
            compressed_len: 0,
        };
        Ok(Decoded::Event { event, consumed })
    }
}

/// The event of a compressed message: `compressed` inflated into `out` (at most `max_message`
/// bytes: 1009 past it, 1007 for data that does not inflate) and, for text, validated.
fn inflated<'a>(
    out: &'a mut Vec<u8>,
    kind: MessageKind,
    compressed: &[u8],
    max_message: usize,
    consumed: usize,
) -> Result<Decoded<'a>, ProtocolError> {
    inflate_message(compressed, out, max_message).map_err(|error| {
        let reason = match error.close_code() {
            CloseCode::TooBig => "message too big",
            _ => "invalid compressed data",
        };
        fail(error.close_code(), reason)
    })?;
    if kind == MessageKind::Text && std::str::from_utf8(out).is_err() {
        return Err(fail(CloseCode::InvalidPayload, "invalid UTF-8"));
    }
    let event = ClientEvent::Message {
        kind,
        payload: out,
        compressed_len: compressed.len(),
    };
    Ok(Decoded::Event { event, consumed })
}

/// Validates `data[from..]` as UTF-8 that may end mid-character unless `fin`; returns the new
/// valid prefix length. Failing here, as soon as an impossible byte arrives, is the fail-fast
/// behaviour Autobahn 6.x checks.
fn validate_utf8_from(data: &[u8], from: usize, fin: bool) -> Result<usize, ProtocolError> {
    match std::str::from_utf8(&data[from..]) {
        Ok(_) => Ok(data.len()),
        Err(err) if err.error_len().is_none() && !fin => Ok(from + err.valid_up_to()),
        Err(_) => Err(fail(CloseCode::InvalidPayload, "invalid UTF-8")),
    }
}

/// Checks a close payload: empty, or a code a peer may send plus a UTF-8 reason.
fn validate_close(payload: &[u8]) -> Result<&[u8], ProtocolError> {
    match payload {
        [] => Ok(payload),
        [_] => Err(fail(CloseCode::Protocol, "close payload of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_sendable_close_code(code) {
                return Err(fail(CloseCode::Protocol, "invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(fail(
                    CloseCode::InvalidPayload,
                    "invalid UTF-8 in close reason",
                ));
            }
            Ok(payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![first];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn error_code(decoder: &mut FrameDecoder, mut bytes: Vec<u8>) -> CloseCode {
        decoder.decode(&mut bytes).unwrap_err().code
    }

    #[test]
    fn whole_text_message_is_unmasked() {
        let mut decoder = FrameDecoder::new(1024);
        let mut bytes = client_frame(0x81, b"hello");
        let decoded = decoder.decode(&mut bytes).unwrap();
        let expected = ClientEvent::Message {
            kind: MessageKind::Text,
            payload: b"hello",
            compressed_len: 0,
        };
        assert_eq!(
            decoded,
            Decoded::Event {
                event: expected,
                consumed: 11
            }
        );
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut bytes = client_frame(0x82, &[9u8; 300]);
        assert_eq!(
            decoder.decode(&mut bytes[..1]).unwrap(),
            Decoded::NeedMore { frame_len: None }
        );
        assert_eq!(
            decoder.decode(&mut bytes[..10]).unwrap(),
            Decoded::NeedMore {
                frame_len: Some(308)
            }
        );
    }

    #[test]
    fn fragments_are_reassembled_with_utf8_across_boundaries() {
        let mut decoder = FrameDecoder::new(1024);
        let euro = "€".as_bytes();
        let mut first = client_frame(0x01, &euro[..1]);
        assert_eq!(
            decoder.decode(&mut first).unwrap(),
            Decoded::Absorbed { consumed: 7 }
        );
        let mut ping = client_frame(0x89, b"p");
        assert!(matches!(
            decoder.decode(&mut ping).unwrap(),
            Decoded::Event {
                event: ClientEvent::Ping(b"p"),
                ..
            }
        ));
        let mut last = client_frame(0x80, &euro[1..]);
        match decoder.decode(&mut last).unwrap() {
            Decoded::Event {
                event: ClientEvent::Message { kind, payload, .. },
                ..
            } => {
                assert_eq!(kind, MessageKind::Text);
                assert_eq!(payload, euro);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_fails_fast_in_a_fragment() {
        let mut decoder = FrameDecoder::new(1024);
        let code = error_code(&mut decoder, client_frame(0x01, &[b'a', 0xFF]));
        assert_eq!(code, CloseCode::InvalidPayload);
        let mut decoder = FrameDecoder::new(1024);
        let mut first = client_frame(0x01, &[0xE2]);
        decoder.decode(&mut first).unwrap();
        let code = error_code(&mut decoder, client_frame(0x80, &[0x82]));
        assert_eq!(code, CloseCode::InvalidPayload);
    }

    #[test]
    fn protocol_violations_map_to_1002() {
        let unmasked = vec![0x81, 0x01, b'a'];
        for bytes in [
            unmasked,
            client_frame(0xC1, b"a"),                  // RSV1
            client_frame(0x83, b"a"),                  // reserved opcode
            client_frame(0x80, b"a"),                  // continuation without a start
            client_frame(0x09, b""),                   // fragmented ping
            client_frame(0x88, &[0x03; 126]),          // close over 125 bytes
            client_frame(0x88, &[0x03]),               // one-byte close
            client_frame(0x88, &999u16.to_be_bytes()), // bad code
        ] {
            let mut decoder = FrameDecoder::new(1024);
            assert_eq!(error_code(&mut decoder, bytes), CloseCode::Protocol);
        }
    }

    #[test]
    fn total_size_is_capped_across_fragments() {
        let mut decoder = FrameDecoder::new(100);
        assert_eq!(
            error_code(&mut decoder, client_frame(0x82, &[0; 101])),
            CloseCode::TooBig
        );
        let mut decoder = FrameDecoder::new(100);
        let mut first = client_frame(0x02, &[0; 60]);
        decoder.decode(&mut first).unwrap();
        assert_eq!(
            error_code(&mut decoder, client_frame(0x80, &[0; 41])),
            CloseCode::TooBig
        );
    }

    #[test]
    fn close_reason_must_be_utf8() {
        let mut decoder = FrameDecoder::new(1024);
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.push(0xFF);
        assert_eq!(
            error_code(&mut decoder, client_frame(0x88, &payload)),
            CloseCode::InvalidPayload
        );
    }

    /// The message of a decoded event, or the error's close code.
    fn message(decoder: &mut FrameDecoder, mut bytes: Vec<u8>) -> Result<Vec<u8>, CloseCode> {
        match decoder.decode(&mut bytes) {
            Ok(Decoded::Event {
                event: ClientEvent::Message { payload, .. },
                ..
            }) => Ok(payload.to_vec()),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(error) => Err(error.code),
        }
    }

    /// "Hello" compressed (RFC 7692 7.2.3.1) and in a stored block (7.2.3.3).
    const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    const HELLO_STORED: &[u8] = &[
        0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00,
    ];

    #[test]
    fn a_compressed_message_is_inflated_once_negotiated() {
        let mut decoder = FrameDecoder::new(1024).with_deflate(true);
        assert_eq!(
            message(&mut decoder, client_frame(0xC1, HELLO)).unwrap(),
            b"Hello"
        );
        assert_eq!(
            message(&mut decoder, client_frame(0xC2, HELLO_STORED)).unwrap(),
            b"Hello"
        );
        // RSV1 is per message: a plain one is taken as it is.
        assert_eq!(
            message(&mut decoder, client_frame(0x81, b"plain")).unwrap(),
            b"plain"
        );
        // The inflated bytes are not kept past the next call.
        let mut ping = client_frame(0x89, b"");
        decoder.decode(&mut ping).unwrap();
        assert!(decoder.held.is_none());
    }

    #[test]
    fn a_fragmented_compressed_message_is_inflated_at_its_end() {
        let mut decoder = FrameDecoder::new(1024).with_deflate(true);
        let mut first = client_frame(0x41, &HELLO[..3]);
        assert!(matches!(
            decoder.decode(&mut first).unwrap(),
            Decoded::Absorbed { .. }
        ));
        let mut middle = client_frame(0x00, &HELLO[3..5]);
        assert!(matches!(
            decoder.decode(&mut middle).unwrap(),
            Decoded::Absorbed { .. }
        ));
        assert_eq!(
            message(&mut decoder, client_frame(0x80, &HELLO[5..])).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn rsv1_is_refused_where_it_does_not_belong() {
        // Not negotiated: as before, every reserved bit is a protocol error.
        let mut plain = FrameDecoder::new(1024);
        assert_eq!(
            error_code(&mut plain, client_frame(0xC1, HELLO)),
            CloseCode::Protocol
        );
        let mut decoder = FrameDecoder::new(1024).with_deflate(true);
        for first in [0xC9, 0xCA, 0xC8] {
            assert_eq!(
                error_code(&mut decoder, client_frame(first, b"")),
                CloseCode::Protocol,
                "{first:#x}"
            );
        }
        // RSV2 and RSV3 are still no extension's.
        for first in [0xA1, 0x91] {
            let mut decoder = FrameDecoder::new(1024).with_deflate(true);
            assert_eq!(
                error_code(&mut decoder, client_frame(first, b"a")),
                CloseCode::Protocol
            );
        }
        // On a continuation frame, compressed message or not.
        for (opening, start) in [(0x41, &HELLO[..3]), (0x01, b"Hel")] {
            let mut decoder = FrameDecoder::new(1024).with_deflate(true);
            let mut first = client_frame(opening, start);
            decoder.decode(&mut first).unwrap();
            assert_eq!(
                error_code(&mut decoder, client_frame(0xC0, &HELLO[3..])),
                CloseCode::Protocol
            );
        }
    }

    #[test]
    fn compressed_messages_keep_the_limit_and_the_payload_rules() {
        // Inflating past --max-message: 1009.
        let mut decoder = FrameDecoder::new(4).with_deflate(true);
        assert_eq!(
            message(&mut decoder, client_frame(0xC1, HELLO_STORED)),
            Err(CloseCode::TooBig)
        );
        // Data that does not inflate: 1007.
        let mut decoder = FrameDecoder::new(1024).with_deflate(true);
        assert_eq!(
            message(&mut decoder, client_frame(0xC1, &[0xff; 16])),
            Err(CloseCode::InvalidPayload)
        );
        // Text that inflates to invalid UTF-8: 1007; the same bytes as binary are fine.
        let not_utf8 = [0x00, 0x02, 0x00, 0xfd, 0xff, 0xff, 0xfe, 0x00];
        let mut decoder = FrameDecoder::new(1024).with_deflate(true);
        assert_eq!(
            message(&mut decoder, client_frame(0xC1, &not_utf8)),
            Err(CloseCode::InvalidPayload)
        );
        assert_eq!(
            message(&mut decoder, client_frame(0xC2, &not_utf8)).unwrap(),
            [0xff, 0xfe]
        );
    }
}
