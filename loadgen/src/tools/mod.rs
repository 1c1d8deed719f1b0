//! Working with reports after the runs: `loadgen compare` and `loadgen merge`.

pub mod compare;
pub mod merge;
