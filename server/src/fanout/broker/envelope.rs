//! What a node publishes to the broker for one message: the envelope around the frame.
//!
//! ```text
//! "rc1" | node id (8 bytes, big-endian) | the WebSocket frame as sent to clients
//! ```
//!
//! The frame is the server-to-client encoding (FIN set, unmasked, text or binary), so a node
//! that receives it copies it once into a frame every one of its cores shares, and never
//! re-encodes; the node id lets the publishing node skip its own echo (it has delivered the
//! message to its clients already). A receiver checks everything a client could be hurt by:
//! the header, the length, the size limit and, for text, UTF-8.

use ringcast_proto::{opcode, Header, Role};

/// First bytes of every envelope: the format and its version.
pub const MAGIC: &[u8; 3] = b"rc1";
/// Bytes before the frame.
pub const HEADER_LEN: usize = MAGIC.len() + 8;

/// Writes the envelope of `frame` from node `node` into `out` (cleared first).
pub fn seal(out: &mut Vec<u8>, node: u64, frame: &[u8]) {
    out.clear();
    out.reserve(HEADER_LEN + frame.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(frame);
}

/// What an envelope holds for the node that receives it.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened<'a> {
    /// A frame to deliver to this node's clients.
    Frame(&'a [u8]),
    /// This node published it: its clients have it already.
    OwnEcho,
    /// Not a valid envelope (why), dropped and counted.
    Invalid(&'static str),
}

/// Opens an envelope received by node `node`, whose clients take messages of at most
/// `max_message` payload bytes.
pub fn open(envelope: &[u8], node: u64, max_message: usize) -> Opened<'_> {
    let Some(frame) = envelope.strip_prefix(MAGIC.as_slice()) else {
        return Opened::Invalid("not a ringcast envelope");
    };
    let Some((sender, frame)) = frame.split_first_chunk::<8>() else {
        return Opened::Invalid("truncated");
    };
    if u64::from_be_bytes(*sender) == node {
        return Opened::OwnEcho;
    }
    let header = match Header::decode(frame, Role::Server) {
        Ok(Some(header)) => header,
        Ok(None) => return Opened::Invalid("truncated"),
        Err(err) => return Opened::Invalid(err.reason()),
    };
    if !header.fin || !matches!(header.opcode, opcode::TEXT | opcode::BINARY) {
        return Opened::Invalid("not a whole text or binary message");
    }
    if header.frame_len() != Some(frame.len()) {
        return Opened::Invalid("length does not match");
    }
    if header.payload_len > max_message as u64 {
        return Opened::Invalid("over --max-message");
    }
    let payload = &frame[header.header_len..];
    if header.opcode == opcode::TEXT && std::str::from_utf8(payload).is_err() {
        return Opened::Invalid("text is not UTF-8");
    }
    Opened::Frame(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{encode_message, MessageKind};

    fn sealed(node: u64, frame: &[u8]) -> Vec<u8> {
        let mut out = vec![1, 2, 3];
        seal(&mut out, node, frame);
        out
    }

    #[test]
    fn a_frame_from_another_node_is_delivered_as_is() {
        let frame = encode_message(MessageKind::Text, "héllo".as_bytes());
        let envelope = sealed(7, &frame);
        assert_eq!(envelope.len(), HEADER_LEN + frame.len());
        assert_eq!(open(&envelope, 8, 64), Opened::Frame(&frame[..]));
        let big = encode_message(MessageKind::Binary, &[0; 70_000]);
        assert_eq!(open(&sealed(7, &big), 8, 70_000), Opened::Frame(&big[..]));
    }

    #[test]
    fn the_publishing_node_skips_its_own_echo() {
        let frame = encode_message(MessageKind::Binary, b"x");
        assert_eq!(open(&sealed(7, &frame), 7, 64), Opened::OwnEcho);
    }

    #[test]
    fn anything_a_client_could_be_hurt_by_is_refused() {
        let text = |payload: &[u8]| {
            let mut frame = vec![0x81, payload.len() as u8];
            frame.extend_from_slice(payload);
            frame
        };
        let cases: [(Vec<u8>, &str); 8] = [
            (b"rc2........\x81\x00".to_vec(), "not a ringcast envelope"),
            (b"rc1\0\0\0".to_vec(), "truncated"),
            (sealed(1, &[0x81]), "truncated"),
            (
                sealed(1, &[0x01, 0x00]),
                "not a whole text or binary message",
            ),
            (
                sealed(1, &[0x89, 0x00]),
                "not a whole text or binary message",
            ),
            (sealed(1, &[0x81, 0x05, b'a']), "length does not match"),
            (sealed(1, &text(&[0xff, 0xfe])), "text is not UTF-8"),
            (
                sealed(1, &[0x82, 0x81, 0, 0, 0, 0, 0]),
                "server frame masked",
            ),
        ];
        for (envelope, why) in cases {
            assert_eq!(open(&envelope, 2, 64), Opened::Invalid(why), "{envelope:?}");
        }
        let long = encode_message(MessageKind::Binary, &[0; 65]);
        assert_eq!(
            open(&sealed(1, &long), 2, 64),
            Opened::Invalid("over --max-message")
        );
    }
}
