//! What workers record: histograms and counters, per second and for the measured window.

pub mod nodes;
pub mod totals;

pub use totals::{add_histogram, new_histogram, IntervalStats, RunTotals, WorkerStats};
