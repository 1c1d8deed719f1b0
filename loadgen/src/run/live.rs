//! The live line printed to stderr once a second.

use crate::plan::format_ns;
use crate::report::csv::TimelineRow;

/// Formats one second for people.
pub fn line(row: &TimelineRow, target_connections: u64) -> String {
    format!(
        "[{:>4}s {:<10}] conns {}/{}  sent/s {}  delivered/s {}  p50 {}  p99 {}  max {}  errors {}  cpu {:.0}%",
        row.second,
        row.phase,
        row.connections_open,
        target_connections,
        row.sent,
        row.delivered,
        format_ns(row.latency_p50_ns as f64),
        format_ns(row.latency_p99_ns as f64),
        format_ns(row.latency_max_ns as f64),
        row.errors,
        row.loadgen_cpu_percent
    )
}
