//! Per-core counters and histograms, and their Prometheus text exposition (`GET /metrics`).
//!
//! Each core owns one cache-line-aligned [`CoreMetrics`] and only that core writes it (relaxed
//! atomics, no contention); any core can read all of them to answer a scrape. Counters are
//! bumped per message received and per `writev`, never per delivery; the histograms take one
//! sample per message fanned out and per completed write, into buckets of the core's own.
//!
//! The hot path never touches prometheus-client: a scrape builds a registry whose one
//! [`Collector`] reads every core's atomics and the process's `/proc` entries and encodes them
//! in the Prometheus text format (0.0.4); per-core histograms are merged there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::budget::FanoutMemory;
use crate::fanout::broker::{Broker, BrokerStats, DropReason};

/// `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Fan-out time buckets: 1 µs to 65.5 ms, doubling (plus +Inf).
const FANOUT_BUCKETS: usize = 18;
/// Frames-per-write buckets: 1 to 1024 (IOV_MAX), doubling (plus +Inf).
const WRITE_BUCKETS: usize = 12;
/// The unit of a fan-out sample: nanoseconds, bucketed in microseconds.
const NANOS_PER_MICRO: u64 = 1_000;
/// One message in this many is timed for `ringcast_fanout_seconds` (per core, the first one
/// included): reading the clock twice per message doubled the cost of a one-member fan-out.
pub const FANOUT_SAMPLE_EVERY: u32 = 8;

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
    /// Connections closed with 1008 because no write made progress for --write-timeout.
    pub write_timeout_closes: AtomicU64,
    /// Connections closed with 1008 for sending over --max-inbound-rate.
    pub rate_limit_closes: AtomicU64,
    /// Times a publisher's reads were paused because the fan-out budget was exhausted.
    pub publish_pauses: AtomicU64,
    /// Publishers closed with 1013: heavy ones while the held bytes passed twice the fan-out
    /// budget, any after a pause of --publish-timeout.
    pub overload_closes: AtomicU64,
    /// Bytes charged to outbound budgets (queued and in flight, handles included) at the last
    /// keepalive sweep (gauge).
    pub queued_bytes: AtomicU64,
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

    /// Counts one JWT check at the upgrade.
    pub fn count_auth(&self, outcome: AuthOutcome) {
        CoreMetrics::add(&self.auth[outcome as usize], 1);
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
    fn label(self) -> &'static str {
        match self {
            AuthOutcome::Accepted => "accepted",
            AuthOutcome::Unauthorized => "unauthorized",
            AuthOutcome::Forbidden => "forbidden",
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
    fn label(self) -> &'static str {
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

/// A histogram of one core with `N` buckets: bucket `i < N - 1` counts samples up to
/// `BASE * 2^i` units, the last one the rest (+Inf). Finding the bucket is one leading-zeros
/// count, and only the owning core writes, so a sample is uncontended relaxed stores.
#[derive(Debug)]
pub struct Log2Histogram<const N: usize, const BASE: u64> {
    /// Samples per bucket (not cumulative).
    buckets: [AtomicU64; N],
    /// Sum of the samples, in units.
    sum: AtomicU64,
}

impl<const N: usize, const BASE: u64> Default for Log2Histogram<N, BASE> {
    fn default() -> Self {
        Log2Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize, const BASE: u64> Log2Histogram<N, BASE> {
    /// Adds one sample of `value` units.
    pub fn record(&self, value: u64) {
        bump(&self.buckets[bucket_index::<N, BASE>(value)], 1);
        bump(&self.sum, value);
    }

    /// Adds a batch of samples counted apart.
    pub fn add(&self, batch: &Log2Counts<N, BASE>) {
        for (bucket, &count) in self.buckets.iter().zip(&batch.buckets) {
            if count > 0 {
                bump(bucket, count);
            }
        }
        bump(&self.sum, batch.sum);
    }

    /// Adds this core's buckets (not cumulative) and sum into `merged`.
    fn merge_into(&self, merged: &mut Log2Counts<N, BASE>) {
        for (total, bucket) in merged.buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
        merged.sum = merged.sum.wrapping_add(self.sum.load(Ordering::Relaxed));
    }
}

/// Adds `value` to a counter only its core writes: a load and a store instead of the locked
/// read-modify-write of `fetch_add`.
fn bump(counter: &AtomicU64, value: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(value),
        Ordering::Relaxed,
    );
}

/// The bucket of `value` units: ceil(log2(ceil(value / BASE))), the first whose bound is
/// >= value, or the last (+Inf).
fn bucket_index<const N: usize, const BASE: u64>(value: u64) -> usize {
    let scaled = value.div_ceil(BASE);
    ((u64::BITS - scaled.saturating_sub(1).leading_zeros()) as usize).min(N - 1)
}

/// Plain counts of a [`Log2Histogram`]: one batch of writes before it is added to the core's
/// histogram, or every core's histogram merged at scrape.
#[derive(Debug)]
pub struct Log2Counts<const N: usize, const BASE: u64> {
    /// Samples per bucket (not cumulative).
    buckets: [u64; N],
    /// Sum of the samples, in units.
    sum: u64,
}

/// Frames per write of one batch of writes.
pub type WriteSizes = Log2Counts<WRITE_BUCKETS, 1>;

impl<const N: usize, const BASE: u64> Default for Log2Counts<N, BASE> {
    fn default() -> Self {
        Log2Counts {
            buckets: [0; N],
            sum: 0,
        }
    }
}

impl<const N: usize, const BASE: u64> Log2Counts<N, BASE> {
    /// Adds one sample of `value` units.
    pub fn record(&mut self, value: u64) {
        self.buckets[bucket_index::<N, BASE>(value)] += 1;
        self.sum = self.sum.wrapping_add(value);
    }

    /// Merges `histogram` of every core.
    fn of(cores: &[CoreMetrics], histogram: fn(&CoreMetrics) -> &Log2Histogram<N, BASE>) -> Self {
        let mut merged = Log2Counts::default();
        for core in cores {
            histogram(core).merge_into(&mut merged);
        }
        merged
    }

    /// Encodes it with bucket bounds `BASE * 2^i / per_unit` (`per_unit` converts units to the
    /// metric's unit, e.g. 1e9 nanoseconds to seconds; dividing keeps the bounds' decimal
    /// text exact).
    fn encode(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        per_unit: f64,
    ) -> Result<(), std::fmt::Error> {
        // prometheus-client takes the counts per bucket and writes them cumulated.
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(index, &count)| {
                let bound = if index + 1 == N {
                    f64::INFINITY
                } else {
                    (BASE << index) as f64 / per_unit
                };
                (bound, count)
            })
            .collect();
        let count = self.buckets.iter().sum();
        encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(self.sum as f64 / per_unit, count, &buckets, None)
    }
}

/// One exposed per-core counter or gauge: name, type, help and how to read it from a core.
struct MetricSpec {
    /// Prometheus metric name (counters with their `_total`).
    name: &'static str,
    /// Counter or gauge.
    kind: MetricType,
    /// HELP text.
    help: &'static str,
    /// Reads the value for one core.
    read: fn(&CoreMetrics) -> &AtomicU64,
}

/// Every per-core metric, in exposition order.
const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "ringcast_connections",
        kind: MetricType::Gauge,
        help: "Open WebSocket connections.",
        read: |m| &m.connections,
    },
    MetricSpec {
        name: "ringcast_rooms",
        kind: MetricType::Gauge,
        help: "Rooms with local subscribers.",
        read: |m| &m.rooms,
    },
    MetricSpec {
        name: "ringcast_messages_in_total",
        kind: MetricType::Counter,
        help: "Data messages received from clients.",
        read: |m| &m.messages_in,
    },
    MetricSpec {
        name: "ringcast_bytes_in_total",
        kind: MetricType::Counter,
        help: "Payload bytes received from clients.",
        read: |m| &m.bytes_in,
    },
    MetricSpec {
        name: "ringcast_frames_written_total",
        kind: MetricType::Counter,
        help: "Frames written to clients (messages out, pings, pongs, closes).",
        read: |m| &m.frames_written,
    },
    MetricSpec {
        name: "ringcast_bytes_out_total",
        kind: MetricType::Counter,
        help: "Bytes written to clients.",
        read: |m| &m.bytes_out,
    },
    MetricSpec {
        name: "ringcast_writev_calls_total",
        kind: MetricType::Counter,
        help: "Write submissions, one write/writev per batch (frames_written / writev_calls = frames per writev).",
        read: |m| &m.writev_calls,
    },
    MetricSpec {
        name: "ringcast_slow_consumer_closes_total",
        kind: MetricType::Counter,
        help: "Connections closed with 1008 for exceeding --max-backlog.",
        read: |m| &m.slow_consumer_closes,
    },
    MetricSpec {
        name: "ringcast_idle_closes_total",
        kind: MetricType::Counter,
        help: "Connections closed for silence past --idle-timeout.",
        read: |m| &m.idle_closes,
    },
    MetricSpec {
        name: "ringcast_write_timeout_closes_total",
        kind: MetricType::Counter,
        help: "Connections closed with 1008 after no write progress for --write-timeout.",
        read: |m| &m.write_timeout_closes,
    },
    MetricSpec {
        name: "ringcast_rate_limit_closes_total",
        kind: MetricType::Counter,
        help: "Connections closed with 1008 for exceeding --max-inbound-rate.",
        read: |m| &m.rate_limit_closes,
    },
    MetricSpec {
        name: "ringcast_publish_pauses_total",
        kind: MetricType::Counter,
        help: "Times a publisher was not read because the fan-out budget was exhausted.",
        read: |m| &m.publish_pauses,
    },
    MetricSpec {
        name: "ringcast_overload_closes_total",
        kind: MetricType::Counter,
        help: "Publishers closed with 1013: heavy ones at twice the fan-out budget, any after waiting --publish-timeout.",
        read: |m| &m.overload_closes,
    },
    MetricSpec {
        name: "ringcast_queued_bytes",
        kind: MetricType::Gauge,
        help: "Bytes charged to outbound budgets (queued and in-flight frames with handles) at the last keepalive sweep.",
        read: |m| &m.queued_bytes,
    },
];

