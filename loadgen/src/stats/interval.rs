//! What happened in one second. Each worker records its own figures without a lock and hands
//! them over once a second into the run's shared accumulator: the live line, timeline.csv and
//! latency.hlog.

use hdrhistogram::Histogram;

use super::histogram::{add_histogram, new_histogram};

/// What happened in one second, over every message (warm-up and drain included): the live
/// line, timeline.csv and latency.hlog.
#[derive(Clone)]
pub struct IntervalStats {
    /// recv - intended, ns.
    pub latency: Histogram<u64>,
    /// recv - intended of the measured messages only (those `RunTotals::latency` holds), ns:
    /// the untagged series of latency.hlog.
    pub latency_measured: Histogram<u64>,
    /// recv - actual send, ns.
    pub latency_uncorrected: Histogram<u64>,
    /// actual send - intended, ns.
    pub send_lag: Histogram<u64>,
    /// Messages sent.
    pub sent: u64,
    /// Messages received (stamped by this run, duplicates excluded).
    pub delivered: u64,
    /// Payload bytes of `delivered`.
    pub delivered_bytes: u64,
    /// Connect failures, disconnects, protocol and write errors.
    pub errors: u64,
}

impl IntervalStats {
    /// Empty figures.
    pub fn new() -> IntervalStats {
        IntervalStats {
            latency: new_histogram(),
            latency_measured: new_histogram(),
            latency_uncorrected: new_histogram(),
            send_lag: new_histogram(),
            sent: 0,
            delivered: 0,
            delivered_bytes: 0,
            errors: 0,
        }
    }

    /// Adds another worker's figures and resets them (the once-a-second handoff).
    pub fn drain_from(&mut self, source: &mut IntervalStats) {
        add_histogram(&mut self.latency, &source.latency);
        add_histogram(&mut self.latency_measured, &source.latency_measured);
        add_histogram(&mut self.latency_uncorrected, &source.latency_uncorrected);
        add_histogram(&mut self.send_lag, &source.send_lag);
        self.sent += source.sent;
        self.delivered += source.delivered;
        self.delivered_bytes += source.delivered_bytes;
        self.errors += source.errors;
        source.reset();
    }

    /// Zeroes counters and histograms, keeping the allocations.
    fn reset(&mut self) {
        self.latency.reset();
        self.latency_measured.reset();
        self.latency_uncorrected.reset();
        self.send_lag.reset();
        self.sent = 0;
        self.delivered = 0;
        self.delivered_bytes = 0;
        self.errors = 0;
    }
}

impl Default for IntervalStats {
    fn default() -> Self {
        IntervalStats::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram::HIGHEST_TRACKABLE_NS;

    #[test]
    fn interval_handoff_moves_and_resets() {
        let mut sink = IntervalStats::new();
        let mut worker = IntervalStats::new();
        worker.latency.saturating_record(5_000);
        worker.delivered = 3;
        sink.drain_from(&mut worker);
        assert_eq!((sink.latency.len(), sink.delivered), (1, 3));
        assert_eq!((worker.latency.len(), worker.delivered), (0, 0));
        worker.latency.saturating_record(HIGHEST_TRACKABLE_NS * 10);
        assert_eq!(worker.latency.len(), 1);
    }
}
