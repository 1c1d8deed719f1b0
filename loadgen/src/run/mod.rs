//! `loadgen run`: the phases of a run on the main thread, the live line, the CPU and memory
//! probe.

mod driver;
mod live;
mod per_second;
mod phases;
mod probe;
mod results;

pub use driver::{run, RunOutput};
