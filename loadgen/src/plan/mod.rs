//! What to run: the command line, its validation into a `Scenario`, the `--threshold` rules.

pub mod cli;
pub mod scenario;
pub mod threshold;
pub mod units;
