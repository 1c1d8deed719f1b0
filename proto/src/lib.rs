//! RFC 6455 framing shared by both ends of ringcast: the server (`ringcast`), the load generator
//! (`loadgen`) and the benchmarks. Written once so that opcodes, close codes, the header layout
//! and masking cannot drift apart between the code that sends a frame and the code that reads it.
//!
//! What is here is stateless: encoding one frame ([`Frame`]), decoding and judging one header
//! ([`Header`]), masking ([`apply_mask`]). Message reassembly, size limits and UTF-8 checks stay
//! with each side, because their limits and their answers to a violation differ (the server
//! closes with a code, loadgen counts a broken connection).
//!
//! Beside the framing, [`chat`] makes the chat-like JSON payload (`loadgen --payload json`) that
//! compression is measured with, so every side deflates the same text.

pub mod chat;

use std::fmt;

/// Opcodes (RFC 6455 5.2).
pub mod opcode {
    /// A continuation fragment of a data message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text message (UTF-8).
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping.
    pub const PING: u8 = 0x9;
    /// A pong.
    pub const PONG: u8 = 0xA;

    /// Whether `op` is a control opcode (close, ping, pong and the reserved 0xB-0xF): RFC 6455
    /// marks them by the opcode's high bit.
    pub fn is_control(op: u8) -> bool {
        op & 0x8 != 0
    }
}

/// Largest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Largest frame header: 2 fixed bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// FIN bit of the first header byte: the last (or only) frame of a message.
const FIN: u8 = 0x80;
/// RSV1-3 bits of the first header byte.
const RSV: u8 = 0x70;
/// RSV1 of the first header byte: permessage-deflate's "compressed" bit (RFC 7692 6), the only
/// reserved bit an extension ringcast negotiates defines.
pub const RSV1: u8 = 0x40;
/// MASK bit of the second header byte.
const MASKED: u8 = 0x80;

/// Close codes (RFC 6455 7.4.1) ringcast sends; the comments say when it sends them.
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

impl CloseCode {
    /// The code as it goes on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Close codes an endpoint may put on the wire (RFC 6455 7.4, IANA registry): 1004-1006 and
/// 1015 are reserved, below 1000 and 1016-2999 are unassigned, 5000+ is out of range.
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Which end sent a frame: a client masks every frame, a server none (RFC 6455 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Frames from a client: masked.
    Client,
    /// Frames from a server: unmasked.
    Server,
}

/// A frame that breaks RFC 6455, found from its header alone. Every one of them is a protocol
/// error (close code 1002 on the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set beyond what the negotiated extensions define (all of them without any).
    ReservedBits,
    /// A client frame without a mask.
    Unmasked,
    /// A server frame with a mask.
    Masked,
    /// A 64-bit length with its most significant bit set.
    LengthTopBit,
    /// Opcode 0x3-0x7 or 0xB-0xF.
    UnknownOpcode,
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A continuation frame while no fragmented message is in progress.
    ContinuationWithoutMessage,
    /// A text or binary frame while a fragmented message is still in progress.
    MessageInsideMessage,
}

impl FrameError {
    /// A short reason, fit for a close frame and for logs.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::ReservedBits => "reserved bits set",
            FrameError::Unmasked => "client frame not masked",
            FrameError::Masked => "server frame masked",
            FrameError::LengthTopBit => "length has its top bit set",
            FrameError::UnknownOpcode => "unknown opcode",
            FrameError::FragmentedControl => "fragmented control frame",
            FrameError::ControlTooLong => "control frame over 125 bytes",
            FrameError::ContinuationWithoutMessage => "continuation without a message",
            FrameError::MessageInsideMessage => "new message inside a fragmented one",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for FrameError {}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1, which only a decode that allowed it ([`Header::decode_with`]) returns set.
    pub rsv1: bool,
    /// The opcode (low 4 bits of the first byte), not yet judged: see [`Header::check`].
    pub opcode: u8,
    /// Whether a mask key follows the length.
    pub masked: bool,
    /// Payload bytes announced (below 2^63).
    pub payload_len: u64,
    /// Header bytes on the wire, mask key included. Taken from the wire, not recomputed: a
    /// longer length form than needed is legal to read.
    pub header_len: usize,
}

