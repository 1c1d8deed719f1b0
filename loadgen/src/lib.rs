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

pub mod client;
pub mod clock;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod tools;
pub mod worker;

// The paths the binary, the examples, the tests and the benchmarks use.
pub use client::{connect, handshake, stamp, writer};
pub use plan::{cli, scenario, threshold, units};
pub use run::{live, probe};
pub use stats::nodes;
pub use tools::{compare, merge};
pub use worker::{pacer, publisher, receiver, schedule, sequence};
