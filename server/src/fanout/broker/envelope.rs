//! What a node receives from the broker for one message: the envelope around the frame.
//!
//! ```text
//! "rc2" | EPOCH ":" OFFSET "\n" | the WebSocket frame as sent to clients
//! ```
//!
//! The publish link's script (`publish_link.rs`) numbers every message in Redis and writes the
//! envelope there, so every node reads the room's one order with its epoch and offsets. The
//! frame is the server-to-client encoding (FIN set, unmasked, text or binary), so a node that
//! receives it copies it once into a frame every one of its cores shares, and never
//! re-encodes. A receiver checks everything a client could be hurt by: the header, the length,
//! the size limit and, for text, UTF-8.

use ringcast_proto::{opcode, Header, Role};

/// First bytes of every envelope: the format and its version.
pub const MAGIC: &[u8; 3] = b"rc2";
/// Longest epoch accepted (the script's are 16 hex digits).
const MAX_EPOCH: usize = 64;

/// What an envelope holds for the node that receives it.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened<'a> {
    /// A frame to deliver to this node's clients, at `offset` of the room's `epoch`.
    Frame {
        /// The room's epoch in Redis.
        epoch: &'a str,
        /// The message's offset in it.
        offset: u64,
        /// The frame.
        frame: &'a [u8],
    },
    /// Not a valid envelope (why), dropped and counted.
    Invalid(&'static str),
}

/// Opens an envelope for clients that take messages of at most `max_message` payload bytes.
pub fn open(envelope: &[u8], max_message: usize) -> Opened<'_> {
    let Some(rest) = envelope.strip_prefix(MAGIC.as_slice()) else {
        return Opened::Invalid("not a ringcast envelope");
    };
    let Some(end) = rest.iter().take(MAX_EPOCH + 22).position(|&b| b == b'\n') else {
        return Opened::Invalid("no position");
    };
    let (position, frame) = (&rest[..end], &rest[end + 1..]);
    let parsed = std::str::from_utf8(position).ok().and_then(|position| {
        let (epoch, offset) = position.rsplit_once(':')?;
        let offset = offset.parse::<u64>().ok().filter(|&offset| offset > 0)?;
        // The epoch is told to clients in JSON: letters and digits only.
        let plain = epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        (plain && !epoch.is_empty() && epoch.len() <= MAX_EPOCH).then_some((epoch, offset))
    });
    let Some((epoch, offset)) = parsed else {
        return Opened::Invalid("bad position");
    };
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
    Opened::Frame {
        epoch,
        offset,
        frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{encode_message, MessageKind};

    /// The envelope the script writes.
    fn sealed(position: &str, frame: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(position.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(frame);
        out
    }

    #[test]
    fn a_frame_is_delivered_as_is_at_its_position() {
        let frame = encode_message(MessageKind::Text, "héllo".as_bytes());
        let envelope = sealed("00ab:7", &frame);
        assert_eq!(
            open(&envelope, 64),
            Opened::Frame {
                epoch: "00ab",
                offset: 7,
                frame: &frame[..]
            }
        );
        let big = encode_message(MessageKind::Binary, &[0; 70_000]);
        assert!(matches!(
            open(&sealed("e:1", &big), 70_000),
            Opened::Frame { frame, .. } if frame == &big[..]
        ));
    }

    #[test]
    fn anything_a_client_could_be_hurt_by_is_refused() {
        let text = |payload: &[u8]| {
            let mut frame = vec![0x81, payload.len() as u8];
            frame.extend_from_slice(payload);
            frame
        };
        let hi = text(b"hi");
        let cases: [(Vec<u8>, &str); 12] = [
            (b"rc1........\x81\x00".to_vec(), "not a ringcast envelope"),
            (b"rc2e:1".to_vec(), "no position"),
            (sealed("e", &hi), "bad position"),
            (sealed(":1", &hi), "bad position"),
            (sealed("e:0", &hi), "bad position"),
            (sealed("e:-1", &hi), "bad position"),
            (sealed("e\":1", &hi), "bad position"),
            (sealed("e:1", &[0x81]), "truncated"),
            (
                sealed("e:1", &[0x89, 0x00]),
                "not a whole text or binary message",
            ),
            (sealed("e:1", &[0x81, 0x05, b'a']), "length does not match"),
            (sealed("e:1", &text(&[0xff, 0xfe])), "text is not UTF-8"),
            (
                sealed("e:1", &[0x82, 0x81, 0, 0, 0, 0, 0]),
                "server frame masked",
            ),
        ];
        for (envelope, why) in cases {
            assert_eq!(open(&envelope, 64), Opened::Invalid(why), "{envelope:?}");
        }
        let long = encode_message(MessageKind::Binary, &[0; 65]);
        assert_eq!(
            open(&sealed("e:1", &long), 64),
            Opened::Invalid("over --max-message")
        );
    }
}