/// Renders every core's counters in the Prometheus text format (one series per core), the
/// merged histograms, the process-wide fan-out memory, the process's resources and the build.
pub fn render_prometheus(
    cores: &Arc<[CoreMetrics]>,
    memory: &Arc<FanoutMemory>,
    backend: &'static str,
    broker: Option<&Arc<Broker>>,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        cores: Arc::clone(cores),
        memory: Arc::clone(memory),
        backend,
        broker: broker.cloned(),
    }));
    let mut out = String::with_capacity(METRICS.len() * (120 + 40 * cores.len()) + 4096);
    // Writing into a String cannot fail, and every value here is encodable.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// What one scrape reads.
#[derive(Debug)]
struct Scrape {
    /// Every core's metrics.
    cores: Arc<[CoreMetrics]>,
    /// The fan-out budget's accounting.
    memory: Arc<FanoutMemory>,
    /// `ringcast_build_info`'s backend label.
    backend: &'static str,
    /// The broker's counters, with `--broker`.
    broker: Option<Arc<Broker>>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for spec in METRICS {
            // prometheus-client appends `_total` to a counter's name itself.
            let name = spec.name.strip_suffix("_total").unwrap_or(spec.name);
            let mut family = encoder.encode_descriptor(name, spec.help, None, spec.kind)?;
            for (core, metrics) in self.cores.iter().enumerate() {
                let value = (spec.read)(metrics).load(Ordering::Relaxed);
                let labels = [("core", core.to_string())];
                encode_value(family.encode_family(&labels)?, spec.kind, value)?;
            }
        }
        let labelled = [
            (
                "ringcast_auth",
                "WebSocket upgrades checked for a JWT, by result (accepted, unauthorized 401, forbidden 403).",
                AuthOutcome::ALL.map(AuthOutcome::label).to_vec(),
                (|m, i| &m.auth[i]) as fn(&CoreMetrics, usize) -> &AtomicU64,
            ),
            (
                "ringcast_http_publish",
                "POST /publish requests, by result.",
                PublishOutcome::ALL.map(PublishOutcome::label).to_vec(),
                |m, i| &m.http_publish[i],
            ),
        ];
        for (name, help, results, read) in labelled {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (core, metrics) in self.cores.iter().enumerate() {
                for (index, result) in results.iter().enumerate() {
                    let labels = [("core", core.to_string()), ("result", (*result).to_owned())];
                    let value = read(metrics, index).load(Ordering::Relaxed);
                    encode_value(family.encode_family(&labels)?, MetricType::Counter, value)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "ringcast_http_publish_bytes",
            "Payload bytes published through POST /publish.",
            None,
            MetricType::Counter,
        )?;
        for (core, metrics) in self.cores.iter().enumerate() {
            let value = metrics.http_publish_bytes.load(Ordering::Relaxed);
            let labels = [("core", core.to_string())];
            encode_value(family.encode_family(&labels)?, MetricType::Counter, value)?;
        }
        Log2Counts::of(&self.cores, |m| &m.fanout_nanos).encode(
            &mut encoder,
            "ringcast_fanout_seconds",
            "Time to queue one message for a core's subscribers of its room (one message in 8 per core is timed).",
            1e9,
        )?;
        Log2Counts::of(&self.cores, |m| &m.frames_per_write).encode(
            &mut encoder,
            "ringcast_frames_per_write",
            "Frames carried by each completed write (writev batching).",
            1.0,
        )?;
        let memory_gauges = [
            (
                "ringcast_fanout_bytes",
                "Bytes held for delivery: live broadcast frames, queued frame handles, mail between cores.",
                self.memory.used(),
            ),
            (
                "ringcast_fanout_budget_bytes",
                "--fanout-budget: above it publishers are not read.",
                self.memory.budget(),
            ),
        ];
        for (name, help, value) in memory_gauges {
            let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        encode_process(&mut encoder)?;
        if let Some(broker) = &self.broker {
            encode_broker(&mut encoder, &broker.stats)?;
        }
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "commit",
                option_env!("RINGCAST_GIT_COMMIT").unwrap_or("unknown"),
            ),
            ("backend", self.backend),
        ];
        let mut info = encoder.encode_descriptor(
            "ringcast_build_info",
            "Always 1; the labels say which build runs and on which IO backend.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)
    }
}

/// The `ringcast_broker_*` series (only with `--broker`).
fn encode_broker(
    encoder: &mut DescriptorEncoder,
    stats: &BrokerStats,
) -> Result<(), std::fmt::Error> {
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let series = [
        (
            "ringcast_broker_up",
            MetricType::Gauge,
            "1 while both links to the broker are up (publish connected; subscribe connected and subscribed to every room with local members).",
            u64::from(stats.is_up()),
        ),
        (
            "ringcast_broker_subscriptions",
            MetricType::Gauge,
            "Room channels this node is subscribed to.",
            read(&stats.subscriptions),
        ),
        (
            "ringcast_broker_messages_out",
            MetricType::Counter,
            "Messages of this node's clients published to the broker.",
            read(&stats.published),
        ),
        (
            "ringcast_broker_messages_in",
            MetricType::Counter,
            "Messages of other nodes received from the broker and handed to the cores.",
            read(&stats.received),
        ),
        (
            "ringcast_broker_reconnects",
            MetricType::Counter,
            "Reconnections of a broker link after it failed.",
            read(&stats.reconnects),
        ),
    ];
    for (name, kind, help, value) in series {
        encode_value(
            encoder.encode_descriptor(name, help, None, kind)?,
            kind,
            value,
        )?;
    }
    let mut family = encoder.encode_descriptor(
        "ringcast_broker_dropped",
        "Messages that did not cross the broker: out with the publish link down or --broker-queue full (local clients still got them), in when not a valid envelope.",
        None,
        MetricType::Counter,
    )?;
    for reason in DropReason::ALL {
        let labels = [("reason", reason.label())];
        let value = read(&stats.dropped[reason as usize]);
        encode_value(family.encode_family(&labels)?, MetricType::Counter, value)?;
    }
    Ok(())
}

/// Encodes one sample of a counter or a gauge.
fn encode_value(
    encoder: prometheus_client::encoding::MetricEncoder,
    kind: MetricType,
    value: u64,
) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(encoder),
        _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder),
    }
}

