//! Command line: `loadgen run | compare | merge`. Doc comments are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::units::{parse_churn, parse_duration, parse_size, Churn};
use crate::client::PayloadKind;

/// Exit codes, documented here and in REPORT.md.
pub const EXIT_CODES_HELP: &str =
    "Exit codes: 0 ok; 99 a threshold (or compare --fail-if-worse) failed; \
2 usage or configuration error (including a failed preflight); 3 invalid run (connections failed, \
publishers fell behind: send-lag p99 over --max-send-lag, or nothing measured; when no connection \
succeeds - all refused, or none up within --connect-timeout - the run stops at once); 1 other error.";

/// Coordinated-omission-safe WebSocket broadcast load generator.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a load test against one or more chat-room WebSocket servers.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(Box<RunOpt>),
    /// Compare two reports or two directories of repeated runs, scenario by scenario.
    #[command(after_help = EXIT_CODES_HELP)]
    Compare(CompareOpt),
    /// Merge the reports of several loadgen processes of one run (histograms added).
    Merge(MergeOpt),
}

/// Options of `loadgen run`.
///
/// Every connection (subscriber or publisher) receives and records latency; publisher i
/// also sends, in room i mod K. Subscriber j is in room j mod K.
#[derive(Args, Debug, Clone)]
pub struct RunOpt {
    /// Server URL, ws://host:port/path or wss://host:port/path (TLS: see --tls-ca); repeat to spread clients over several servers
    /// (connection i uses URL i mod U; the report then tells same-node deliveries, publisher
    /// and receiver on one URL, from cross-node ones). With --rooms K > 1, `-{k}` is appended
    /// to the last path segment, or `{room}` is replaced.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Receive-only connections.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Connections that also send; 0 just holds the connections open for the duration.
    #[arg(long, default_value_t = 1)]
    pub publishers: u64,
    /// Messages per second per publisher (open-loop schedule). Publisher i of P sends
    /// message k at t0 + (k + i/P) / rate: the publishers' phases are staggered evenly over
    /// one period, so many slow publishers make a steady stream, not a burst every period.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Payload size (64, 16KiB); at least the 40-byte stamp (128 bytes with --payload json).
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// What publishers send: `padded`, the binary stamp padded with dots in a binary frame;
    /// `json`, chat-like JSON text in a text frame (user names, ISO timestamps, message ids,
    /// words of a fixed vocabulary, the stamp as its first field), as compressible as chat
    /// (permessage-deflate at level 6: about 2x at 1 KiB, 3x at 16 KiB), the same text in every
    /// run.
    #[arg(long, value_enum, default_value_t = PayloadKind::Padded)]
    pub payload: PayloadKind,
    /// Offer permessage-deflate (RFC 7692) with no context takeover either way: received
    /// messages with RSV1 are inflated before their stamp is read, publishers compress messages
    /// of 256 bytes or more. A server that declines is run plain; the report counts how many
    /// connections negotiated and the wire bytes per delivery (frames, headers included) beside
    /// the payload bytes: compression ratio = payload / wire.
    #[arg(long)]
    pub deflate: bool,
    /// Length of the measured window (10, 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sending before the measured window, once all connections are up.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Directory for report.json, latency.hlog, latency.hgrm, timeline.csv.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pass/fail rule, e.g. 'p99<5ms', 'lost==0' (repeatable; exit 99 when one fails).
    /// Metrics: p50 p90 p99 p999 p9999 max mean (latency), send_lag_p99 send_lag_max,
    /// connect_p99 connect_tcp_p99 tls_handshake_p99 upgrade_p99, lost duplicated reordered (or out_of_order) delivery_rate sent delivered
    /// expected delivered_per_sec connect_failed loadgen_cpu_percent server_cpu_us_per_delivery
    /// wire_bytes_per_delivery compression_ratio;
    /// with --churn or --recover: left reconnect_failed recovered reset first_replay_p50
    /// first_replay_p99 first_replay_max; with several --url:
    /// same_node_ and cross_node_ + p50 p90 p99 p999 max delivered lost.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Number of rooms clients are spread over.
    #[arg(long, default_value_t = 1)]
    pub rooms: u64,
    /// New connections per second during the ramp; 0 = unlimited.
    #[arg(long = "connect-rate", default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Deadline for TCP connect plus TLS handshake (wss://) plus WebSocket upgrade, per
    /// connection.
    #[arg(long = "connect-timeout", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Receiving worker threads: the subscribers, and the read side of every publisher's
    /// socket (each runs its own tokio epoll runtime); default: available cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Worker threads that connect the publishers and send on them; what their sockets
    /// receive is read by the receiving workers, so receive load cannot delay a send. Send times come from a separate pacer
    /// thread (precise to tens of microseconds, unlike tokio's 1 ms timer).
    #[arg(long = "publisher-threads", default_value_t = 1)]
    pub publisher_threads: usize,
    /// PEM file of the CA that signed the wss:// servers' certificates: the only CA trusted
    /// (loadgen uses no system root store). Every connection makes a full handshake (no
    /// session resumption), as distinct clients do.
    #[arg(long = "tls-ca", value_name = "FILE", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any certificate from wss:// servers (handshake signatures are still checked);
    /// the report says so in a WARNING line and in `scenario.tls_insecure`.
    #[arg(long = "tls-insecure")]
    pub tls_insecure: bool,
    /// Local source addresses, round robin: 127.0.0.1-127.0.0.8 or a comma list.
    #[arg(long)]
    pub src: Option<String>,
    /// Time to wait for in-flight messages after the last send.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Share of subscribers (percent) that stop reading after the warm-up (slow consumers);
    /// they are left out of `expected` and reported on their own.
    #[arg(long, default_value_t = 0.0)]
    pub stalled: f64,
    /// PID of a server on this host: its CPU and memory are sampled from /proc. Repeatable (or
    /// a comma list) for a cluster on this host (nodes, broker): the report sums them.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// A send-lag p99 above this marks the run invalid (publishers fell behind).
    #[arg(long = "max-send-lag", default_value = "5ms", value_parser = parse_duration)]
    pub max_send_lag: Duration,
    /// Subscriber churn, EVERY:DOWNTIME (15s:2s): each subscriber, at its own random phase in
    /// [0, EVERY) from the start of the measured window, disconnects every EVERY, stays away
    /// DOWNTIME and reconnects (with several --url, to the next one). Publishers stay. A
    /// subscriber leaves only when it is back before the window ends. Messages sent while it
    /// is away still count as expected: without recovery they are `lost`.
    #[arg(long, value_name = "EVERY:DOWNTIME", value_parser = parse_churn)]
    pub churn: Option<Churn>,
    /// Subscribers ask ringcast for their position (`?since=`) and reconnect with
    /// `?since=EPOCH:OFFSET` of the last message they got; the server's first message (position,
    /// recovered or reset) is counted. A server without recovery sends no such message: counted
    /// as `none`, the stream read as usual.
    #[arg(long)]
    pub recover: bool,
    /// No live lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Options of `loadgen compare`.
#[derive(Args, Debug)]
pub struct CompareOpt {
    /// Baseline: a report.json or a directory searched recursively for report.json files.
    pub base: PathBuf,
    /// Candidate: same forms as BASE.
    pub new: PathBuf,
    /// Exit 99 when a metric got worse by more than PCT percent, beyond the runs' noise.
    #[arg(long = "fail-if-worse")]
    pub fail_if_worse: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Put every run of a side into one table even when the sides hold different scenarios
    /// (without it, runs are matched by scenario directory name, one table per scenario, and
    /// sides with different scenarios are refused with exit 2).
    #[arg(long)]
    pub pool: bool,
}

/// Output formats of `compare`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Text,
    /// A Markdown table for release notes.
    Markdown,
}

/// Options of `loadgen merge`.
#[derive(Args, Debug)]
pub struct MergeOpt {
    /// Directory for the merged report.json, latency.hgrm, latency.hlog and timeline.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// report.json files or directories holding them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}
