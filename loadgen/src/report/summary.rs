//! The human summary printed to stdout at the end of a run.

use std::fmt::Write;

use crate::plan::format_ns;
use crate::report::{
    ChurnResults, HistogramSummary, NodeResults, Report, Results, ServerResults, WireResults,
};

/// A time in human units, or "-" when undefined (nothing recorded).
fn time(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".to_string(), |v| format_ns(v as f64))
}

/// One line of percentiles.
fn percentiles(name: &str, h: &HistogramSummary) -> String {
    format!(
        "{name:<22} p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (n={})",
        time(h.p50),
        time(h.p90),
        time(h.p99),
        time(h.p999),
        time(h.p9999),
        time(h.max),
        h.count
    )
}

/// A figure with `decimals`, or "n/a" when undefined.
fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
}

/// A percentage, or "n/a" when undefined.
fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}%"))
}

/// The per-URL connections and the same-node / cross-node lines (several `--url`s).
fn render_nodes(out: &mut String, nodes: &NodeResults) {
    for (index, url) in nodes.urls.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<22} {}  connections ok {}/{} (publishers {})",
            format!("node {index}"),
            url.url,
            url.ok,
            url.target,
            url.publishers
        );
    }
    for (name, class) in [
        ("same-node", &nodes.same_node),
        ("cross-node", &nodes.cross_node),
    ] {
        let _ = writeln!(
            out,
            "{name:<22} delivered {} of expected {}  lost {}",
            class.delivered, class.expected, class.lost
        );
        let _ = writeln!(
            out,
            "{}",
            percentiles(&format!("{name} latency"), &class.latency_ns)
        );
    }
    if nodes.cross_node.expected == 0 && nodes.same_node.expected > 0 {
        let _ = writeln!(
            out,
            "{:<22} none expected: no room has receivers on a URL other than its publishers' \
(connection i is in room i mod K on URL i mod U: K rooms and U URLs with a common factor keep \
each room on part of the URLs)",
            "cross-node"
        );
    }
}

