//! report.json: the versioned, documented result schema (loadgen/REPORT.md), plus the other
//! output files, each in its own module.

pub mod csv;
pub mod hgrm;
pub mod hlog;
pub mod summary;

mod metrics;
mod server;

pub use metrics::{check_threshold, check_thresholds, metric, recheck_thresholds};
pub use server::{ProcessResults, ServerResults};

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::Scenario;

/// Value of the top-level `schema` field; bump on incompatible changes.
pub const SCHEMA: &str = "ringcast-loadgen/report/v1";

/// The whole report.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Schema id, `ringcast-loadgen/report/v1`.
    pub schema: String,
    /// Every option of the run.
    pub scenario: Scenario,
    /// Where it ran.
    pub environment: Environment,
    /// What was measured.
    pub results: Results,
}

/// Machine and build the run used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    /// loadgen's crate version.
    pub loadgen_version: String,
    /// Git commit loadgen was built from, when known.
    pub git_commit: Option<String>,
    /// Kernel release (uname -r).
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cores: usize,
    /// Host name.
    pub hostname: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Number of loadgen reports merged into this one (1 for a single process).
    pub processes: u64,
}

/// Percentile summary of one histogram, nanoseconds. Every field but `count` is null for an
/// empty histogram (undefined, not 0).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct HistogramSummary {
    /// Median.
    pub p50: Option<u64>,
    /// 90th percentile.
    pub p90: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
    /// 99.9th percentile.
    pub p999: Option<u64>,
    /// 99.99th percentile.
    pub p9999: Option<u64>,
    /// Largest value.
    pub max: Option<u64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Values recorded.
    pub count: u64,
}

impl HistogramSummary {
    /// Summarises `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> HistogramSummary {
        if histogram.is_empty() {
            return HistogramSummary::default();
        }
        HistogramSummary {
            p50: Some(histogram.value_at_quantile(0.5)),
            p90: Some(histogram.value_at_quantile(0.9)),
            p99: Some(histogram.value_at_quantile(0.99)),
            p999: Some(histogram.value_at_quantile(0.999)),
            p9999: Some(histogram.value_at_quantile(0.9999)),
            max: Some(histogram.max()),
            mean: Some(histogram.mean()),
            count: histogram.len(),
        }
    }
}

/// Connection outcomes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ConnectionResults {
    /// Connections attempted.
    pub target: u64,
    /// Handshakes completed.
    pub ok: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by reason: refused, timeout, status_NNN, addr_exhausted, other.
    pub failures: BTreeMap<String, u64>,
    /// Connections that ended before the run did (server close, reset).
    pub disconnected: u64,
}

/// The slow-consumer share (`--stalled`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StalledResults {
    /// Stalled subscribers that connected.
    pub connections: u64,
    /// Of those, how many the server closed (close code other than 1000, or EOF).
    pub closed_by_server: u64,
}

/// loadgen's own CPU use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LoadgenCpu {
    /// User CPU seconds over the whole run.
    pub user_s: f64,
    /// System CPU seconds over the whole run.
    pub system_s: f64,
    /// Mean CPU use during the measured window, percent of one core; null when the run had
    /// no window (aborted).
    pub window_percent: Option<f64>,
    /// Busiest whole second inside the measured window, percent of one core (the window's
    /// mean when it is shorter than a second); null without a window.
    pub max_second_percent: Option<f64>,
}

/// Per publisher accounting, only for publishers that lost messages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublisherLoss {
    /// Publisher id.
    pub publisher: u32,
    /// Deliveries expected from it.
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
}

/// One `--url` and the connections it got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UrlConnections {
    /// The URL as given.
    pub url: String,
    /// Connections assigned to it (connection i uses URL i mod the number of URLs).
    pub target: u64,
    /// Of those, the publishers.
    pub publishers: u64,
    /// Handshakes completed.
    pub ok: u64,
}

/// The measured deliveries of one node class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct NodeClassResults {
    /// Measured messages times the connected, non-stalled receivers of their room in this
    /// class (on the publisher's URL for same-node, on the other URLs for cross-node).
    pub expected: u64,
    /// Measured messages delivered (first copies at non-stalled receivers) in this class.
    pub delivered: u64,
    /// expected - delivered.
    pub lost: u64,
    /// recv - intended send time of those deliveries.
    pub latency_ns: HistogramSummary,
}

/// Several `--url`s (nodes sharing rooms): connections per URL, and the measured deliveries
/// split by whether publisher and receiver used the same URL. Absent with one URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct NodeResults {
    /// Each URL's connections, in `--url` order.
    pub urls: Vec<UrlConnections>,
    /// Publisher and receiver on the same URL.
    pub same_node: NodeClassResults,
    /// Publisher and receiver on different URLs.
    pub cross_node: NodeClassResults,
}

