//! RFC 6455 framing, client side: masked frames we send, and a parser for the unmasked
//! server -> client direction that walks every frame in one large read buffer (DESIGN 6: one
//! async read per frame would cost a syscall per delivery).

use thiserror::Error;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest server frame accepted; past it the connection is treated as broken instead of
/// buffering without bound.
pub const MAX_SERVER_FRAME: u64 = 64 * 1024 * 1024;

/// Why a server frame could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 6455 5.1: a server must not mask frames.
    #[error("server sent a masked frame")]
    Masked,
    /// The frame announces more than `MAX_SERVER_FRAME` bytes.
    #[error("server frame of {0} bytes exceeds the limit")]
    TooLarge(u64),
}

/// One complete server frame inside a read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFrame<'a> {
    /// The frame's opcode (low 4 bits of the first byte).
    pub opcode: u8,
    /// The frame's payload, borrowed from the read buffer.
    pub payload: &'a [u8],
}

/// Parses the frame at the start of `buf`. `Ok(None)` means the frame is incomplete (keep the
/// bytes and read more); `Ok(Some((frame, consumed)))` otherwise.
pub fn parse_server_frame(buf: &[u8]) -> Result<Option<(ServerFrame<'_>, usize)>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, header) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(b);
                (u64::from_be_bytes(word), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if len > MAX_SERVER_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    // Cannot truncate: len <= MAX_SERVER_FRAME fits any usize we run on.
    let end = header + len as usize;
    match buf.get(header..end) {
        Some(payload) => Ok(Some((
            ServerFrame {
                opcode: first & 0x0F,
                payload,
            },
            end,
        ))),
        None => Ok(None),
    }
}

/// Appends one masked, final client frame (header, mask key, masked payload) to `out`.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeating 4-byte mask (RFC 6455 5.3).
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

/// Source of frame masks: splitmix64 seeded from the clock and a per-source address.
///
/// RFC 6455 asks for unpredictable masks to protect intermediaries from cache poisoning by
/// hostile scripts; a load generator is not such a script, and a CSPRNG call per frame would
/// cost more than the frame. Masks still change every frame, as servers may check.
pub struct MaskSource {
    /// splitmix64 state.
    state: u64,
}

impl MaskSource {
    /// A new source; distinct sources created at the same time still differ (address mix-in).
    pub fn new() -> MaskSource {
        let mut source = MaskSource { state: 0 };
        let address = &source as *const MaskSource as u64;
        source.state = crate::clock::monotonic_ns() ^ address.rotate_left(32);
        source
    }

    /// The next mask key.
    pub fn next_mask(&mut self) -> [u8; 4] {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z as u32).to_ne_bytes()
    }
}

impl Default for MaskSource {
    fn default() -> Self {
        MaskSource::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 65535 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parses_every_length_form_and_reports_incomplete_frames() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let wire = server_frame(OP_BINARY, &payload);
            let (frame, used) = parse_server_frame(&wire).unwrap().unwrap();
            assert_eq!(
                (frame.opcode, frame.payload.len(), used),
                (OP_BINARY, len, wire.len())
            );
            for cut in [0, 1, wire.len() - 1] {
                if cut < wire.len() && !(len == 0 && cut == wire.len()) {
                    assert_eq!(
                        parse_server_frame(&wire[..cut]),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn walks_several_frames_in_one_buffer() {
        let mut wire = server_frame(OP_TEXT, b"one");
        wire.extend(server_frame(OP_PING, b"p"));
        wire.extend(server_frame(OP_BINARY, b"three"));
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((frame, used)) = parse_server_frame(&wire[at..]).unwrap() {
            seen.push((frame.opcode, frame.payload.to_vec()));
            at += used;
        }
        assert_eq!(at, wire.len());
        assert_eq!(seen[2], (OP_BINARY, b"three".to_vec()));
        assert_eq!(seen[1].0, OP_PING);
    }

    #[test]
    fn rejects_masked_and_oversized_frames() {
        assert_eq!(
            parse_server_frame(&[0x82, 0x81, 1, 2, 3, 4, 5]),
            Err(FrameError::Masked)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(MAX_SERVER_FRAME + 1).to_be_bytes());
        assert_eq!(
            parse_server_frame(&huge),
            Err(FrameError::TooLarge(MAX_SERVER_FRAME + 1))
        );
    }

    #[test]
    fn client_frames_are_masked_and_unmask_back() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let mask = MaskSource::new().next_mask();
        encode_client_frame(&mut out, OP_BINARY, &payload, mask);
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(&out[4..8], &mask);
        let mut body = out[8..].to_vec();
        apply_mask(&mut body, mask);
        assert_eq!(body, payload);
    }
}