impl Header {
    /// Decodes the header at the start of `buf`, sent by `from`. `Ok(None)`: the length fields
    /// are not all there yet. The header is returned as soon as they are, before its mask key:
    /// nothing in the key can make a frame invalid, so a bad frame is refused as early as its
    /// bytes show it (reserved bits and the mask bit from the first two bytes already).
    pub fn decode(buf: &[u8], from: Role) -> Result<Option<Header>, FrameError> {
        Header::decode_with(buf, from, 0)
    }

    /// [`Header::decode`] where the reserved bits in `allowed` (of the first byte: [`RSV1`]
    /// once permessage-deflate is negotiated) are not an error. Which frames may carry them is
    /// the extension's rule, the caller's to check.
    pub fn decode_with(buf: &[u8], from: Role, allowed: u8) -> Result<Option<Header>, FrameError> {
        let Some(&[first, second]) = buf.get(..2) else {
            return Ok(None);
        };
        if first & RSV & !allowed != 0 {
            return Err(FrameError::ReservedBits);
        }
        let masked = second & MASKED != 0;
        match (from, masked) {
            (Role::Client, false) => return Err(FrameError::Unmasked),
            (Role::Server, true) => return Err(FrameError::Masked),
            _ => {}
        }
        let length_bytes = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let Some(length_field) = buf.get(2..2 + length_bytes) else {
            return Ok(None);
        };
        let payload_len = match length_bytes {
            0 => u64::from(second & 0x7F),
            _ => length_field
                .iter()
                .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)),
        };
        if payload_len >> 63 != 0 {
            return Err(FrameError::LengthTopBit);
        }
        Ok(Some(Header {
            fin: first & FIN != 0,
            rsv1: first & RSV1 != 0,
            opcode: first & 0x0F,
            masked,
            payload_len,
            header_len: 2 + length_bytes + if masked { 4 } else { 0 },
        }))
    }

    /// Checks the opcode and the rules of fragmentation (RFC 6455 5.4, 5.5), given whether a
    /// fragmented message is in progress (`in_message`).
    pub fn check(&self, in_message: bool) -> Result<(), FrameError> {
        match self.opcode {
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !self.fin {
                    return Err(FrameError::FragmentedControl);
                }
                if self.payload_len > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError::ControlTooLong);
                }
                Ok(())
            }
            opcode::CONTINUATION if !in_message => Err(FrameError::ContinuationWithoutMessage),
            opcode::TEXT | opcode::BINARY if in_message => Err(FrameError::MessageInsideMessage),
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => Ok(()),
            _ => Err(FrameError::UnknownOpcode),
        }
    }

    /// The mask key, once `buf` (starting at this header) holds it; `None` for an unmasked
    /// frame.
    pub fn mask_key(&self, buf: &[u8]) -> Option<[u8; 4]> {
        if !self.masked {
            return None;
        }
        let key = buf.get(self.header_len - 4..self.header_len)?;
        <[u8; 4]>::try_from(key).ok()
    }

    /// Header plus payload bytes, or `None` if that does not fit a `usize`.
    pub fn frame_len(&self) -> Option<usize> {
        usize::try_from(self.payload_len)
            .ok()?
            .checked_add(self.header_len)
    }
}

/// A frame to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1-3 as the low three bits. Always 0 from ringcast and loadgen (no extensions); tests
    /// set them to send what a peer must refuse.
    pub rsv: u8,
    /// The opcode (4 bits).
    pub opcode: u8,
    /// The mask key: `Some` for a client's frame, `None` for a server's.
    pub mask: Option<[u8; 4]>,
    /// The unmasked payload.
    pub payload: &'a [u8],
}

/// Bytes a frame carrying `payload_len` bytes takes on the wire, in the shortest length form,
/// with a mask key if `masked`.
pub fn encoded_len(payload_len: usize, masked: bool) -> usize {
    let length_bytes = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    let mask_bytes = if masked { 4 } else { 0 };
    2 + length_bytes + mask_bytes + payload_len
}

impl<'a> Frame<'a> {
    /// An unmasked, final frame with no reserved bits: what a server sends.
    pub fn new(opcode: u8, payload: &'a [u8]) -> Frame<'a> {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload,
        }
    }

