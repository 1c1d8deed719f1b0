//! The stamp publishers write at the start of every payload.
//!
//! Layout (little endian, 40 bytes): magic u32, run id u32, publisher u32, reserved u32,
//! sequence u64, intended send time u64 (monotonic ns), actual send time u64 (monotonic ns).
//! The rest of the payload is padding up to `--size`. The run id keeps the messages of other
//! loadgen processes sharing a room out of this process's loss and latency accounting.
//!
//! A text payload (`--payload json`) carries the same fields as its first JSON field instead,
//! `{"rclg":"` and 64 lower-case hex digits (run id, publisher, sequence, intended and actual
//! send time, big endian) and `"`: valid UTF-8, still at a fixed place.

/// Bytes the stamp occupies; `--size` must be at least this.
pub const STAMP_LEN: usize = 40;

/// Marks a payload as a loadgen stamp ("RCLG"), so foreign traffic in a room is ignored.
const MAGIC: u32 = 0x474c_4352;

/// How a text payload starts: the object's brace and the stamp field's key and open quote.
const TEXT_START: &[u8] = b"{\"rclg\":\"";

/// Hex digits of the text stamp: 4 + 4 + 8 + 8 + 8 bytes.
const TEXT_DIGITS: usize = 64;

/// The text stamp as a JSON field with a placeholder value: what a text payload is built
/// with (after its `{`), to be overwritten by `write_text_to` for every message.
pub const TEXT_FIELD: &str =
    "\"rclg\":\"0000000000000000000000000000000000000000000000000000000000000000\"";

/// What a receiver learns from one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Identifies the loadgen process that sent it.
    pub run_id: u32,
    /// Publisher index within that process.
    pub publisher: u32,
    /// Per-publisher sequence number, from 0, never skipped.
    pub seq: u64,
    /// When the open-loop schedule wanted it sent (monotonic ns): the latency origin.
    pub intended_ns: u64,
    /// When the publisher actually wrote it (monotonic ns): origin of uncorrected latency.
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp into the first `STAMP_LEN` bytes of `payload`; `None` when too short.
    pub fn write_to(&self, payload: &mut [u8]) -> Option<()> {
        let out = payload.get_mut(..STAMP_LEN)?;
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.run_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.publisher.to_le_bytes());
        out[12..16].copy_from_slice(&0u32.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.intended_ns.to_le_bytes());
        out[32..40].copy_from_slice(&self.sent_ns.to_le_bytes());
        Some(())
    }

    /// Writes the stamp into the hex digits of `TEXT_FIELD` at the start of a text payload
    /// (after its `{`); `None` when `payload` does not start that way.
    pub fn write_text_to(&self, payload: &mut [u8]) -> Option<()> {
        if !payload.starts_with(TEXT_START) {
            return None;
        }
        let digits = payload.get_mut(TEXT_START.len()..TEXT_START.len() + TEXT_DIGITS)?;
        let mut at = 0;
        let fields = [
            (u64::from(self.run_id), 8),
            (u64::from(self.publisher), 8),
            (self.seq, 16),
            (self.intended_ns, 16),
            (self.sent_ns, 16),
        ];
        for (value, width) in fields {
            for i in 0..width {
                let nibble = (value >> (4 * (width - 1 - i))) & 0xF;
                digits[at] = b"0123456789abcdef"[nibble as usize];
                at += 1;
            }
        }
        Some(())
    }

    /// Reads a stamp from the start of `payload`, binary or text; `None` when it is not a
    /// loadgen payload.
    pub fn read_from(payload: &[u8]) -> Option<Stamp> {
        if payload.starts_with(TEXT_START) {
            return Stamp::read_text(payload);
        }
        let bytes = payload.get(..STAMP_LEN)?;
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        if u32_at(0) != MAGIC {
            return None;
        }
        Some(Stamp {
            run_id: u32_at(4),
            publisher: u32_at(8),
            seq: u64_at(16),
            intended_ns: u64_at(24),
            sent_ns: u64_at(32),
        })
    }

    /// Reads the text stamp `write_text_to` writes.
    fn read_text(payload: &[u8]) -> Option<Stamp> {
        let digits = payload.get(TEXT_START.len()..TEXT_START.len() + TEXT_DIGITS + 1)?;
        if digits[TEXT_DIGITS] != b'"' {
            return None;
        }
        let mut at = 0;
        let mut field = |width: usize| {
            let text = std::str::from_utf8(&digits[at..at + width]).ok()?;
            at += width;
            u64::from_str_radix(text, 16).ok()
        };
        Some(Stamp {
            run_id: u32::try_from(field(8)?).ok()?,
            publisher: u32::try_from(field(8)?).ok()?,
            seq: field(16)?,
            intended_ns: field(16)?,
            sent_ns: field(16)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_a_padded_payload() {
        let stamp = Stamp {
            run_id: 0xdead_beef,
            publisher: 7,
            seq: u64::MAX - 3,
            intended_ns: 123_456_789_012,
            sent_ns: 123_456_789_999,
        };
        let mut payload = vec![0xAAu8; 64];
        stamp.write_to(&mut payload).expect("64 bytes hold a stamp");
        assert_eq!(Stamp::read_from(&payload), Some(stamp));
        assert_eq!(payload[STAMP_LEN..], [0xAA; 64 - STAMP_LEN]);
    }

    #[test]
    fn the_text_stamp_round_trips_and_stays_text() {
        let stamp = Stamp {
            run_id: 0xdead_beef,
            publisher: 7,
            seq: u64::MAX - 3,
            intended_ns: 123_456_789_012,
            sent_ns: 123_456_789_999,
        };
        let mut payload = format!("{{{TEXT_FIELD},\"text\":\"hi\"}}").into_bytes();
        assert_eq!(Stamp::read_from(&payload).map(|s| s.seq), Some(0));
        stamp.write_text_to(&mut payload).expect("a text payload");
        assert_eq!(Stamp::read_from(&payload), Some(stamp));
        let text = String::from_utf8(payload).expect("still text");
        assert!(text.ends_with("\",\"text\":\"hi\"}"), "{text}");
        assert_eq!(stamp.write_text_to(&mut b"{\"text\":1}".to_vec()), None);
        // A digit that is not hex, or a value cut short: not a stamp.
        assert_eq!(
            Stamp::read_from(&text.replacen("dead", "deaz", 1).into_bytes()),
            None
        );
        assert_eq!(Stamp::read_from(&text.as_bytes()[..60]), None);
    }

    #[test]
    fn short_or_foreign_payloads_are_not_stamps() {
        assert_eq!(Stamp::read_from(b"hello"), None);
        assert_eq!(Stamp::read_from(&[0u8; 64]), None);
        let mut short = [0u8; STAMP_LEN - 1];
        let stamp = Stamp {
            run_id: 1,
            publisher: 0,
            seq: 0,
            intended_ns: 0,
            sent_ns: 0,
        };
        assert_eq!(stamp.write_to(&mut short), None);
    }
}
