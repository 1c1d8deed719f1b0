//! `loadgen run`: the phases of a run on the main thread, the live line, the CPU and memory
//! probe.

pub mod driver;
pub mod live;
pub mod probe;

pub use driver::{run, RunOutput};
