//! A core's coarse clock: set by the keepalive sweep on every tick (at most 250 ms apart) and
//! read wherever a connection is stamped (inbound traffic, write progress, inbound rates), so
//! no clock is read per read or per write. Also [`deadline_after`], the one way a deadline is
//! made from a configured duration, and [`Stamp`], an instant as a connection keeps it.

use std::cell::Cell;
use std::num::NonZeroU64;
use std::sync::OnceLock;
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

/// An instant in 8 bytes (an `Instant` takes 16, and 16 more in an `Option`), for the clocks
/// every connection keeps: nanoseconds from a process-wide epoch, so exact, within 292 years of
/// it either way (further is clamped). Stored offset by 2^63, which keeps the order and leaves
/// 0 free for `Option<Stamp>`'s None.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(NonZeroU64);

/// What stamps count from: the first instant stamped or read in the process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Stamp {
    /// `at`, stamped.
    pub fn of(at: Instant) -> Self {
        let epoch = epoch();
        let nanos = |since: Duration| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
        let offset = match at.checked_duration_since(epoch) {
            Some(after) => nanos(after),
            // i64::MIN would be 0 once offset: clamped one nanosecond short of it.
            None => -nanos(epoch.duration_since(at)),
        };
        let biased = (offset as u64) ^ (1 << 63);
        Stamp(NonZeroU64::new(biased).unwrap_or(NonZeroU64::MIN))
    }

    /// The instant stamped.
    pub fn instant(self) -> Instant {
        let offset = (self.0.get() ^ (1 << 63)) as i64;
        let distance = Duration::from_nanos(offset.unsigned_abs());
        if offset >= 0 {
            deadline_after(epoch(), distance)
        } else {
            // Only an instant the clock held can be stamped, so it can be taken back.
            epoch().checked_sub(distance).unwrap_or(epoch())
        }
    }
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

    #[test]
    fn stamps_are_exact_and_ordered_before_and_after_the_epoch() {
        let before = Instant::now();
        let epoch = epoch();
        let later = deadline_after(epoch, FAR_FUTURE);
        for at in [before, epoch, epoch + Duration::from_nanos(1), later] {
            assert_eq!(Stamp::of(at).instant(), at);
        }
        assert!(Stamp::of(before) <= Stamp::of(epoch));
        assert!(Stamp::of(epoch) < Stamp::of(epoch + Duration::from_nanos(1)));
        assert!(Stamp::of(epoch) < Stamp::of(later));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}
