//! `--threshold` rules (`p99<5ms`, `lost==0`) and the metric names they, and `compare`, use.
//! A rule is parsed with the command line, so a bad one is a usage error before anything
//! runs; `report` judges it against a run's results.

use anyhow::{anyhow, bail};

/// Metric names, their meaning and whether lower is better (used by `compare`). Time metrics
/// (`is_time`) are nanoseconds in reports and printed in human units.
pub const METRICS: &[(&str, &str, bool)] = &[
    ("p50", "latency p50", true),
    ("p90", "latency p90", true),
    ("p99", "latency p99", true),
    ("p999", "latency p99.9", true),
    ("p9999", "latency p99.99", true),
    ("max", "latency max", true),
    ("mean", "latency mean", true),
    ("send_lag_p99", "send lag p99", true),
    ("send_lag_max", "send lag max", true),
    ("connect_p99", "connect time p99", true),
    // The connect time's steps (`results.connect_steps`; the TLS handshake with wss:// only).
    ("connect_tcp_p99", "TCP connect p99", true),
    ("tls_handshake_p99", "TLS handshake p99", true),
    ("upgrade_p99", "WebSocket upgrade p99", true),
    ("sent", "messages sent", false),
    ("expected", "deliveries expected", false),
    ("delivered", "deliveries", false),
    ("delivered_per_sec", "deliveries per second", false),
    ("lost", "lost deliveries", true),
    ("duplicated", "duplicated deliveries", true),
    ("reordered", "reordered deliveries", true),
    ("delivery_rate", "delivered / expected", false),
    // --churn / --recover only (`results.churn`).
    ("left", "subscriber departures (churn)", false),
    ("reconnect_failed", "failed reconnects", true),
    ("recovered", "reconnects answered `recovered`", false),
    ("reset", "reconnects answered `reset`", true),
    ("first_replay_p50", "reconnect to first replayed p50", true),
    ("first_replay_p99", "reconnect to first replayed p99", true),
    ("first_replay_max", "reconnect to first replayed max", true),
    ("connect_failed", "failed connections", true),
    ("loadgen_cpu_percent", "loadgen CPU % of a core", true),
    // `results.wire`: what deliveries took on the wire (--deflate's saving).
    ("wire_bytes_per_delivery", "wire bytes per delivery", true),
    ("compression_ratio", "payload / wire bytes", false),
    (
        "server_cpu_us_per_delivery",
        "server CPU us per delivery",
        true,
    ),
    (
        "server_rss_per_connection_bytes",
        "server RSS per connection (B)",
        true,
    ),
    // Several --urls only (`results.nodes`): publisher and receiver on one URL, or on two.
    ("same_node_p50", "same-node latency p50", true),
    ("same_node_p90", "same-node latency p90", true),
    ("same_node_p99", "same-node latency p99", true),
    ("same_node_p999", "same-node latency p99.9", true),
    ("same_node_max", "same-node latency max", true),
    ("same_node_delivered", "same-node deliveries", false),
    ("same_node_lost", "same-node lost deliveries", true),
    ("cross_node_p50", "cross-node latency p50", true),
    ("cross_node_p90", "cross-node latency p90", true),
    ("cross_node_p99", "cross-node latency p99", true),
    ("cross_node_p999", "cross-node latency p99.9", true),
    ("cross_node_max", "cross-node latency max", true),
    ("cross_node_delivered", "cross-node deliveries", false),
    ("cross_node_lost", "cross-node lost deliveries", true),
];

/// Other names a rule may use for a metric: `out_of_order` is issue 19's word for what the
/// report has always called `reordered` (a first copy below one already received).
const ALIASES: &[(&str, &str)] = &[("out_of_order", "reordered")];

