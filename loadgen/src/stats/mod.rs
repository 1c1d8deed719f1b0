//! What workers record: histograms and counters, per second and for the measured window; the
//! sequences each receiver got (sequence.rs), from which loss is counted at the end.

mod histogram;
mod interval;
mod nodes;
mod sequence;
mod totals;

pub use histogram::{add_histogram, new_histogram};
pub use interval::IntervalStats;
pub use nodes::{expected_by_class, ClassTotals, Classifier, NodeTotals};
pub use sequence::{Arrival, SequenceSet};
pub use totals::{ChurnTotals, ReceivedSets, RunTotals, WorkerStats};
