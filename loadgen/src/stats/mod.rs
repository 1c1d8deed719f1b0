//! What workers record: histograms and counters, per second and for the measured window.

mod nodes;
mod totals;

pub use nodes::{expected_by_class, ClassTotals, Classifier, NodeTotals};
pub use totals::{add_histogram, new_histogram, IntervalStats, RunTotals, WorkerStats};
