//! What to run: the command line, its validation into a `Scenario`, the `--threshold` rules.

mod cli;
mod connections;
mod scenario;
mod threshold;
mod units;

pub use cli::{Cli, Command, CompareOpt, Format, MergeOpt, RunOpt};
pub use connections::{url_of_connection, url_of_publisher, ConnectionSpec};
pub use scenario::{Plan, Scenario};
pub use threshold::{is_time, Threshold, METRICS};
pub use units::format_ns;
