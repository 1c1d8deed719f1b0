//! The server's counters: every core's [`CoreMetrics`], the broker links' [`BrokerStats`], and
//! their Prometheus text exposition (`GET /metrics`, `prometheus.rs`).
//!
//! Each core owns one cache-line-aligned [`CoreMetrics`] and only that core writes it (relaxed
//! atomics, no contention); any core can read all of them to answer a scrape. Counters are
//! bumped per message received and per `writev`, never per delivery; the histograms
//! (`histogram.rs`) take one sample per message fanned out and per completed write, into
//! buckets of the core's own.

mod broker;
mod histogram;
mod process;
mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use broker::{BrokerLink, BrokerStats, DropReason};
pub use histogram::{Log2Counts, Log2Histogram};
pub use prometheus::{render, CONTENT_TYPE};

/// Fan-out time buckets: 1 µs to 65.5 ms, doubling (plus +Inf).
const FANOUT_BUCKETS: usize = 18;
/// Frames-per-write buckets: 1 to 1024 (IOV_MAX), doubling (plus +Inf).
const WRITE_BUCKETS: usize = 12;
/// The unit of a fan-out sample: nanoseconds, bucketed in microseconds.
const NANOS_PER_MICRO: u64 = 1_000;
/// One message in this many is timed for `ringcast_fanout_seconds` (per core, the first one
/// included): reading the clock twice per message doubled the cost of a one-member fan-out.
pub const FANOUT_SAMPLE_EVERY: u32 = 8;

/// Frames per write of one batch of writes.
pub type WriteSizes = Log2Counts<WRITE_BUCKETS, 1>;

/// Counters of one core.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CoreMetrics {
    /// Open WebSocket connections (gauge).
    pub connections: AtomicU64,
    /// Rooms with at least one local subscriber (gauge).
    pub rooms: AtomicU64,
    /// Data messages received from clients.
    pub messages_in: AtomicU64,
    /// Payload bytes of those messages.
    pub bytes_in: AtomicU64,
    /// Frames fully written to sockets (data and control).
    pub frames_written: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Write submissions (one `write` or `writev` per batch); frames_written / writev_calls
    /// is the batching factor.
    pub writev_calls: AtomicU64,
    /// Connections closed with 1008 because their backlog exceeded --max-backlog.
    pub slow_consumer_closes: AtomicU64,
    /// Connections closed because they stayed silent past --idle-timeout.
    pub idle_closes: AtomicU64,
    /// Connections closed because no write made progress for --write-timeout (WebSocket: with
    /// 1008; HTTP phase: closed without an answer).
    pub write_timeout_closes: AtomicU64,
    /// Connections closed with 1008 for sending over --max-inbound-rate.
    pub rate_limit_closes: AtomicU64,
    /// Connections refused at accept (429) for --max-connections-per-ip.
    pub connections_refused_per_ip: AtomicU64,
    /// Times a publisher's reads were paused because the fan-out budget was exhausted.
    pub publish_pauses: AtomicU64,
    /// Receives the kernel ended because the core's receive buffers were all taken (io_uring
    /// backend; each was armed again).
    pub recv_buffers_exhausted: AtomicU64,
    /// Publishers closed with 1013: heavy ones while the held bytes passed twice the fan-out
    /// budget, any after a pause of --publish-timeout.
    pub overload_closes: AtomicU64,
    /// Bytes charged to outbound budgets (queued and in flight, handles included) at the last
    /// keepalive sweep (gauge).
    pub queued_bytes: AtomicU64,
    /// Bytes the rooms homed on this core keep for recovery, counted at what they hold (gauge).
    pub history_bytes: AtomicU64,
    /// Messages the rooms homed on this core keep for recovery (gauge).
    pub history_messages: AtomicU64,
    /// Clients that asked for their position or missed messages, by [`RecoveryOutcome`].
    pub recoveries: [AtomicU64; RecoveryOutcome::ALL.len()],
    /// Messages replayed to recovering clients.
    pub replayed_messages: AtomicU64,
    /// Messages compressed once on this core (as the home core of their room), counted by
    /// their plain frame's bytes...
    pub deflate_out_plain_bytes: AtomicU64,
    /// ...and by their compressed frame's bytes.
    pub deflate_out_compressed_bytes: AtomicU64,
    /// Deliveries of compressed frames (each one of the frames above, queued for a client).
    pub deflate_deliveries: AtomicU64,
    /// Compressed payload bytes clients sent...
    pub deflate_in_compressed_bytes: AtomicU64,
    /// ...and what they inflated to.
    pub deflate_in_inflated_bytes: AtomicU64,
    /// Time to compress one message, in nanoseconds (one compression in
    /// [`FANOUT_SAMPLE_EVERY`]).
    pub deflate_nanos: Log2Histogram<FANOUT_BUCKETS, NANOS_PER_MICRO>,
    /// Time to queue one message for this core's subscribers of its room, in nanoseconds (one
    /// message in [`FANOUT_SAMPLE_EVERY`]).
    pub fanout_nanos: Log2Histogram<FANOUT_BUCKETS, NANOS_PER_MICRO>,
    /// Frames carried by each completed write.
    pub frames_per_write: Log2Histogram<WRITE_BUCKETS, 1>,
    /// WebSocket upgrades by JWT outcome, indexed by [`AuthOutcome`].
    pub auth: [AtomicU64; AuthOutcome::ALL.len()],
    /// `POST /publish` requests by outcome, indexed by [`PublishOutcome`].
    pub http_publish: [AtomicU64; PublishOutcome::ALL.len()],
    /// Payload bytes published through `POST /publish`.
    pub http_publish_bytes: AtomicU64,
}

