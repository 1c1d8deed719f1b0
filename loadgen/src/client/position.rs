//! Recovery as a client sees it (ringcast, issue 19): the `since=` query a subscriber connects
//! with, and the JSON first message the server answers it with. A server without recovery
//! ignores the query and sends no such message; the first message is then plain data.

/// Where a subscriber stands in its room's stream: the history's epoch and the offset of the
/// last message it got (messages are numbered 1, 2, 3 ... in room order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The room history's epoch, as the server named it.
    pub epoch: String,
    /// Offset of the last message received (0: none yet).
    pub offset: u64,
}

/// The server's answer to a connection that asked with `since=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstMessage {
    /// `position`: live from here, the next message has offset `offset + 1`.
    Position(Position),
    /// `recovered`: the missed messages `offset + 1` ... follow, then live.
    Recovered(Position),
    /// `reset`: the position asked for is gone; nothing replayed, live from `offset + 1`.
    Reset(Position),
    /// Not a `{"ringcast":...}` message: the stream has no first message, this is data.
    None,
    /// A `{"ringcast":...}` message that breaks the contract, and why.
    Malformed(String),
}

impl FirstMessage {
    /// Reads the first message of a stream. Only a JSON object with a `ringcast` member is the
    /// server's first message; anything else (a loadgen stamp is binary and starts with its
    /// magic, never `{`) is data.
    pub fn parse(payload: &[u8]) -> FirstMessage {
        if payload.first() != Some(&b'{') {
            return FirstMessage::None;
        }
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(payload) else {
            return FirstMessage::None;
        };
        let Some(kind) = object.get("ringcast") else {
            return FirstMessage::None;
        };
        let shown = || String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned();
        let (Some(epoch), Some(offset)) = (
            object.get("epoch").and_then(|e| e.as_str()),
            object.get("offset").and_then(|o| o.as_u64()),
        ) else {
            return FirstMessage::Malformed(format!(
                "first message without a string epoch and a non-negative integer offset: {}",
                shown()
            ));
        };
        let position = Position {
            epoch: epoch.to_string(),
            offset,
        };
        match kind.as_str() {
            Some("position") => FirstMessage::Position(position),
            Some("recovered") => FirstMessage::Recovered(position),
            Some("reset") => FirstMessage::Reset(position),
            _ => FirstMessage::Malformed(format!("unknown first message kind: {}", shown())),
        }
    }
}

/// `path` with the recovery query: `since=EPOCH:OFFSET` to recover after `position`, or an empty
/// `since=` (no history, just the position) without one. The epoch is percent-encoded: it is the
/// server's string, and any byte of it outside RFC 3986's unreserved set would break the URL.
pub fn with_since(path: &str, position: Option<&Position>) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut out = format!("{path}{separator}since=");
    if let Some(position) = position {
        for byte in position.epoch.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out.push_str(&format!(":{}", position.offset));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.to_string(),
            offset,
        }
    }

    #[test]
    fn reads_the_three_answers() {
        assert_eq!(
            FirstMessage::parse(br#"{"ringcast":"position","epoch":"e1","offset":0}"#),
            FirstMessage::Position(at("e1", 0))
        );
        assert_eq!(
            FirstMessage::parse(br#"{"offset":41,"ringcast":"recovered","epoch":"x y"}"#),
            FirstMessage::Recovered(at("x y", 41))
        );
        assert_eq!(
            FirstMessage::parse(br#"{"ringcast":"reset","epoch":"e2","offset":9}"#),
            FirstMessage::Reset(at("e2", 9))
        );
    }

    #[test]
    fn data_is_not_a_first_message_and_broken_ones_are_malformed() {
        assert_eq!(FirstMessage::parse(b"RCLG...."), FirstMessage::None);
        assert_eq!(FirstMessage::parse(b""), FirstMessage::None);
        assert_eq!(FirstMessage::parse(b"{not json"), FirstMessage::None);
        assert_eq!(FirstMessage::parse(br#"{"chat":"hi"}"#), FirstMessage::None);
        for broken in [
            &br#"{"ringcast":"position","epoch":1,"offset":0}"#[..],
            br#"{"ringcast":"position","epoch":"e","offset":-1}"#,
            br#"{"ringcast":"position","epoch":"e","offset":1.5}"#,
            br#"{"ringcast":"position","epoch":"e"}"#,
            br#"{"ringcast":"moved","epoch":"e","offset":1}"#,
            br#"{"ringcast":7,"epoch":"e","offset":1}"#,
        ] {
            assert!(
                matches!(FirstMessage::parse(broken), FirstMessage::Malformed(_)),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn since_is_appended_and_the_epoch_encoded() {
        assert_eq!(with_since("/ws/room", None), "/ws/room?since=");
        assert_eq!(
            with_since("/ws/room", Some(&at("a1-B_.~", 42))),
            "/ws/room?since=a1-B_.~:42"
        );
        assert_eq!(
            with_since("/ws/room?token=t", Some(&at("e:1/ü", 0))),
            "/ws/room?token=t&since=e%3A1%2F%C3%BC:0"
        );
    }
}
