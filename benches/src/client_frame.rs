//! Masked client-to-server frames, built the way RFC 6455 5.2 lays them out, as input for the
//! parsing benchmark. Clients must mask every frame; the server unmasks each payload, which is
//! the per-byte cost `parse_client_frame` measures.

/// Opcode of a binary data frame.
pub const OPCODE_BINARY: u8 = 0x2;
/// Opcode of a text data frame.
pub const OPCODE_TEXT: u8 = 0x1;
/// FIN bit: the frame is a whole message.
const FIN: u8 = 0x80;
/// MASK bit of the second header byte.
const MASKED: u8 = 0x80;

/// A complete (FIN) masked frame with `opcode`, `payload` masked with `mask`.
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = Vec::with_capacity(14 + len);
    frame.push(FIN | opcode);
    if len < 126 {
        // Fits the 7-bit length: `len < 126` makes the cast lossless.
        frame.push(MASKED | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        frame.push(MASKED | 126);
        frame.extend_from_slice(&len16.to_be_bytes());
    } else {
        frame.push(MASKED | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4]),
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_follow_rfc6455() {
        let mask = [1, 2, 3, 4];
        let small = client_frame(OPCODE_BINARY, &[0; 125], mask);
        assert_eq!(&small[..2], &[0x82, 0x80 | 125]);
        assert_eq!(small.len(), 2 + 4 + 125);
        let medium = client_frame(OPCODE_TEXT, &[0; 126], mask);
        assert_eq!(&medium[..4], &[0x81, 0x80 | 126, 0, 126]);
        let large = client_frame(OPCODE_BINARY, &vec![0; 65536], mask);
        assert_eq!(large[1], 0x80 | 127);
        assert_eq!(large.len(), 2 + 8 + 4 + 65536);
    }

    #[test]
    fn payload_is_masked_with_the_key() {
        let frame = client_frame(OPCODE_BINARY, b"abcdef", [0xff, 0, 0xff, 0]);
        assert_eq!(&frame[2..6], &[0xff, 0, 0xff, 0]);
        let masked = &frame[6..];
        assert_eq!(
            masked,
            &[b'a' ^ 0xff, b'b', b'c' ^ 0xff, b'd', b'e' ^ 0xff, b'f']
        );
    }
}
