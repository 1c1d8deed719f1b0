//! `loadgen run` on the main thread: the workers started and stopped, the phases walked
//! second by second (live line, CPU and memory probe), the results made from their totals.

mod driver;
mod live;
mod per_second;
mod phases;
mod probe;
mod results;

pub use driver::{run, RunOutput};
