//! `--max-inbound-rate`: a token bucket per connection over the data messages it sends.
//!
//! The bucket holds at most one second's worth of messages (the burst) and refills
//! continuously; a message that finds it empty closes the connection with 1008. It lives in the
//! reader task's locals and is read against the core's coarse clock, so it costs no allocation
//! and no clock read per message.

use std::time::Instant;

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
    use std::time::Duration;

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
