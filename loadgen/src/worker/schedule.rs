//! The open-loop send schedule (wrk2's method: every message's send time is fixed in advance
//! and latency is measured from it), kept free of sockets and clocks so it can be tested alone.
//!
//! Publisher i of P sends message k at `t0 + (k + i/P) / rate`: every publisher keeps its own
//! period of 1/rate, but their phases are spread evenly over one period, so many slow
//! publishers make a steady stream rather than a burst every period.

/// Timing of every publisher of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Origin: every connection attempt has finished (monotonic ns).
    pub t0_ns: u64,
    /// End of the measured window; nothing due at or after it is sent (monotonic ns).
    pub end_ns: u64,
    /// Messages per second per publisher.
    pub rate: f64,
    /// Publishers in the run (P), which sets the phase step 1 / (P * rate).
    pub publishers: u64,
}

impl Schedule {
    /// Intended send time of message `seq` of `publisher`, computed from the origin each time
    /// so rounding never accumulates into drift. `None` once it falls at or past the end.
    pub fn due_ns(&self, publisher: u32, seq: u64) -> Option<u64> {
        let phase = f64::from(publisher) / self.publishers.max(1) as f64;
        let due = self
            .t0_ns
            .saturating_add(((seq as f64 + phase) * 1e9 / self.rate) as u64);
        (due < self.end_ns).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(publishers: u64, rate: f64) -> Schedule {
        Schedule {
            t0_ns: 1_000,
            end_ns: u64::MAX,
            rate,
            publishers,
        }
    }

    #[test]
    fn schedule_is_anchored_at_the_origin() {
        let one = schedule(1, 100.0);
        assert_eq!(one.due_ns(0, 0), Some(1_000));
        assert_eq!(one.due_ns(0, 3), Some(1_000 + 30_000_000));
        // No drift after many messages at a rate with no exact period.
        let three = Schedule {
            t0_ns: 0,
            ..schedule(1, 3.0)
        };
        assert_eq!(three.due_ns(0, 3_000_000), Some(1_000_000_000_000_000));
    }

    #[test]
    fn publishers_are_spread_over_one_period() {
        // 4 publishers at 0.2 msg/s: period 5 s, phases 0, 1.25, 2.5, 3.75 s.
        let chat = schedule(4, 0.2);
        let firsts: Vec<u64> = (0..4).filter_map(|i| chat.due_ns(i, 0)).collect();
        let step = 1_250_000_000;
        assert_eq!(
            firsts,
            vec![1_000, 1_000 + step, 1_000 + 2 * step, 1_000 + 3 * step]
        );
        // Each publisher keeps its own period.
        assert_eq!(chat.due_ns(3, 1), Some(1_000 + 3 * step + 5_000_000_000));
        // Publisher 0 of the next period comes one step after the last publisher.
        assert_eq!(chat.due_ns(0, 1), Some(1_000 + 4 * step));
    }

    #[test]
    fn nothing_is_due_past_the_end() {
        let short = Schedule {
            end_ns: 1_000 + 20_000_000,
            ..schedule(2, 100.0)
        };
        assert_eq!(short.due_ns(1, 1), Some(1_000 + 15_000_000));
        assert_eq!(short.due_ns(0, 2), None);
    }
}