/// The process collector's usual series, read from `/proc/self` at scrape; one that cannot be
/// read (no procfs) is left out.
fn encode_process(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    if let Some(seconds) = process_cpu_seconds() {
        ConstCounter::new(seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)?;
    }
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process_resident_bytes(),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            process_open_fds(),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors (soft RLIMIT_NOFILE).",
            process_max_fds(),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                .encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
    }
    Ok(())
}

/// utime + stime of `/proc/self/stat`, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Resident pages of `/proc/self/statm`, in bytes.
fn process_resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// Entries of `/proc/self/fd`, less the one listing them.
fn process_open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some((entries as u64).saturating_sub(1))
}

/// The soft RLIMIT_NOFILE.
fn process_max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(cores: Vec<CoreMetrics>) -> String {
        render_prometheus(
            &Arc::from(cores),
            &FanoutMemory::new(2, 1000),
            "io_uring",
            None,
        )
    }

    #[test]
    fn exposition_has_one_series_per_core() {
        let cores = vec![CoreMetrics::default(), CoreMetrics::default()];
        CoreMetrics::add(&cores[1].writev_calls, 3);
        cores[0].count_auth(AuthOutcome::Forbidden);
        let text = render(cores);
        assert!(text.contains("# TYPE ringcast_writev_calls_total counter"));
        assert!(text.contains("ringcast_writev_calls_total{core=\"0\"} 0"));
        assert!(text.contains("ringcast_writev_calls_total{core=\"1\"} 3"));
        assert!(text.contains("ringcast_slow_consumer_closes_total{core=\"1\"} 0"));
        assert!(text.contains("# TYPE ringcast_connections gauge"));
        assert!(text.contains("\nringcast_fanout_budget_bytes 1000\n"));
        assert!(text.contains("ringcast_auth_total{core=\"0\",result=\"forbidden\"} 1"));
        assert!(text.contains("ringcast_build_info{version=\""));
        assert!(text.contains("backend=\"io_uring\"} 1"));
    }

    #[test]
    fn histograms_bucket_by_powers_of_two_and_merge_cores() {
        let cores = vec![CoreMetrics::default(), CoreMetrics::default()];
        let mut batch = WriteSizes::default();
        for frames in [0, 1, 2, 3, 4, 5, 1024, 1025] {
            batch.record(frames);
        }
        cores[0].record_writes(&batch);
        let mut other = WriteSizes::default();
        other.record(2);
        cores[1].record_writes(&other);
        cores[1].record_fanout(Duration::from_nanos(1500));
        cores[1].record_fanout(Duration::from_secs(1));
        let text = render(cores);
        for line in [
            "ringcast_frames_per_write_bucket{le=\"1\"} 2",
            "ringcast_frames_per_write_bucket{le=\"2\"} 4",
            "ringcast_frames_per_write_bucket{le=\"4\"} 6",
            "ringcast_frames_per_write_bucket{le=\"8\"} 7",
            "ringcast_frames_per_write_bucket{le=\"1024\"} 8",
            "ringcast_frames_per_write_bucket{le=\"+Inf\"} 9",
            "ringcast_frames_per_write_count 9",
            "ringcast_frames_per_write_sum 2066.0",
            "ringcast_fanout_seconds_bucket{le=\"1e-06\"} 0",
            "ringcast_fanout_seconds_bucket{le=\"2e-06\"} 1",
            "ringcast_fanout_seconds_bucket{le=\"0.065536\"} 1",
            "ringcast_fanout_seconds_bucket{le=\"+Inf\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn process_metrics_are_read() {
        assert!(process_cpu_seconds().is_some());
        assert!(process_resident_bytes().unwrap() > 0);
        assert!(process_open_fds().unwrap() >= 3);
    }
}
