//! loadgen: a coordinated-omission-safe load generator for WebSocket broadcast (chat-room)
//! servers. Where things are, in the order a run flows through them:
//!
//! ```text
//! plan/     command line -> checked Scenario (what report.json records) and Plan
//!           (+ resolved targets, --threshold rules); which connection is what
//!           (role, room, URL: connections.rs)
//! client/   the preflight main.rs runs; then per connection: target, socket, RFC 6455
//!           upgrade (failure.rs classifies), masked frames out (writer.rs), server frames
//!           in (frames.rs), the stamp every payload starts with (stamp.rs) and the payloads
//!           (payload.rs), permessage-deflate (deflate.rs), the since= query and the
//!           server's first message (position.rs)
//! run/      the main thread: start the workers, walk the phases second by second
//!           (phases.rs: connect, warm-up, measure, drain; per_second.rs, live.rs, probe.rs)
//! worker/   one current-thread tokio runtime per thread (thread.rs, context.rs):
//!           connections in a ramp (connection.rs); publishers hand their socket to a
//!           receiving worker (handover.rs) and send on the open-loop schedule, woken by
//!           the pacer thread (publisher.rs, schedule.rs, pacer.rs, window.rs); receivers
//!           walk frames into accounting (receive_loop.rs, receiver.rs); subscribers leave
//!           and come back under --churn (churn.rs, connection.rs)
//! stats/    what workers record without locks: per second (interval.rs, handed over once
//!           a second) and for the measured window (totals.rs, nodes.rs, sequence.rs: the
//!           sequences each receiver got, from which loss is counted)
//! run/      once the workers stopped, their totals -> results: expected deliveries,
//!           validity, thresholds (results.rs)
//! report/   report.json (mod.rs), metric values and thresholds judged (metrics.rs), the
//!           other files (csv.rs, hgrm.rs, hlog.rs) and the printed summary (summary.rs)
//! tools/    afterwards: compare.rs, merge.rs
//! clock.rs  CLOCK_MONOTONIC ns, the clock of every stamp
//! ```
//!
//! Imports run one way: clock <- client <- plan <- stats <- worker <- report <- run <- tools
//! (a folder names only those to its left; `scripts/import_cycles.py` checks it). Why it is
//! built this way (coordinated omission, the pacer, the handover of publishers' sockets):
//! `docs/ARCHITECTURE.md`, "The load generator".

mod client;
mod clock;
mod plan;
pub mod report;
mod run;
mod stats;
mod tools;
mod worker;

// What the binary, the example and the integration tests use.
pub use client::{preflight, raise_fd_limit};
pub use plan::{Cli, Command, CompareOpt, Format, MergeOpt, Plan, RunOpt, Scenario, Threshold};
pub use run::{run, RunOutput};
pub use stats::new_histogram;
pub use tools::{compare, merge};

/// Internals the benchmarks and tests drive directly, outside any run: a receiver's accounting
/// of one message, the once-a-second handoff, permessage-deflate's negotiation and inflate, the
/// payloads. Not an interface to build on.
#[doc(hidden)]
pub mod testing {
    pub use crate::client::{
        accepted, Inflater, PayloadKind, Payloads, Stamp, Upgraded, MIN_JSON_SIZE, OFFER, STAMP_LEN,
    };
    pub use crate::plan::ConnectionSpec;
    pub use crate::stats::{IntervalStats, RunTotals, WorkerStats};
    pub use crate::worker::{Receiver, Window};
}