    /// The same frame masked with `mask`: what a client sends.
    pub fn masked(self, mask: [u8; 4]) -> Frame<'a> {
        Frame {
            mask: Some(mask),
            ..self
        }
    }

    /// Bytes the encoded frame takes.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.payload.len(), self.mask.is_some())
    }

    /// Appends the frame (header, mask key, payload masked when there is a key) to `out`, in
    /// the shortest length form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0x7) << 4 | (self.opcode & 0x0F));
        let mask_bit = if self.mask.is_some() { MASKED } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            // The 7-bit length fits: `len < 126` makes the cast lossless.
            out.push(mask_bit | len as u8);
        } else if let Ok(len16) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len16.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let start = match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                Some((out.len(), mask))
            }
            None => None,
        };
        out.extend_from_slice(self.payload);
        if let Some((start, mask)) = start {
            apply_mask(&mut out[start..], mask);
        }
    }
}

/// XORs `data` with the repeating 4-byte `mask` (RFC 6455 5.3), starting at the key's first
/// byte; the same call masks and unmasks. Eight bytes at a time (the key doubled into a word),
/// which the compiler turns into vector XORs; the tail of fewer than eight bytes byte by byte.
/// The words start at `data[0]`, so the key's phase stays put whatever the alignment.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = data.as_chunks_mut::<8>();
    for chunk in words {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    // The tail (up to 7 bytes) starts at a multiple of 8, so at key byte 0.
    for (byte, key) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-by-byte masking, the way RFC 6455 5.3 writes it.
    fn naive_mask(data: &mut [u8], mask: [u8; 4]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn masking_matches_the_reference_at_every_alignment_and_length() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let backing = payload(70 + 8);
        for offset in 0..8 {
            for len in 0..=70 {
                let mut fast = backing.clone();
                let mut reference = backing.clone();
                apply_mask(&mut fast[offset..offset + len], mask);
                naive_mask(&mut reference[offset..offset + len], mask);
                assert_eq!(fast, reference, "offset {offset} len {len}");
                apply_mask(&mut fast[offset..offset + len], mask);
                assert_eq!(
                    fast, backing,
                    "masking twice restores, offset {offset} len {len}"
                );
            }
        }
    }

    #[test]
    fn every_length_form_round_trips_masked_and_unmasked() {
        for len in [0usize, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 0x1_0001] {
            let data = payload(len);
            for (mask, from) in [(None, Role::Server), (Some([1, 2, 3, 4]), Role::Client)] {
                for (fin, op) in [(true, opcode::BINARY), (false, opcode::TEXT)] {
                    let frame = Frame {
                        fin,
                        rsv: 0,
                        opcode: op,
                        mask,
                        payload: &data,
                    };
                    let mut wire = Vec::new();
                    frame.encode(&mut wire);
                    assert_eq!(wire.len(), frame.encoded_len());
                    let header = Header::decode(&wire, from).unwrap().unwrap();
                    let length_bytes = match len {
                        0..=125 => 0,
                        126..=0xFFFF => 2,
                        _ => 8,
                    };
                    let expected_header = 2 + length_bytes + if mask.is_some() { 4 } else { 0 };
                    assert_eq!(
                        header,
                        Header {
                            fin,
                            rsv1: false,
                            opcode: op,
                            masked: mask.is_some(),
                            payload_len: len as u64,
                            header_len: expected_header,
                        }
                    );
                    assert_eq!(header.frame_len(), Some(wire.len()));
                    assert_eq!(header.mask_key(&wire), mask);
                    let mut body = wire[header.header_len..].to_vec();
                    if let Some(key) = header.mask_key(&wire) {
                        apply_mask(&mut body, key);
                    }
                    assert_eq!(body, data, "len {len}");
                    // Before the length fields are complete there is no header; from then on
                    // it is the same one, with its key once that arrived.
                    for cut in 0..expected_header {
                        let partial = Header::decode(&wire[..cut], from).unwrap();
                        if cut < 2 + length_bytes {
                            assert_eq!(partial, None, "len {len} cut {cut}");
                        } else {
                            assert_eq!(partial, Some(header), "len {len} cut {cut}");
                            assert_eq!(header.mask_key(&wire[..cut]), None);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_uses_the_shortest_length_form() {
        let mut wire = Vec::new();
        Frame::new(opcode::TEXT, b"hello").encode(&mut wire);
        assert_eq!(wire, b"\x81\x05hello");
        wire.clear();
        Frame::new(opcode::BINARY, &[0; 126]).encode(&mut wire);
        assert_eq!(&wire[..4], &[0x82, 126, 0, 126]);
        wire.clear();
        Frame::new(opcode::BINARY, &[0; 0x1_0000])
            .masked([9, 9, 9, 9])
            .encode(&mut wire);
        assert_eq!(&wire[..10], &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(&wire[10..14], &[9, 9, 9, 9]);
    }

    #[test]
    fn a_longer_length_form_than_needed_is_read_as_sent() {
        let wire = [0x82, 126, 0, 5, 1, 2, 3, 4, 5];
        let header = Header::decode(&wire, Role::Server).unwrap().unwrap();
        assert_eq!((header.payload_len, header.header_len), (5, 4));
        assert_eq!(header.frame_len(), Some(wire.len()));
    }

    #[test]
    fn reserved_bits_and_wrong_masking_are_refused_from_two_bytes() {
        for rsv in 1..8u8 {
            let first = 0x80 | rsv << 4 | opcode::TEXT;
            for from in [Role::Client, Role::Server] {
                let second = if from == Role::Client { 0x80 } else { 0 };
                assert_eq!(
                    Header::decode(&[first, second | 126], from),
                    Err(FrameError::ReservedBits),
                    "rsv {rsv}"
                );
            }
        }
        // Allowed RSV1 is returned; RSV2 and RSV3 stay refused.
        let header = Header::decode_with(&[0xC1, 0x00], Role::Server, RSV1);
        assert!(header.unwrap().unwrap().rsv1);
        assert!(
            !Header::decode_with(&[0x81, 0x00], Role::Server, RSV1)
                .unwrap()
                .unwrap()
                .rsv1
        );
        for first in [0xA1, 0x91, 0xF1] {
            assert_eq!(
                Header::decode_with(&[first, 0x00], Role::Server, RSV1),
                Err(FrameError::ReservedBits)
            );
        }
        assert_eq!(
            Header::decode(&[0x81, 0x05], Role::Client),
            Err(FrameError::Unmasked)
        );
        assert_eq!(
            Header::decode(&[0x81, 0x85], Role::Server),
            Err(FrameError::Masked)
        );
        let mut top_bit = vec![0x82, 127];
        top_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(
            Header::decode(&top_bit, Role::Server),
            Err(FrameError::LengthTopBit)
        );
    }

    #[test]
    fn opcodes_and_fragmentation_rules_are_checked() {
        let header = |fin, op, payload_len| Header {
            fin,
            rsv1: false,
            opcode: op,
            masked: false,
            payload_len,
            header_len: 2,
        };
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            for in_message in [false, true] {
                assert_eq!(
                    header(true, op, 0).check(in_message),
                    Err(FrameError::UnknownOpcode),
                    "opcode {op:#x}"
                );
            }
        }
        for op in [opcode::CLOSE, opcode::PING, opcode::PONG] {
            assert!(opcode::is_control(op));
            for in_message in [false, true] {
                assert_eq!(header(true, op, 125).check(in_message), Ok(()));
                assert_eq!(
                    header(false, op, 0).check(in_message),
                    Err(FrameError::FragmentedControl)
                );
                assert_eq!(
                    header(true, op, 126).check(in_message),
                    Err(FrameError::ControlTooLong)
                );
            }
        }
        for op in [opcode::TEXT, opcode::BINARY] {
            assert!(!opcode::is_control(op));
            assert_eq!(header(false, op, 1 << 40).check(false), Ok(()));
            assert_eq!(
                header(true, op, 0).check(true),
                Err(FrameError::MessageInsideMessage)
            );
        }
        assert_eq!(
            header(true, opcode::CONTINUATION, 0).check(false),
            Err(FrameError::ContinuationWithoutMessage)
        );
        assert_eq!(header(true, opcode::CONTINUATION, 0).check(true), Ok(()));
    }

    #[test]
    fn reserved_bits_can_be_encoded_for_tests_and_are_refused() {
        let mut wire = Vec::new();
        Frame {
            rsv: 0b100,
            ..Frame::new(opcode::TEXT, b"a")
        }
        .encode(&mut wire);
        assert_eq!(wire[0], 0xC1);
        assert_eq!(
            Header::decode(&wire, Role::Server),
            Err(FrameError::ReservedBits)
        );
    }

    #[test]
    fn sendable_close_codes_follow_the_registry() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_sendable_close_code(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!is_sendable_close_code(code), "{code}");
        }
        assert_eq!(CloseCode::TooBig.code(), 1009);
    }
}
