//! What publishers send (`--payload`): the stamp padded with dots in a binary frame, or
//! chat-like JSON text (`ringcast_proto::chat`) in a text frame with the stamp as its first
//! field. Payloads are built once per publisher; each message only has its stamp written.

use ringcast_proto::{chat, opcode};
use serde::{Deserialize, Serialize};

use super::stamp::{Stamp, TEXT_FIELD};

/// Distinct JSON messages per publisher, sent in turn: enough that consecutive messages differ
/// as chat does (with no context takeover each is compressed on its own anyway).
const JSON_BODIES: u64 = 16;

/// Smallest `--size` with `--payload json`: the stamp field, a user and a few words of text.
pub const MIN_JSON_SIZE: usize = 128;

/// What publishers send (`--payload`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// The binary stamp padded with dots, in a binary frame.
    #[default]
    Padded,
    /// Chat-like JSON text, the stamp its first field, in a text frame.
    Json,
}

impl PayloadKind {
    /// The default (serde leaves it out of report.json).
    pub fn is_padded(&self) -> bool {
        *self == PayloadKind::Padded
    }
}

/// One publisher's payloads.
pub struct Payloads {
    /// Text or binary frames.
    kind: PayloadKind,
    /// The bodies sent in turn (one for `padded`), their stamps overwritten per message.
    bodies: Vec<Vec<u8>>,
}

impl Payloads {
    /// Publisher `publisher`'s payloads of `size` bytes (the scenario checked `size` against
    /// `STAMP_LEN` and `MIN_JSON_SIZE`). The JSON text depends on the publisher index only, so
    /// every run sends the same.
    pub fn new(kind: PayloadKind, size: usize, publisher: u32) -> Payloads {
        let bodies = match kind {
            PayloadKind::Padded => vec![vec![b'.'; size]],
            PayloadKind::Json => (0..JSON_BODIES)
                .map(|index| {
                    chat::message(u64::from(publisher), index, size, TEXT_FIELD)
                        .expect("MIN_JSON_SIZE holds the stamp field and a chat line")
                })
                .collect(),
        };
        Payloads { kind, bodies }
    }

    /// Message `stamp.seq` stamped: its opcode and payload.
    pub fn stamped(&mut self, stamp: &Stamp) -> (u8, &[u8]) {
        let count = self.bodies.len() as u64;
        let body = &mut self.bodies[(stamp.seq % count) as usize];
        // Neither write can fail: `new` made the bodies to hold the stamp.
        match self.kind {
            PayloadKind::Padded => {
                let _ = stamp.write_to(body);
                (opcode::BINARY, body)
            }
            PayloadKind::Json => {
                let _ = stamp.write_text_to(body);
                (opcode::TEXT, body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_carry_the_stamp_and_the_exact_size() {
        let stamp = |seq| Stamp {
            run_id: 3,
            publisher: 1,
            seq,
            intended_ns: 10 + seq,
            sent_ns: 11 + seq,
        };
        let mut payloads = Payloads::new(PayloadKind::Json, MIN_JSON_SIZE, 1);
        assert_eq!(payloads.bodies.len(), JSON_BODIES as usize);
        for seq in 0..20 {
            let (op, payload) = payloads.stamped(&stamp(seq));
            assert_eq!((op, payload.len()), (opcode::TEXT, MIN_JSON_SIZE));
            assert!(std::str::from_utf8(payload).is_ok());
            assert_eq!(Stamp::read_from(payload), Some(stamp(seq)));
        }
        let mut padded = Payloads::new(PayloadKind::Padded, 64, 1);
        let (op, payload) = padded.stamped(&stamp(5));
        assert_eq!((op, payload.len()), (opcode::BINARY, 64));
        assert_eq!(Stamp::read_from(payload), Some(stamp(5)));
    }
}
