//! timeline.csv: the per-second figures (the same rows as the live line).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// One second of the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelineRow {
    /// Seconds since loadgen started (end of this interval).
    pub second: u64,
    /// connecting, warmup, measure, drain or closing.
    pub phase: String,
    /// Connections open at the end of the second.
    pub connections_open: u64,
    /// Messages sent in the second.
    pub sent: u64,
    /// Messages delivered in the second.
    pub delivered: u64,
    /// Payload bytes delivered in the second.
    pub delivered_bytes: u64,
    /// Latency p50 (ns) of messages received in the second.
    pub latency_p50_ns: u64,
    /// Latency p99 (ns).
    pub latency_p99_ns: u64,
    /// Latency max (ns).
    pub latency_max_ns: u64,
    /// Send lag p99 (ns).
    pub send_lag_p99_ns: u64,
    /// Errors in the second.
    pub errors: u64,
    /// loadgen CPU, percent of one core.
    pub loadgen_cpu_percent: f64,
}

/// Renders rows as CSV with a header line.
pub fn render(rows: &[TimelineRow]) -> String {
    let mut out = String::from(
        "second,phase,connections_open,sent,delivered,delivered_bytes,latency_p50_ns,latency_p99_ns,latency_max_ns,send_lag_p99_ns,errors,loadgen_cpu_percent\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{:.1}",
            r.second,
            r.phase,
            r.connections_open,
            r.sent,
            r.delivered,
            r.delivered_bytes,
            r.latency_p50_ns,
            r.latency_p99_ns,
            r.latency_max_ns,
            r.send_lag_p99_ns,
            r.errors,
            r.loadgen_cpu_percent
        );
    }
    out
}

/// Parses `render`'s output back into rows.
pub fn parse(text: &str) -> anyhow::Result<Vec<TimelineRow>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    anyhow::ensure!(
        header.starts_with("second,phase,"),
        "not a loadgen timeline.csv (header `{header}`)"
    );
    let mut rows = Vec::new();
    for (number, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        anyhow::ensure!(
            fields.len() == 12,
            "line {}: {} fields, not 12",
            number + 2,
            fields.len()
        );
        let int = |i: usize| -> anyhow::Result<u64> {
            fields[i]
                .parse()
                .map_err(|_| anyhow::anyhow!("line {}: `{}` is not a count", number + 2, fields[i]))
        };
        rows.push(TimelineRow {
            second: int(0)?,
            phase: fields[1].to_string(),
            connections_open: int(2)?,
            sent: int(3)?,
            delivered: int(4)?,
            delivered_bytes: int(5)?,
            latency_p50_ns: int(6)?,
            latency_p99_ns: int(7)?,
            latency_max_ns: int(8)?,
            send_lag_p99_ns: int(9)?,
            errors: int(10)?,
            loadgen_cpu_percent: fields[11].parse().map_err(|_| {
                anyhow::anyhow!("line {}: `{}` is not a number", number + 2, fields[11])
            })?,
        });
    }
    Ok(rows)
}
