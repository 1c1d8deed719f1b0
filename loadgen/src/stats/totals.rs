//! The measured window's figures. Each worker thread owns its own (no lock per message); at
//! the end they are merged into the run's, from which the report is made.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::histogram::{add_histogram, new_histogram};
use super::interval::IntervalStats;
use super::nodes::NodeTotals;

/// Whole-run figures of the measured window (messages whose intended send time falls in
/// [all connected + warm-up, + duration)), plus connection outcomes.
#[derive(Clone)]
pub struct RunTotals {
    /// recv - intended of measured messages at non-stalled receivers, ns.
    pub latency: Histogram<u64>,
    /// recv - actual send of the same messages, ns.
    pub latency_uncorrected: Histogram<u64>,
    /// actual send - intended of measured messages, ns.
    pub send_lag: Histogram<u64>,
    /// Connect + handshake time of successful connections, ns.
    pub connect: Histogram<u64>,
    /// Every message sent, warm-up included.
    pub sent: u64,
    /// Measured messages sent, per publisher id (expected = this x receivers of its room).
    pub sent_measured_by_publisher: Vec<u64>,
    /// Measured messages delivered once to non-stalled receivers, per publisher id.
    pub delivered_by_publisher: Vec<u64>,
    /// Payload bytes of measured deliveries.
    pub delivered_bytes: u64,
    /// Measured messages a receiver saw again.
    pub duplicated: u64,
    /// Measured messages that arrived after a later one of the same publisher.
    pub reordered: u64,
    /// Frames that were not this run's stamps (other processes, other clients, text).
    pub foreign: u64,
    /// Connections that completed the handshake.
    pub connected: u64,
    /// Failed connection attempts by reason key.
    pub connect_failures: BTreeMap<String, u64>,
    /// One example message per failure reason (for the summary).
    pub connect_failure_examples: BTreeMap<String, String>,
    /// Connections the server closed (or that broke) before the end of the run.
    pub disconnected: u64,
    /// Malformed server frames and failed writes.
    pub protocol_errors: u64,
    /// What the first malformed server frame broke (for the summary).
    pub protocol_error_example: Option<String>,
    /// Stalled subscribers that were connected.
    pub stalled_connected: u64,
    /// Stalled subscribers the server closed (close frame other than 1000, or EOF).
    pub stalled_closed_by_server: u64,
    /// With several URLs: the measured deliveries (and their latency) split into same-node
    /// and cross-node; `None` with one URL.
    pub nodes: Option<NodeTotals>,
}

impl RunTotals {
    /// Empty totals for a run with `publishers` publishers.
    pub fn new(publishers: usize) -> RunTotals {
        RunTotals {
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
            send_lag: new_histogram(),
            connect: new_histogram(),
            sent: 0,
            sent_measured_by_publisher: vec![0; publishers],
            delivered_by_publisher: vec![0; publishers],
            delivered_bytes: 0,
            duplicated: 0,
            reordered: 0,
            foreign: 0,
            connected: 0,
            connect_failures: BTreeMap::new(),
            connect_failure_examples: BTreeMap::new(),
            disconnected: 0,
            protocol_errors: 0,
            protocol_error_example: None,
            stalled_connected: 0,
            stalled_closed_by_server: 0,
            nodes: None,
        }
    }

    /// Failed connection attempts, every reason.
    pub fn connect_failed(&self) -> u64 {
        self.connect_failures.values().sum()
    }

    /// Measured messages sent, every publisher.
    pub fn sent_measured(&self) -> u64 {
        self.sent_measured_by_publisher.iter().sum()
    }

    /// Adds another worker's totals.
    pub fn merge(&mut self, other: &RunTotals) {
        add_histogram(&mut self.latency, &other.latency);
        add_histogram(&mut self.latency_uncorrected, &other.latency_uncorrected);
        add_histogram(&mut self.send_lag, &other.send_lag);
        add_histogram(&mut self.connect, &other.connect);
        self.sent += other.sent;
        add_vectors(
            &mut self.sent_measured_by_publisher,
            &other.sent_measured_by_publisher,
        );
        add_vectors(
            &mut self.delivered_by_publisher,
            &other.delivered_by_publisher,
        );
        self.delivered_bytes += other.delivered_bytes;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.foreign += other.foreign;
        self.connected += other.connected;
        for (key, count) in &other.connect_failures {
            *self.connect_failures.entry(key.clone()).or_default() += count;
        }
        for (key, example) in &other.connect_failure_examples {
            self.connect_failure_examples
                .entry(key.clone())
                .or_insert_with(|| example.clone());
        }
        self.disconnected += other.disconnected;
        self.protocol_errors += other.protocol_errors;
        if self.protocol_error_example.is_none() {
            self.protocol_error_example = other.protocol_error_example.clone();
        }
        self.stalled_connected += other.stalled_connected;
        self.stalled_closed_by_server += other.stalled_closed_by_server;
        if let Some(nodes) = &other.nodes {
            self.nodes.get_or_insert_with(NodeTotals::new).merge(nodes);
        }
    }
}

/// Element-wise `target += source`, growing `target` when needed.
fn add_vectors(target: &mut Vec<u64>, source: &[u64]) {
    if target.len() < source.len() {
        target.resize(source.len(), 0);
    }
    for (sum, value) in target.iter_mut().zip(source) {
        *sum += value;
    }
}

/// Everything one worker thread records.
pub struct WorkerStats {
    /// This second's figures, handed over once a second.
    pub interval: IntervalStats,
    /// The measured-window totals.
    pub totals: RunTotals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_histograms_and_counters() {
        let mut a = RunTotals::new(2);
        let mut b = RunTotals::new(2);
        for v in 1..=100u64 {
            a.latency.saturating_record(v * 1000);
            b.latency.saturating_record(v * 1_000_000);
        }
        a.delivered_by_publisher[0] = 5;
        b.delivered_by_publisher[1] = 7;
        b.connect_failures.insert("refused".into(), 3);
        a.merge(&b);
        assert_eq!(a.latency.len(), 200);
        assert!(a.latency.max() >= 99_000_000);
        // The median of the union sits between the two sets, which averaging p50s would miss.
        assert!(a.latency.value_at_quantile(0.5) <= 101_000);
        assert_eq!(a.delivered_by_publisher, vec![5, 7]);
        assert_eq!(a.connect_failures["refused"], 3);
    }
}