/// How often each kind of first message came (`--recover`): the server's answer to `since=`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct FirstMessageCounts {
    /// `position`: live from the given offset (a first connection's answer).
    pub position: u64,
    /// `recovered`: what was missed followed.
    pub recovered: u64,
    /// `reset`: the position asked for was gone; nothing replayed.
    pub reset: u64,
    /// No first message: the stream began with data (a server without recovery).
    pub none: u64,
    /// A `{"ringcast":...}` first message that broke the contract.
    pub malformed: u64,
}

/// Subscribers leaving and coming back (`--churn`) and the server's answers (`--recover`).
/// Absent without both options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ChurnResults {
    /// Departures: connections subscribers closed on their churn schedule.
    pub left: u64,
    /// Reconnects that completed the handshake.
    pub reconnected: u64,
    /// Reconnects that failed (the subscriber tried again a downtime later).
    pub reconnect_failed: u64,
    /// Those failures by reason: refused, timeout, status_NNN, addr_exhausted, other.
    pub reconnect_failures: BTreeMap<String, u64>,
    /// First messages by kind, over every connection of the subscribers (`--recover`; all 0
    /// without it).
    pub first_messages: FirstMessageCounts,
    /// The first malformed first message, if one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_example: Option<String>,
    /// After a `recovered`: the reconnect's TCP connect start to the arrival of the first
    /// replayed message (the first one sent before that connect began).
    pub first_replay_ns: HistogramSummary,
}

/// What deliveries took on the wire against their payloads: the cost permessage-deflate
/// (`--deflate`) saves, and plain framing's overhead without it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WireResults {
    /// Whether the run offered permessage-deflate.
    pub deflate_offered: bool,
    /// Connections whose server accepted it (first connections; 0 without the offer).
    pub deflate_connections: u64,
    /// Payload bytes of the measured deliveries (inflated when they came compressed).
    pub payload_bytes: u64,
    /// What the same deliveries took on the wire: their frames, headers included.
    pub wire_bytes: u64,
    /// wire_bytes / delivered; null with nothing delivered.
    pub wire_bytes_per_delivery: Option<f64>,
    /// payload_bytes / wire_bytes, the compression ratio (just under 1 uncompressed: the frame
    /// headers); null with nothing delivered.
    pub compression_ratio: Option<f64>,
}

impl WireResults {
    /// The section from its counts, the ratios derived (also after a merge added the counts).
    pub fn of(
        deflate_offered: bool,
        deflate_connections: u64,
        payload_bytes: u64,
        wire_bytes: u64,
        delivered: u64,
    ) -> WireResults {
        WireResults {
            deflate_offered,
            deflate_connections,
            payload_bytes,
            wire_bytes,
            wire_bytes_per_delivery: (delivered > 0).then(|| wire_bytes as f64 / delivered as f64),
            compression_ratio: (wire_bytes > 0).then(|| payload_bytes as f64 / wire_bytes as f64),
        }
    }
}

/// Name in `Results::histograms` of `ChurnResults::first_replay_ns` (with the churn section).
pub const FIRST_REPLAY_HISTOGRAM: &str = "first_replay";

/// Names in `Results::histograms` of the connect steps: TCP connect, TLS handshake (empty
/// without `wss://`), WebSocket upgrade.
pub const CONNECT_STEP_HISTOGRAMS: [&str; 3] = ["connect_tcp", "connect_tls", "connect_upgrade"];

/// The connect time of `Results::connect_ns` step by step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ConnectStepResults {
    /// TCP connect.
    pub tcp_ns: HistogramSummary,
    /// TLS handshake; absent (not written) without a `wss://` connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_ns: Option<HistogramSummary>,
    /// WebSocket upgrade: request out, response head in.
    pub upgrade_ns: HistogramSummary,
}

impl ConnectStepResults {
    /// From the step histograms, in `CONNECT_STEP_HISTOGRAMS` order.
    pub fn of([tcp, tls, upgrade]: [&Histogram<u64>; 3]) -> ConnectStepResults {
        ConnectStepResults {
            tcp_ns: HistogramSummary::of(tcp),
            tls_handshake_ns: (!tls.is_empty()).then(|| HistogramSummary::of(tls)),
            upgrade_ns: HistogramSummary::of(upgrade),
        }
    }
}

/// Names in `Results::histograms` of the same-node and cross-node latency (several URLs only).
pub const NODE_HISTOGRAMS: [&str; 2] = ["latency_same_node", "latency_cross_node"];