/// The wire line: bytes per delivery on the wire and in the payload, the ratio, and with
/// `--deflate` how many connections negotiated it.
fn render_wire(out: &mut String, wire: &WireResults, connected: u64) {
    let per_delivery = wire
        .wire_bytes_per_delivery
        .map_or_else(|| "n/a".to_string(), |bytes| format!("{bytes:.1} B"));
    let ratio = wire
        .compression_ratio
        .map_or_else(|| "n/a".to_string(), |ratio| format!("{ratio:.2}x"));
    let deflate = if wire.deflate_offered {
        format!(
            "  permessage-deflate on {} of {connected} connections",
            wire.deflate_connections
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "wire                   {per_delivery} per delivery  compression ratio {ratio} (payload / wire){deflate}"
    );
}

/// Departures, reconnects and the server's first messages (`--churn`, `--recover`).
fn render_churn(out: &mut String, churn: &ChurnResults) {
    let first = &churn.first_messages;
    let _ = writeln!(
        out,
        "churn                  left {}  reconnected {}  reconnect failed {}  first messages: position {}  recovered {}  reset {}  none {}  malformed {}",
        churn.left,
        churn.reconnected,
        churn.reconnect_failed,
        first.position,
        first.recovered,
        first.reset,
        first.none,
        first.malformed
    );
    let _ = writeln!(
        out,
        "{}",
        percentiles("first replayed", &churn.first_replay_ns)
    );
}

/// The server's CPU and memory (`--server-pid`), and each process's share with several.
fn render_server(out: &mut String, server: &ServerResults) {
    let who = if server.pids.len() > 1 {
        let list: Vec<String> = server.pids.iter().map(u32::to_string).collect();
        format!("servers ({} pids: {})", server.pids.len(), list.join(", "))
    } else {
        format!("server (pid {})      ", server.pid)
    };
    let _ = writeln!(
        out,
        "{who} cpu {:.2}s in window (user {}s) = {} us/delivery (user {}) ({} CPU-s per million); rss {} -> {} MB, peak {} MB, {} B/connection",
        server.cpu_seconds,
        number(server.cpu_user_seconds, 2),
        number(server.cpu_us_per_delivery, 2),
        number(server.user_us_per_delivery, 3),
        number(server.cpu_s_per_million_deliveries, 2),
        server.rss_before_connect_bytes / 1_000_000,
        server.rss_connected_bytes / 1_000_000,
        server.rss_peak_bytes / 1_000_000,
        number(server.rss_per_connection_bytes, 0)
    );
    for process in &server.processes {
        let share =
            (server.cpu_seconds > 0.0).then(|| process.cpu_seconds * 100.0 / server.cpu_seconds);
        let _ = writeln!(
            out,
            "  pid {:<17} cpu {:.2}s in window (user {:.2}s, {} of the total); rss {} -> {} MB, peak {} MB",
            process.pid,
            process.cpu_seconds,
            process.cpu_user_seconds,
            percent(share),
            process.rss_before_connect_bytes / 1_000_000,
            process.rss_connected_bytes / 1_000_000,
            process.rss_peak_bytes / 1_000_000
        );
    }
}

/// Each threshold's outcome and whether the run is valid.
fn render_verdict(out: &mut String, r: &Results) {
    for t in &r.thresholds {
        let _ = writeln!(
            out,
            "threshold {:<20} {} ({})",
            t.expression,
            if t.passed { "ok" } else { "FAILED" },
            t.actual
                .map_or_else(|| "not measured".to_string(), |v| format!("actual {v}"))
        );
    }
    if r.valid {
        let _ = writeln!(out, "run: valid");
    } else {
        let _ = writeln!(out, "run: NOT VALID: {}", r.invalid_reasons.join("; "));
    }
}

/// Renders the summary of `report`.
pub fn render(report: &Report) -> String {
    let r = &report.results;
    let s = &report.scenario;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loadgen {}: {} subscribers + {} publishers x {} msg/s, {} B, {} room(s), {:.1}s measured after {:.1}s warm-up",
        report.environment.loadgen_version, s.subscribers, s.publishers, s.rate, s.size, s.rooms, s.duration_s, s.warmup_s
    );
    if s.tls_insecure {
        let _ = writeln!(
            out,
            "WARNING: --tls-insecure: the servers' certificates were not verified"
        );
    }
    let failures: Vec<String> = r
        .connections
        .failures
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "connections            ok {}/{}  failed {}{}  disconnected {}",
        r.connections.ok,
        r.connections.target,
        r.connections.failed,
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", failures.join(", "))
        },
        r.connections.disconnected
    );
    let _ = writeln!(out, "{}", percentiles("connect time", &r.connect_ns));
    if let Some(steps) = &r.connect_steps {
        let _ = writeln!(out, "{}", percentiles("  TCP connect", &steps.tcp_ns));
        if let Some(tls) = &steps.tls_handshake_ns {
            let _ = writeln!(out, "{}", percentiles("  TLS handshake", tls));
        }
        let _ = writeln!(
            out,
            "{}",
            percentiles("  WebSocket upgrade", &steps.upgrade_ns)
        );
    }
    let _ = writeln!(
        out,
        "messages               sent {} (measured {})  delivered {} of expected {} ({})  lost {}  duplicated {}  reordered {}",
        r.sent,
        r.sent_measured,
        r.delivered,
        r.expected,
        r.delivery_rate
            .map_or_else(|| "n/a".to_string(), |rate| format!("{:.4}%", rate * 100.0)),
        r.lost,
        r.duplicated,
        r.reordered
    );
    let _ = writeln!(
        out,
        "throughput             {:.0} deliveries/s  {:.2} MB/s",
        r.delivered_per_sec, r.delivered_mb_per_sec
    );
    if let Some(wire) = &r.wire {
        render_wire(&mut out, wire, r.connections.ok);
    }
    let _ = writeln!(out, "{}", percentiles("latency", &r.latency_ns));
    let _ = writeln!(
        out,
        "{}",
        percentiles("latency (uncorrected)", &r.latency_uncorrected_ns)
    );
    let _ = writeln!(out, "{}", percentiles("send lag", &r.send_lag_ns));
    if let Some(nodes) = &r.nodes {
        render_nodes(&mut out, nodes);
    }
    if let Some(churn) = &r.churn {
        render_churn(&mut out, churn);
    }
    if r.stalled.connections > 0 {
        let _ = writeln!(
            out,
            "stalled subscribers    {} (closed by server: {})",
            r.stalled.connections, r.stalled.closed_by_server
        );
    }
    let _ = writeln!(
        out,
        "loadgen cpu            {} of a core in the window (busiest second {}); user {:.2}s system {:.2}s",
        percent(r.loadgen_cpu.window_percent),
        percent(r.loadgen_cpu.max_second_percent),
        r.loadgen_cpu.user_s,
        r.loadgen_cpu.system_s
    );
    if let Some(server) = &r.server {
        render_server(&mut out, server);
    }
    render_verdict(&mut out, r);
    out
}
