//! loadgen: a coordinated-omission-safe load generator for WebSocket broadcast (chat-room)
//! servers. Map of the components, in the order a run flows through them:
//!
//! - `cli`, `units`, `scenario`: options -> validated `Scenario` (+ `threshold` rules)
//! - `connect`, `handshake`: sockets from a source-address pool, preflight, RFC 6455 upgrade
//! - `worker`: one tokio epoll runtime per thread owning its connections and stats
//! - `publisher` (open-loop `schedule`, woken on time by the `pacer` thread, `payload` stamps,
//!   `writer` masking with `ringcast-proto`)
//! - `receiver` (64 KiB reads, frames parsed and reassembled with `ringcast-proto`, `sequence`
//!   loss/dup/reorder, `stats`); a publisher's socket is read by a receiving worker, not by
//!   its publisher thread
//! - `run`: phases, live line (`live`), `probe` of server and own CPU, `report` outputs
//! - `nodes`: with several `--url`s, same-node and cross-node deliveries told apart
//! - `compare`, `merge`: working with reports afterwards

mod client;
mod clock;
mod plan;
pub mod report;
mod run;
mod stats;
mod tools;
mod worker;

pub use client::{preflight, raise_fd_limit};
pub use plan::{Cli, Command, CompareOpt, Format, MergeOpt, Plan, RunOpt, Scenario, Threshold};
pub use run::{run, RunOutput};
pub use stats::new_histogram;
pub use tools::{compare, merge};

/// Internals the benchmarks drive directly, outside any run: a receiver's accounting of one
/// message and the once-a-second handoff. Not an interface to build on.
#[doc(hidden)]
pub mod testing {
    pub use crate::client::{Stamp, STAMP_LEN};
    pub use crate::plan::ConnectionSpec;
    pub use crate::stats::{IntervalStats, RunTotals, WorkerStats};
    pub use crate::worker::{Receiver, Window};
}