/// Whether a metric is a time in ns (thresholds accept ns/us/ms/s suffixes).
pub fn is_time(name: &str) -> bool {
    matches!(
        name,
        "p50"
            | "p90"
            | "p99"
            | "p999"
            | "p9999"
            | "max"
            | "mean"
            | "send_lag_p99"
            | "send_lag_max"
            | "connect_p99"
            | "connect_tcp_p99"
            | "tls_handshake_p99"
            | "upgrade_p99"
            | "first_replay_p50"
            | "first_replay_p99"
            | "first_replay_max"
    ) || ["same_node_", "cross_node_"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|figure| figure.starts_with('p') || figure == "max")
    })
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`
    Equal,
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The text as given.
    pub expression: String,
    /// Metric name (see `METRICS`).
    metric: String,
    /// Operator.
    operator: Operator,
    /// Bound, in the metric's unit (ns for times).
    bound: f64,
}

impl Threshold {
    /// Parses `metric OP value[unit]`.
    pub fn parse(text: &str) -> anyhow::Result<Threshold> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact
            .find(['<', '>', '='])
            .ok_or_else(|| anyhow!("threshold `{text}`: expected METRIC<VALUE, <=, >, >= or =="))?;
        let (metric, rest) = compact.split_at(at);
        let metric = ALIASES
            .iter()
            .find_map(|(alias, name)| (*alias == metric).then_some(*name))
            .unwrap_or(metric);
        let (operator, value) = [
            ("<=", Operator::LessOrEqual),
            (">=", Operator::GreaterOrEqual),
            ("==", Operator::Equal),
            ("<", Operator::Less),
            (">", Operator::Greater),
        ]
        .iter()
        .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|v| (*op, v)))
        .ok_or_else(|| anyhow!("threshold `{text}`: unknown operator"))?;
        if !METRICS.iter().any(|(name, _, _)| *name == metric) {
            let names: Vec<&str> = METRICS.iter().map(|(name, _, _)| *name).collect();
            bail!(
                "threshold `{text}`: unknown metric `{metric}` (known: {})",
                names.join(", ")
            );
        }
        let bound = if is_time(metric) {
            super::units::parse_duration(value)
                .map_err(|e| anyhow!("threshold `{text}`: {e}"))?
                .as_nanos() as f64
        } else {
            value
                .parse()
                .map_err(|_| anyhow!("threshold `{text}`: `{value}` is not a number"))?
        };
        Ok(Threshold {
            expression: text.to_string(),
            metric: metric.to_string(),
            operator,
            bound,
        })
    }

    /// The metric's name.
    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// Whether `actual`, the metric's value in a run, keeps to the rule.
    pub fn holds(&self, actual: f64) -> bool {
        match self.operator {
            Operator::Less => actual < self.bound,
            Operator::LessOrEqual => actual <= self.bound,
            Operator::Greater => actual > self.bound,
            Operator::GreaterOrEqual => actual >= self.bound,
            Operator::Equal => actual == self.bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_counts_and_operators() {
        let p99 = Threshold::parse("p99 < 5ms").unwrap();
        assert_eq!(
            (p99.metric.as_str(), p99.operator, p99.bound),
            ("p99", Operator::Less, 5e6)
        );
        let lost = Threshold::parse("lost==0").unwrap();
        assert_eq!((lost.operator, lost.bound), (Operator::Equal, 0.0));
        let rate = Threshold::parse("delivered_per_sec>=1000").unwrap();
        assert_eq!(rate.operator, Operator::GreaterOrEqual);
        assert!(Threshold::parse("p42<1ms").is_err());
        assert!(Threshold::parse("p99~1ms").is_err());
        assert!(Threshold::parse("lost==zero").is_err());
        let cross = Threshold::parse("cross_node_p99<10ms").unwrap();
        assert_eq!(
            (cross.metric.as_str(), cross.bound),
            ("cross_node_p99", 1e7)
        );
        let lost = Threshold::parse("cross_node_lost==0").unwrap();
        assert_eq!(lost.bound, 0.0);
        assert!(Threshold::parse("cross_node_lost==1ms").is_err());
        assert!(Threshold::parse("cross_node_p42<1ms").is_err());
        let order = Threshold::parse("out_of_order==0").unwrap();
        assert_eq!(
            (order.metric(), order.expression.as_str()),
            ("reordered", "out_of_order==0")
        );
        let rate = Threshold::parse("delivery_rate>=0.99").unwrap();
        assert_eq!(rate.bound, 0.99);
        assert_eq!(Threshold::parse("first_replay_p99<2s").unwrap().bound, 2e9);
    }
}
