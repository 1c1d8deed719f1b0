//! The Prometheus text exposition (format 0.0.4) of every counter: one series per core, the
//! per-core histograms merged, the fan-out budget, the process's resources, the broker links
//! and the build.
//!
//! The hot path never touches prometheus-client: a scrape builds a registry whose one
//! [`Collector`] reads the atomics and the process's `/proc` entries and encodes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::process::{
    process_cpu_seconds, process_max_fds, process_open_fds, process_resident_bytes,
};
use super::{
    AuthOutcome, BrokerLink, BrokerStats, CoreMetrics, DropReason, Log2Counts, PublishOutcome,
    RecoveryOutcome,
};
use crate::budget::FanoutBudget;
use crate::tls::TlsAcceptor;

/// `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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
        help: "Connections closed after no write progress for --write-timeout (WebSocket: close 1008; HTTP phase: closed).",
        read: |m| &m.write_timeout_closes,
    },
    MetricSpec {
        name: "ringcast_rate_limit_closes_total",
        kind: MetricType::Counter,
        help: "Connections closed with 1008 for exceeding --max-inbound-rate.",
        read: |m| &m.rate_limit_closes,
    },
    MetricSpec {
        name: "ringcast_connections_refused_per_ip_total",
        kind: MetricType::Counter,
        help: "Connections refused at accept with 429: --max-connections-per-ip from their address were open.",
        read: |m| &m.connections_refused_per_ip,
    },
    MetricSpec {
        name: "ringcast_publish_pauses_total",
        kind: MetricType::Counter,
        help: "Times a publisher was not read because the fan-out budget was exhausted.",
        read: |m| &m.publish_pauses,
    },
    MetricSpec {
        name: "ringcast_recv_buffers_exhausted_total",
        kind: MetricType::Counter,
        help: "Receives ended by the kernel because every receive buffer of the core was taken (io_uring); each was armed again.",
        read: |m| &m.recv_buffers_exhausted,
    },
    MetricSpec {
        name: "ringcast_overload_closes_total",
        kind: MetricType::Counter,
        help: "Publishers closed with 1013: heavy ones at twice the fan-out budget, any after waiting --publish-timeout.",
        read: |m| &m.overload_closes,
    },
    MetricSpec {
        name: "ringcast_history_bytes",
        kind: MetricType::Gauge,
        help: "Bytes the rooms keep for recovery (--history-budget), counted at what they hold.",
        read: |m| &m.history_bytes,
    },
    MetricSpec {
        name: "ringcast_history_messages",
        kind: MetricType::Gauge,
        help: "Messages the rooms keep for recovery.",
        read: |m| &m.history_messages,
    },
    MetricSpec {
        name: "ringcast_replayed_messages_total",
        kind: MetricType::Counter,
        help: "Messages replayed to recovering clients.",
        read: |m| &m.replayed_messages,
    },
    MetricSpec {
        name: "ringcast_deflate_out_plain_bytes_total",
        kind: MetricType::Counter,
        help: "permessage-deflate: plain frame bytes of the messages compressed (once each, by the room's home core).",
        read: |m| &m.deflate_out_plain_bytes,
    },
    MetricSpec {
        name: "ringcast_deflate_out_compressed_bytes_total",
        kind: MetricType::Counter,
        help: "permessage-deflate: compressed frame bytes of those messages.",
        read: |m| &m.deflate_out_compressed_bytes,
    },
    MetricSpec {
        name: "ringcast_deflate_deliveries_total",
        kind: MetricType::Counter,
        help: "permessage-deflate: deliveries of compressed frames to clients.",
        read: |m| &m.deflate_deliveries,
    },
    MetricSpec {
        name: "ringcast_deflate_in_compressed_bytes_total",
        kind: MetricType::Counter,
        help: "permessage-deflate: compressed payload bytes received from clients.",
        read: |m| &m.deflate_in_compressed_bytes,
    },
    MetricSpec {
        name: "ringcast_deflate_in_inflated_bytes_total",
        kind: MetricType::Counter,
        help: "permessage-deflate: what those payloads inflated to.",
        read: |m| &m.deflate_in_inflated_bytes,
    },
    MetricSpec {
        name: "ringcast_queued_bytes",
        kind: MetricType::Gauge,
        help: "Bytes charged to outbound budgets (queued and in-flight frames with handles) at the last keepalive sweep.",
        read: |m| &m.queued_bytes,
    },
];

