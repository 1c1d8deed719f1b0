//! What workers record: histograms and counters, per second and for the measured window.

mod histogram;
mod interval;
mod nodes;
mod totals;

pub use histogram::{add_histogram, new_histogram};
pub use interval::IntervalStats;
pub use nodes::{expected_by_class, ClassTotals, Classifier, NodeTotals};
pub use totals::{RunTotals, WorkerStats};
