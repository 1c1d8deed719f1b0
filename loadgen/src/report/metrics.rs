//! The metrics of a run by name (`p99`, `lost`, `cross_node_p99`, ...): their values in
//! `Results`, and the `--threshold` rules judged against them. The names, and which of them
//! are times, are `plan`'s: a rule is checked with the command line, before the run.

use super::{Report, Results, ThresholdOutcome};
use crate::plan::Threshold;

/// The value of a `same_node_*` / `cross_node_*` metric; `None` without `results.nodes` (one
/// URL) and for latency of a class with no measured delivery.
fn node_metric(results: &Results, name: &str) -> Option<f64> {
    let nodes = results.nodes.as_ref()?;
    let (class, figure) = if let Some(figure) = name.strip_prefix("same_node_") {
        (&nodes.same_node, figure)
    } else {
        (&nodes.cross_node, name.strip_prefix("cross_node_")?)
    };
    let latency = &class.latency_ns;
    let time = |value: Option<u64>| value.map(|v| v as f64);
    match figure {
        "p50" => time(latency.p50),
        "p90" => time(latency.p90),
        "p99" => time(latency.p99),
        "p999" => time(latency.p999),
        "max" => time(latency.max),
        "delivered" => Some(class.delivered as f64),
        "lost" => Some(class.lost as f64),
        _ => None,
    }
}

/// The value of metric `name` in `results`; `None` for unknown names and for figures the run
/// did not measure: latency without a measured message, send lag without a measured send,
/// connect time without a connection, server figures without `--server-pid` or undefined
/// (CPU per delivery with no delivery).
pub fn metric(results: &Results, name: &str) -> Option<f64> {
    let latency = &results.latency_ns;
    let time = |value: Option<u64>| value.map(|v| v as f64);
    Some(match name {
        "p50" => time(latency.p50)?,
        "p90" => time(latency.p90)?,
        "p99" => time(latency.p99)?,
        "p999" => time(latency.p999)?,
        "p9999" => time(latency.p9999)?,
        "max" => time(latency.max)?,
        "mean" => latency.mean?,
        "send_lag_p99" => time(results.send_lag_ns.p99)?,
        "send_lag_max" => time(results.send_lag_ns.max)?,
        "connect_p99" => time(results.connect_ns.p99)?,
        "connect_tcp_p99" => time(results.connect_steps?.tcp_ns.p99)?,
        "tls_handshake_p99" => time(results.connect_steps?.tls_handshake_ns?.p99)?,
        "upgrade_p99" => time(results.connect_steps?.upgrade_ns.p99)?,
        "sent" => results.sent as f64,
        "expected" => results.expected as f64,
        "delivered" => results.delivered as f64,
        "delivered_per_sec" => results.delivered_per_sec,
        "lost" => results.lost as f64,
        "duplicated" => results.duplicated as f64,
        "reordered" => results.reordered as f64,
        "delivery_rate" => results.delivery_rate?,
        "left" => results.churn.as_ref()?.left as f64,
        "reconnect_failed" => results.churn.as_ref()?.reconnect_failed as f64,
        "recovered" => results.churn.as_ref()?.first_messages.recovered as f64,
        "reset" => results.churn.as_ref()?.first_messages.reset as f64,
        "first_replay_p50" => time(results.churn.as_ref()?.first_replay_ns.p50)?,
        "first_replay_p99" => time(results.churn.as_ref()?.first_replay_ns.p99)?,
        "first_replay_max" => time(results.churn.as_ref()?.first_replay_ns.max)?,
        "connect_failed" => results.connections.failed as f64,
        "loadgen_cpu_percent" => results.loadgen_cpu.window_percent?,
        "wire_bytes_per_delivery" => results.wire.as_ref()?.wire_bytes_per_delivery?,
        "compression_ratio" => results.wire.as_ref()?.compression_ratio?,
        "server_cpu_us_per_delivery" => results.server.as_ref()?.cpu_us_per_delivery?,
        "server_rss_per_connection_bytes" => results.server.as_ref()?.rss_per_connection_bytes?,
        _ => return node_metric(results, name),
    })
}

