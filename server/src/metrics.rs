//! Per-core counters and their Prometheus text exposition (`GET /metrics`).
//!
//! Each core owns one cache-line-aligned [`CoreMetrics`] and only that core writes it (relaxed
//! atomics, no contention); any core can read all of them to answer a scrape. Counters are
//! bumped per message received and per `writev`, never per delivery.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::memory::FanoutMemory;

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
}

/// One exposed metric: name, type, help and how to read it from a core.
struct MetricSpec {
    /// Prometheus metric name.
    name: &'static str,
    /// "counter" or "gauge".
    kind: &'static str,
    /// HELP text.
    help: &'static str,
    /// Reads the value for one core.
    read: fn(&CoreMetrics) -> &AtomicU64,
}

/// Every metric, in exposition order.
const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "ringcast_connections",
        kind: "gauge",
        help: "Open WebSocket connections.",
        read: |m| &m.connections,
    },
    MetricSpec {
        name: "ringcast_rooms",
        kind: "gauge",
        help: "Rooms with local subscribers.",
        read: |m| &m.rooms,
    },
    MetricSpec {
        name: "ringcast_messages_in_total",
        kind: "counter",
        help: "Data messages received from clients.",
        read: |m| &m.messages_in,
    },
    MetricSpec {
        name: "ringcast_bytes_in_total",
        kind: "counter",
        help: "Payload bytes received from clients.",
        read: |m| &m.bytes_in,
    },
    MetricSpec {
        name: "ringcast_frames_written_total",
        kind: "counter",
        help: "Frames written to clients (messages out, pings, pongs, closes).",
        read: |m| &m.frames_written,
    },
    MetricSpec {
        name: "ringcast_bytes_out_total",
        kind: "counter",
        help: "Bytes written to clients.",
        read: |m| &m.bytes_out,
    },
    MetricSpec {
        name: "ringcast_writev_calls_total",
        kind: "counter",
        help: "Write submissions, one write/writev per batch (frames_written / writev_calls = frames per writev).",
        read: |m| &m.writev_calls,
    },
    MetricSpec {
        name: "ringcast_slow_consumer_closes_total",
        kind: "counter",
        help: "Connections closed with 1008 for exceeding --max-backlog.",
        read: |m| &m.slow_consumer_closes,
    },
    MetricSpec {
        name: "ringcast_idle_closes_total",
        kind: "counter",
        help: "Connections closed for silence past --idle-timeout.",
        read: |m| &m.idle_closes,
    },
    MetricSpec {
        name: "ringcast_write_timeout_closes_total",
        kind: "counter",
        help: "Connections closed with 1008 after no write progress for --write-timeout.",
        read: |m| &m.write_timeout_closes,
    },
    MetricSpec {
        name: "ringcast_rate_limit_closes_total",
        kind: "counter",
        help: "Connections closed with 1008 for exceeding --max-inbound-rate.",
        read: |m| &m.rate_limit_closes,
    },
    MetricSpec {
        name: "ringcast_publish_pauses_total",
        kind: "counter",
        help: "Times a publisher was not read because the fan-out budget was exhausted.",
        read: |m| &m.publish_pauses,
    },
    MetricSpec {
        name: "ringcast_overload_closes_total",
        kind: "counter",
        help: "Publishers closed with 1013: heavy ones at twice the fan-out budget, any after waiting --publish-timeout.",
        read: |m| &m.overload_closes,
    },
    MetricSpec {
        name: "ringcast_queued_bytes",
        kind: "gauge",
        help: "Bytes charged to outbound budgets (queued and in-flight frames with handles) at the last keepalive sweep.",
        read: |m| &m.queued_bytes,
    },
];

/// Renders every core's counters in the Prometheus text format, one series per core, then the
/// process-wide fan-out memory.
pub fn render_prometheus(cores: &[CoreMetrics], memory: &FanoutMemory) -> String {
    let mut out = String::with_capacity(METRICS.len() * (120 + 40 * cores.len()));
    for spec in METRICS {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", spec.name, spec.help);
        let _ = writeln!(out, "# TYPE {} {}", spec.name, spec.kind);
        for (core, metrics) in cores.iter().enumerate() {
            let value = (spec.read)(metrics).load(Ordering::Relaxed);
            let _ = writeln!(out, "{}{{core=\"{core}\"}} {value}", spec.name);
        }
    }
    let process_gauges = [
        (
            "ringcast_fanout_bytes",
            "Bytes held for delivery: live broadcast frames, queued frame handles, mail between cores.",
            memory.used(),
        ),
        (
            "ringcast_fanout_budget_bytes",
            "--fanout-budget: above it publishers are not read.",
            memory.budget(),
        ),
    ];
    for (name, help, value) in process_gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_one_series_per_core() {
        let cores = [CoreMetrics::default(), CoreMetrics::default()];
        CoreMetrics::add(&cores[1].writev_calls, 3);
        let text = render_prometheus(&cores, &FanoutMemory::new(2, 1000));
        assert!(text.contains("# TYPE ringcast_writev_calls_total counter"));
        assert!(text.contains("ringcast_writev_calls_total{core=\"0\"} 0"));
        assert!(text.contains("ringcast_writev_calls_total{core=\"1\"} 3"));
        assert!(text.contains("ringcast_slow_consumer_closes_total{core=\"1\"} 0"));
        assert!(text.contains("\nringcast_fanout_budget_bytes 1000\n"));
    }
}