/// Renders every core's counters in the Prometheus text format (one series per core), the
/// merged histograms, the fan-out budget, the process's resources, the broker links (with
/// `--broker`) and the build (`backend`: the IO backend's name).
pub fn render(
    cores: &[Arc<CoreMetrics>],
    budget: &Arc<FanoutBudget>,
    backend: &'static str,
    broker: Option<&Arc<BrokerStats>>,
    tls: Option<&Arc<TlsAcceptor>>,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        cores: cores.to_vec(),
        budget: Arc::clone(budget),
        backend,
        broker: broker.cloned(),
        tls: tls.cloned(),
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
    cores: Vec<Arc<CoreMetrics>>,
    /// The fan-out budget's accounting.
    budget: Arc<FanoutBudget>,
    /// `ringcast_build_info`'s backend label.
    backend: &'static str,
    /// The broker links' counters, with `--broker`.
    broker: Option<Arc<BrokerStats>>,
    /// The served certificate and the handshake counters, with `--tls-cert`.
    tls: Option<Arc<TlsAcceptor>>,
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
                "ringcast_recoveries",
                "Clients that asked ?since= or ?history=, by what they were told first (position, recovered, reset).",
                RecoveryOutcome::ALL.map(RecoveryOutcome::label).to_vec(),
                |m, i| &m.recoveries[i],
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
        Log2Counts::merged(self.cores.iter().map(|m| &m.fanout_nanos)).encode(
            &mut encoder,
            "ringcast_fanout_seconds",
            "Time to queue one message for a core's subscribers of its room (one message in 8 per core is timed).",
            1e9,
        )?;
        Log2Counts::merged(self.cores.iter().map(|m| &m.deflate_nanos)).encode(
            &mut encoder,
            "ringcast_deflate_seconds",
            "permessage-deflate: time to compress one message once (one compression in 8 per core is timed).",
            1e9,
        )?;
        Log2Counts::merged(self.cores.iter().map(|m| &m.frames_per_write)).encode(
            &mut encoder,
            "ringcast_frames_per_write",
            "Frames carried by each completed write (writev batching).",
            1.0,
        )?;
        let budget_gauges = [
            (
                "ringcast_fanout_bytes",
                "Bytes held for delivery: live broadcast frames, queued frame handles, mail between cores.",
                self.budget.used(),
            ),
            (
                "ringcast_fanout_budget_bytes",
                "--fanout-budget: above it publishers are not read.",
                self.budget.limit(),
            ),
        ];
        for (name, help, value) in budget_gauges {
            let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        encode_process(&mut encoder)?;
        if let Some(broker) = &self.broker {
            encode_broker(&mut encoder, broker)?;
        }
        if let Some(tls) = &self.tls {
            encode_tls(&mut encoder, tls)?;
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
    ];
    for (name, kind, help, value) in series {
        encode_value(
            encoder.encode_descriptor(name, help, None, kind)?,
            kind,
            value,
        )?;
    }
    let mut family = encoder.encode_descriptor(
        "ringcast_broker_reconnects",
        "Reconnections of a broker link after it failed, by link (each link fails and reconnects on its own).",
        None,
        MetricType::Counter,
    )?;
    for link in BrokerLink::ALL {
        let labels = [("link", link.label())];
        let value = read(&stats.reconnects[link as usize]);
        encode_value(family.encode_family(&labels)?, MetricType::Counter, value)?;
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

/// The `ringcast_tls_*` series (only with `--tls-cert`).
fn encode_tls(encoder: &mut DescriptorEncoder, tls: &TlsAcceptor) -> Result<(), std::fmt::Error> {
    ConstGauge::new(tls.store().not_after()).encode(encoder.encode_descriptor(
        "ringcast_tls_cert_expiry_seconds",
        "notAfter of the certificate served to new handshakes, in seconds since the Unix epoch (alert on it minus time()).",
        None,
        MetricType::Gauge,
    )?)?;
    let mut family = encoder.encode_descriptor(
        "ringcast_tls_handshakes",
        "TLS handshakes by how they ended: ok, failed (bad or unacceptable client TLS), incomplete (the connection ended first: timeout or client gone).",
        None,
        MetricType::Counter,
    )?;
    let counters = tls.handshakes();
    for (result, counter) in [
        ("ok", &counters.ok),
        ("failed", &counters.failed),
        ("incomplete", &counters.incomplete),
    ] {
        let value = counter.load(Ordering::Relaxed);
        encode_value(
            family.encode_family(&[("result", result)])?,
            MetricType::Counter,
            value,
        )?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::WriteSizes;

    fn render_cores(cores: Vec<CoreMetrics>) -> String {
        let cores: Vec<_> = cores.into_iter().map(Arc::new).collect();
        render(&cores, &FanoutBudget::new(2, 1000), "io_uring", None, None)
    }

    #[test]
    fn exposition_has_one_series_per_core() {
        let cores = vec![CoreMetrics::default(), CoreMetrics::default()];
        CoreMetrics::add(&cores[1].writev_calls, 3);
        cores[0].count_auth(AuthOutcome::Forbidden);
        let text = render_cores(cores);
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
        let text = render_cores(cores);
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
}