impl CoreMetrics {
    /// Adds `value` to a counter owned by this core.
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Subtracts `value` from a gauge owned by this core.
    pub fn sub(counter: &AtomicU64, value: u64) {
        counter.fetch_sub(value, Ordering::Relaxed);
    }

    /// Adds the frames per write of one batch of completed writes (`flush::WriteTally`, both
    /// backends), once per batch like the other write counters.
    pub fn record_writes(&self, batch: &WriteSizes) {
        self.frames_per_write.add(batch);
    }

    /// Records the time one message took to reach this core's subscriber queues.
    pub fn record_fanout(&self, took: Duration) {
        self.fanout_nanos
            .record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records the time one message took to compress.
    pub fn record_deflate(&self, took: Duration) {
        self.deflate_nanos
            .record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Counts one message compressed once: its plain and compressed frame lengths.
    pub fn count_compressed(&self, plain: usize, compressed: usize) {
        CoreMetrics::add(&self.deflate_out_plain_bytes, plain as u64);
        CoreMetrics::add(&self.deflate_out_compressed_bytes, compressed as u64);
    }

    /// Counts one compressed message a client sent: its payload and what it inflated to.
    pub fn count_inflated(&self, compressed: usize, inflated: usize) {
        CoreMetrics::add(&self.deflate_in_compressed_bytes, compressed as u64);
        CoreMetrics::add(&self.deflate_in_inflated_bytes, inflated as u64);
    }

    /// Counts one JWT check at the upgrade.
    pub fn count_auth(&self, outcome: AuthOutcome) {
        CoreMetrics::add(&self.auth[outcome as usize], 1);
    }

    /// Counts one client told `outcome` first.
    pub fn count_recovery(&self, outcome: RecoveryOutcome) {
        CoreMetrics::add(&self.recoveries[outcome as usize], 1);
    }

    /// Counts one `POST /publish` request (and its payload when it was published).
    pub fn count_publish(&self, outcome: PublishOutcome, payload_bytes: usize) {
        CoreMetrics::add(&self.http_publish[outcome as usize], 1);
        CoreMetrics::add(&self.http_publish_bytes, payload_bytes as u64);
    }
}

/// What a JWT check at the upgrade decided (`ringcast_auth_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A valid token for the room.
    Accepted,
    /// No token, or a malformed, expired or badly signed one (401).
    Unauthorized,
    /// A valid token without the room in its `rooms` claim (403).
    Forbidden,
}

impl AuthOutcome {
    /// Every outcome, in index order.
    pub const ALL: [AuthOutcome; 3] = [
        AuthOutcome::Accepted,
        AuthOutcome::Unauthorized,
        AuthOutcome::Forbidden,
    ];

    /// The `result` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            AuthOutcome::Accepted => "accepted",
            AuthOutcome::Unauthorized => "unauthorized",
            AuthOutcome::Forbidden => "forbidden",
        }
    }
}

/// What a client that asked `?since=` or `?history=` was told first
/// (`ringcast_recoveries_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// `?since=` with no position: told the room's position.
    Position,
    /// The missed (or asked for) messages are replayed.
    Recovered,
    /// The position asked for is gone (another epoch, older than the history, in the future).
    Reset,
}

impl RecoveryOutcome {
    /// Every outcome, in index order.
    pub const ALL: [RecoveryOutcome; 3] = [
        RecoveryOutcome::Position,
        RecoveryOutcome::Recovered,
        RecoveryOutcome::Reset,
    ];

    /// The `result` label, also the first message's `ringcast` field.
    pub fn label(self) -> &'static str {
        match self {
            RecoveryOutcome::Position => "position",
            RecoveryOutcome::Recovered => "recovered",
            RecoveryOutcome::Reset => "reset",
        }
    }
}

/// What a `POST /publish` request got (`ringcast_http_publish_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Published (2xx).
    Published,
    /// Missing or wrong token (401).
    Unauthorized,
    /// Not POST, a bad room name, invalid UTF-8 in a text body, or a body cut short (4xx).
    BadRequest,
    /// Body over `--max-message` (413).
    TooLarge,
    /// Body not received within `--header-timeout` (408).
    Timeout,
    /// Fan-out budget exhausted (503).
    Overloaded,
}

impl PublishOutcome {
    /// Every outcome, in index order.
    pub const ALL: [PublishOutcome; 6] = [
        PublishOutcome::Published,
        PublishOutcome::Unauthorized,
        PublishOutcome::BadRequest,
        PublishOutcome::TooLarge,
        PublishOutcome::Timeout,
        PublishOutcome::Overloaded,
    ];

    /// The `result` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            PublishOutcome::Published => "published",
            PublishOutcome::Unauthorized => "unauthorized",
            PublishOutcome::BadRequest => "bad_request",
            PublishOutcome::TooLarge => "too_large",
            PublishOutcome::Timeout => "timeout",
            PublishOutcome::Overloaded => "overloaded",
        }
    }
}
