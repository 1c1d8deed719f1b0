//! The histograms every figure is recorded in: nanoseconds, 3 significant digits, one shape
//! everywhere, so any two of them can be added (worker into run, process into merged report).

use hdrhistogram::Histogram;

/// Highest latency the histograms resolve (100 s); larger values are clamped, not dropped.
pub const HIGHEST_TRACKABLE_NS: u64 = 100_000_000_000;

/// A histogram of nanoseconds, 3 significant digits (as wrk2 and HdrHistogram's tools use).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_NS, 3)
        .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
}

/// Adds `source` into `target`; both come from `new_histogram`, so bounds always agree.
pub fn add_histogram(target: &mut Histogram<u64>, source: &Histogram<u64>) {
    if target.add(source).is_err() {
        // Only reachable with foreign bounds (merge of external files): fall back to values.
        for value in source.iter_recorded() {
            target.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }
}
