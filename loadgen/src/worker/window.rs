//! The run's timing as the workers see it: set once every connection attempt has finished, it
//! starts the publishers' schedule and bounds the measured window.

use super::schedule::Schedule;
use crate::plan::Scenario;

/// The timing of the run, published once every connection attempt has finished.
#[derive(Debug, Clone)]
pub struct Window {
    /// Publishers' schedule origin: all connections up (monotonic ns).
    pub t0_ns: u64,
    /// Start of the measured window (t0 + warm-up).
    pub measure_start_ns: u64,
    /// End of the measured window; publishers send nothing due at or after it.
    pub measure_end_ns: u64,
}

impl Window {
    /// Whether a message intended at `ns` belongs to the measured window.
    pub fn measures(&self, ns: u64) -> bool {
        (self.measure_start_ns..self.measure_end_ns).contains(&ns)
    }

    /// The publishers' send schedule in this window.
    pub fn schedule(&self, scenario: &Scenario) -> Schedule {
        Schedule {
            t0_ns: self.t0_ns,
            end_ns: self.measure_end_ns,
            rate: scenario.rate,
            publishers: scenario.publishers,
        }
    }
}
