//! Inbound rates of one connection, kept in its reading state (`connection.rs`) and read
//! against the core's coarse clock (no allocation, no clock read per message):
//! - [`InboundRate`], `--max-inbound-rate`: a token bucket over the data messages it sends,
//!   holding at most one second's worth (the burst) and refilling continuously; a message that
//!   finds it empty closes the connection with 1008;
//! - [`FairShare`]: what the messages it published in the last second cost the fan-out budget
//!   (each one's frame with its allocations, and a handle per subscriber of its core: an empty
//!   message is not free), against a fair share: over it, the connection is a heavy publisher,
//!   the first to be paused when the fan-out budget is exhausted (`budget.rs`).

use std::time::{Duration, Instant};

use crate::clock::Stamp;

/// Bytes per second of fan-out cost a connection may publish and still count as light: far
/// above what a chat client or a backend feeding a room sends (20 messages a second to 50
/// subscribers cost ~16 KB/s), far below a flood (6,000 empty messages a second cost ~1 MB/s).
pub const FAIR_SHARE_BYTES_PER_SECOND: u64 = 1 << 20;
/// The window over which published bytes are counted.
const SHARE_WINDOW: Duration = Duration::from_secs(1);

/// Fan-out cost of what one connection published in the current one-second window.
#[derive(Debug)]
pub struct FairShare {
    /// Start of the current window.
    window_start: Stamp,
    /// Cost published since then (plus half of the window before).
    bytes: u64,
}

impl FairShare {
    /// Nothing published yet.
    pub fn new(now: Instant) -> Self {
        FairShare {
            window_start: Stamp::of(now),
            bytes: 0,
        }
    }

    /// Counts a message published at `now` that costs the fan-out budget `bytes`.
    pub fn published(&mut self, bytes: usize, now: Instant) {
        if now.saturating_duration_since(self.window_start.instant()) >= SHARE_WINDOW {
            // A new window starts with half of the last one's count, so a flooder does not
            // become light for a moment each second.
            self.window_start = Stamp::of(now);
            self.bytes /= 2;
        }
        self.bytes += bytes as u64;
    }

    /// True when the connection publishes over its fair share.
    pub fn is_heavy(&self) -> bool {
        self.bytes > FAIR_SHARE_BYTES_PER_SECOND
    }
}

/// Token bucket of one connection.
#[derive(Debug)]
pub struct InboundRate {
    /// Messages per second allowed (and the burst size).
    rate: f64,
    /// Messages that may be sent now.
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
}

impl InboundRate {
    /// A full bucket allowing `rate` messages per second.
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate);
        InboundRate {
            rate,
            tokens: rate,
            refilled: now,
        }
    }

    /// Takes one message at `now`; false when the connection is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooder_is_heavy_a_chat_client_is_not() {
        let start = Instant::now();
        let mut chat = FairShare::new(start);
        let mut flood = FairShare::new(start);
        for tick in 0..1000u64 {
            let now = start + Duration::from_millis(tick * 10);
            chat.published(200, now);
            for _ in 0..100 {
                flood.published(1024, now);
            }
        }
        assert!(!chat.is_heavy(), "20 KB/s");
        assert!(flood.is_heavy(), "10 MB/s");
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let start = Instant::now();
        let mut bucket = InboundRate::new(10, start);
        assert!((0..10).all(|_| bucket.allow(start)));
        assert!(!bucket.allow(start), "the 11th message of the same instant");
        let later = start + Duration::from_millis(250);
        assert!(bucket.allow(later) && bucket.allow(later));
        assert!(!bucket.allow(later), "250 ms refill 2.5 messages");
        let much_later = start + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.allow(much_later)).count(), 10);
    }
}
