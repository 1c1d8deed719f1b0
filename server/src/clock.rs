//! A core's coarse clock: set by the keepalive sweep on every tick (at most 250 ms apart) and
//! read wherever a connection is stamped (inbound traffic, write progress, inbound rates), so
//! no clock is read per read or per write.

use std::cell::Cell;
use std::time::Instant;

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