/// Judges `threshold` against `results`. A metric the run did not measure fails with no value
/// ("not measured").
pub fn check_threshold(threshold: &Threshold, results: &Results) -> ThresholdOutcome {
    let actual = metric(results, threshold.metric());
    ThresholdOutcome {
        expression: threshold.expression.clone(),
        actual,
        passed: actual.is_some_and(|actual| threshold.holds(actual)),
    }
}

/// Every threshold judged against `results`, in order.
pub fn check_thresholds(thresholds: &[Threshold], results: &Results) -> Vec<ThresholdOutcome> {
    thresholds
        .iter()
        .map(|threshold| check_threshold(threshold, results))
        .collect()
}

/// Judges the `--threshold` rules `report`'s scenario records against its results again, after
/// the results changed (merged, or re-derived from an older report).
pub fn recheck_thresholds(report: &mut Report) -> anyhow::Result<()> {
    let thresholds = report
        .scenario
        .thresholds
        .iter()
        .map(|text| Threshold::parse(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    report.results.thresholds = check_thresholds(&thresholds, &report.results);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_read_the_nodes_section_and_are_not_measured_without_it() {
        use crate::report::{HistogramSummary, NodeClassResults, NodeResults};
        let template = crate::report::Results {
            valid: true,
            invalid_reasons: Vec::new(),
            connections: Default::default(),
            sent: 0,
            sent_measured: 0,
            expected: 0,
            delivered: 0,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            delivery_rate: None,
            foreign: 0,
            delivered_per_sec: 0.0,
            delivered_mb_per_sec: 0.0,
            measured_seconds: 1.0,
            latency_ns: HistogramSummary::default(),
            latency_uncorrected_ns: HistogramSummary::default(),
            connect_ns: HistogramSummary::default(),
            connect_steps: None,
            send_lag_ns: HistogramSummary::default(),
            stalled: Default::default(),
            protocol_errors: 0,
            publishers_with_loss: Vec::new(),
            loadgen_cpu: Default::default(),
            server: None,
            servers: Vec::new(),
            nodes: None,
            churn: None,
            wire: None,
            thresholds: Vec::new(),
            histograms: Default::default(),
        };
        let check = |results: &Results, text: &str| {
            let outcome = check_threshold(&Threshold::parse(text).unwrap(), results);
            (outcome.actual, outcome.passed)
        };
        assert_eq!(check(&template, "cross_node_lost==0"), (None, false));
        // The connect steps: the TLS handshake is measured over wss:// only.
        let timed = HistogramSummary {
            p99: Some(1_000_000),
            count: 1,
            ..HistogramSummary::default()
        };
        let mut plain = template.clone();
        plain.connect_steps = Some(crate::report::ConnectStepResults {
            tcp_ns: timed,
            tls_handshake_ns: None,
            upgrade_ns: timed,
        });
        assert_eq!(check(&plain, "upgrade_p99<2ms"), (Some(1e6), true));
        assert_eq!(check(&plain, "tls_handshake_p99<2ms"), (None, false));
        let mut secure = plain.clone();
        secure.connect_steps.as_mut().unwrap().tls_handshake_ns = Some(timed);
        assert_eq!(check(&secure, "tls_handshake_p99<2ms"), (Some(1e6), true));
        let mut results = template.clone();
        results.nodes = Some(NodeResults {
            urls: Vec::new(),
            same_node: NodeClassResults {
                expected: 10,
                delivered: 10,
                lost: 0,
                latency_ns: HistogramSummary {
                    p99: Some(2_000_000),
                    count: 10,
                    ..HistogramSummary::default()
                },
            },
            cross_node: NodeClassResults {
                expected: 10,
                delivered: 0,
                lost: 10,
                latency_ns: HistogramSummary::default(),
            },
        });
        assert_eq!(check(&results, "same_node_p99<3ms"), (Some(2e6), true));
        assert_eq!(check(&results, "cross_node_lost==0"), (Some(10.0), false));
        assert_eq!(
            check(&results, "cross_node_delivered>=0"),
            (Some(0.0), true)
        );
        // No cross-node delivery: its latency was not measured.
        assert_eq!(check(&results, "cross_node_p99<3ms"), (None, false));
    }
}
