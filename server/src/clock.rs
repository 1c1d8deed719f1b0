//! A core's coarse clock: set by the keepalive sweep on every tick (at most 250 ms apart) and
//! read wherever a connection is stamped (inbound traffic, write progress, inbound rates), so
//! no clock is read per read or per write. Also [`deadline_after`], the one way a deadline is
//! made from a configured duration.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A deadline nothing waits for: 30 years, as tokio's timer uses for "never".
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The deadline `wait` after `now`. `Instant + Duration` panics when the sum does not fit:
/// the command line bounds every duration (`config::MAX_DURATION`), and this keeps a value
/// that escaped the bound (a `Config` built in code) from taking a core down: such a deadline
/// is [`FAR_FUTURE`] away, which a monotonic clock counted from boot always holds.
pub fn deadline_after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).unwrap_or_else(|| now + FAR_FUTURE)
}

/// The time as of the core's last sweep tick.
#[derive(Debug)]
pub struct CoarseClock(Cell<Instant>);

impl CoarseClock {
    /// A clock set to now.
    pub fn new() -> Self {
        CoarseClock(Cell::new(Instant::now()))
    }

    /// The time of the last tick.
    pub fn now(&self) -> Instant {
        self.0.get()
    }

    /// Sets the time (the sweep, once per tick).
    pub fn set(&self, now: Instant) {
        self.0.set(now);
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        CoarseClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_past_what_an_instant_holds_are_far_away_not_a_panic() {
        let now = Instant::now();
        let wait = Duration::from_secs(5);
        assert_eq!(deadline_after(now, wait), now + wait);
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
    }
}