/// Outcome of one `--threshold`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdOutcome {
    /// The expression.
    pub expression: String,
    /// The metric's value in the run; null when the run did not measure it (then the
    /// threshold failed as "not measured").
    pub actual: Option<f64>,
    /// Whether it held.
    pub passed: bool,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// False when connections failed, publishers fell behind, or nothing was measured.
    pub valid: bool,
    /// Why the run is not valid.
    pub invalid_reasons: Vec<String>,
    /// Connection outcomes.
    pub connections: ConnectionResults,
    /// Messages sent (warm-up included).
    pub sent: u64,
    /// Messages sent in the measured window.
    pub sent_measured: u64,
    /// Sum over measured messages of the non-stalled receivers in their room.
    pub expected: u64,
    /// Measured messages delivered (first copies at non-stalled receivers).
    pub delivered: u64,
    /// Expected deliveries never received: per receiver and publisher, the measured sequences
    /// it did not get (counted from what it got, so delivered + lost = expected checks it).
    pub lost: u64,
    /// Extra copies of measured messages (a message received three times counts two).
    pub duplicated: u64,
    /// Measured messages received after a later one of the same publisher (out of order).
    pub reordered: u64,
    /// delivered / expected; null with nothing expected (and in reports made before it).
    #[serde(default)]
    pub delivery_rate: Option<f64>,
    /// Frames without this run's stamp.
    pub foreign: u64,
    /// delivered / measured window seconds.
    pub delivered_per_sec: f64,
    /// Payload megabytes (1e6) per second delivered in the window.
    pub delivered_mb_per_sec: f64,
    /// Length of the measured window, seconds.
    pub measured_seconds: f64,
    /// recv - intended send time (coordinated-omission safe).
    pub latency_ns: HistogramSummary,
    /// recv - actual send time (hides publisher lateness; for comparison only).
    pub latency_uncorrected_ns: HistogramSummary,
    /// Connect + handshake time.
    pub connect_ns: HistogramSummary,
    /// The same step by step: TCP connect, TLS handshake, upgrade; absent in reports made
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_steps: Option<ConnectStepResults>,
    /// actual send - intended send time.
    pub send_lag_ns: HistogramSummary,
    /// Slow-consumer share.
    pub stalled: StalledResults,
    /// Malformed server frames and failed writes.
    pub protocol_errors: u64,
    /// Publishers with losses.
    pub publishers_with_loss: Vec<PublisherLoss>,
    /// loadgen's own CPU.
    pub loadgen_cpu: LoadgenCpu,
    /// Server process figures (with --server-pid). In a merged report: the one server every
    /// part watched (same host and pid; CPU per delivery over all deliveries), else null.
    pub server: Option<ServerResults>,
    /// Merged reports only: each process's own server figures, in input order (null for a
    /// process without --server-pid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Option<ServerResults>>,
    /// With several `--url`s: per-URL connections, same-node and cross-node deliveries and
    /// latency; absent (not written) with one URL and in reports made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeResults>,
    /// With `--churn` or `--recover`: departures, reconnects, first messages, time to the first
    /// replayed message; absent (not written) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnResults>,
    /// Wire bytes against payload bytes of the measured deliveries, and how many connections
    /// negotiated permessage-deflate; absent in reports made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<WireResults>,
    /// Threshold outcomes.
    pub thresholds: Vec<ThresholdOutcome>,
    /// Histograms as base64 of HdrHistogram's compressed V2 encoding (`HISTFAAA...`, as in
    /// .hlog files): latency, latency_uncorrected, connect (and its steps,
    /// `CONNECT_STEP_HISTOGRAMS`), send_lag; with several URLs also
    /// latency_same_node and latency_cross_node (`NODE_HISTOGRAMS`); with the churn section
    /// also first_replay.
    pub histograms: BTreeMap<String, String>,
}

/// Encodes a histogram as base64 of compressed V2 (DEFLATE), the form every HdrHistogram
/// implementation decodes (Java's `decodeFromCompressedByteBuffer`, Python's `decode`).
pub fn encode_histogram(histogram: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|e| anyhow::anyhow!("serialising histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes `encode_histogram`'s output (and the uncompressed V2 of older reports).
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .context("histogram is not base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram is not HdrHistogram V2: {e:?}"))
}

impl Report {
    /// Reads a report.json, checking the schema.
    pub fn read(path: &Path) -> anyhow::Result<Report> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: Report =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            report.schema == SCHEMA,
            "{}: schema `{}` is not {SCHEMA}",
            path.display(),
            report.schema
        );
        Ok(report)
    }

    /// Writes report.json into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join("report.json"), text + "\n")
            .with_context(|| format!("writing {}/report.json", dir.display()))
    }

    /// The named histogram, decoded.
    pub fn histogram(&self, name: &str) -> anyhow::Result<Histogram<u64>> {
        let text = self
            .results
            .histograms
            .get(name)
            .with_context(|| format!("report has no `{name}` histogram"))?;
        decode_histogram(text)
    }
}

/// Reads the environment of this host.
pub fn environment() -> Environment {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    Environment {
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: option_env!("LOADGEN_GIT_COMMIT")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        kernel: read("/proc/sys/kernel/osrelease"),
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        hostname: read("/proc/sys/kernel/hostname"),
        // Millisecond precision: a value with at most 15 digits reads back from JSON as the
        // exact same f64 (a nanosecond one sometimes came back one ulp off).
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1e3),
        processes: 1,
    }
}
