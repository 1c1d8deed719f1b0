//! The measured window's figures. Each worker thread owns its own (no lock per message); at
//! the end they are merged into the run's, from which the report is made.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::histogram::{add_histogram, new_histogram};
use super::interval::IntervalStats;
use super::nodes::NodeTotals;
use super::sequence::SequenceSet;
use crate::client::ConnectSteps;

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
    /// The same connections' time, step by step.
    pub connect_steps: ConnectStepTotals,
    /// Every message sent, warm-up included.
    pub sent: u64,
    /// Measured messages sent, per publisher id (expected = this x receivers of its room).
    pub sent_measured_by_publisher: Vec<u64>,
    /// Sequence of each publisher's first measured message, once it sent one: its measured
    /// messages are exactly the sequences `[first, first + sent_measured)` (a publisher's
    /// sequences count up from 0 with intended times in order, and it skips none).
    pub first_measured_seq_by_publisher: Vec<Option<u64>>,
    /// Measured messages delivered once to non-stalled receivers, per publisher id.
    pub delivered_by_publisher: Vec<u64>,
    /// Every non-stalled receiver's sequences, booked when it is done (over all its
    /// connections): `lost` is counted from them against the publishers' measured ranges.
    pub received: Vec<ReceivedSets>,
    /// Payload bytes of measured deliveries.
    pub delivered_bytes: u64,
    /// What the same deliveries took on the wire: their frames, headers included, compressed
    /// when they were (permessage-deflate).
    pub delivered_wire_bytes: u64,
    /// Extra copies of measured messages (a message received three times counts two).
    pub duplicated: u64,
    /// Measured messages that arrived after a later one of the same publisher.
    pub reordered: u64,
    /// Frames that were not this run's stamps (other processes, other clients, text).
    pub foreign: u64,
    /// Connections that completed the handshake.
    pub connected: u64,
    /// Of those, how many negotiated permessage-deflate (`--deflate`).
    pub deflate_connected: u64,
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
    /// Subscribers leaving and coming back (`--churn`), the server's first messages
    /// (`--recover`).
    pub churn: ChurnTotals,
}

/// One receiver's sequences, per publisher of its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSets {
    /// The receiver's room.
    pub room: u64,
    /// Slot s holds publisher `s * rooms + room` (the room's publishers, in order).
    pub by_slot: Vec<SequenceSet>,
}

/// How often each kind of first message came (`--recover`; without it, nothing is counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirstMessages {
    /// `{"ringcast":"position",...}`: live from the given offset.
    pub position: u64,
    /// `{"ringcast":"recovered",...}`: what was missed follows.
    pub recovered: u64,
    /// `{"ringcast":"reset",...}`: the position asked for is gone; nothing replayed.
    pub reset: u64,
    /// No such message: the first message was data (a server without recovery).
    pub none: u64,
    /// A `{"ringcast":...}` message that does not keep to the contract.
    pub malformed: u64,
}

impl FirstMessages {
    /// Adds another worker's counts.
    fn merge(&mut self, other: &FirstMessages) {
        self.position += other.position;
        self.recovered += other.recovered;
        self.reset += other.reset;
        self.none += other.none;
        self.malformed += other.malformed;
    }
}

/// Subscribers' departures and returns under `--churn`, and the first messages of `--recover`.
#[derive(Clone)]
pub struct ChurnTotals {
    /// Departures: connections a subscriber closed on its churn schedule.
    pub left: u64,
    /// Reconnects that completed the handshake.
    pub reconnected: u64,
    /// Reconnects that failed, by reason key (as `connect_failures`).
    pub reconnect_failures: BTreeMap<String, u64>,
    /// First messages by kind, over every connection of a subscriber (first ones included).
    pub first_messages: FirstMessages,
    /// What the first malformed first message was (for the summary).
    pub malformed_example: Option<String>,
    /// After a `recovered`: from the reconnect's TCP connect start to the first data message
    /// that was sent while the subscriber was away (the first replayed one), ns.
    pub first_replay: Histogram<u64>,
}

impl ChurnTotals {
    /// Nothing counted.
    pub fn new() -> ChurnTotals {
        ChurnTotals {
            left: 0,
            reconnected: 0,
            reconnect_failures: BTreeMap::new(),
            first_messages: FirstMessages::default(),
            malformed_example: None,
            first_replay: new_histogram(),
        }
    }

    /// Failed reconnects, every reason.
    pub fn reconnect_failed(&self) -> u64 {
        self.reconnect_failures.values().sum()
    }

    /// Adds another worker's figures.
    fn merge(&mut self, other: &ChurnTotals) {
        self.left += other.left;
        self.reconnected += other.reconnected;
        for (key, count) in &other.reconnect_failures {
            *self.reconnect_failures.entry(key.clone()).or_default() += count;
        }
        self.first_messages.merge(&other.first_messages);
        if self.malformed_example.is_none() {
            self.malformed_example = other.malformed_example.clone();
        }
        add_histogram(&mut self.first_replay, &other.first_replay);
    }
}

/// The steps of successful connects, ns each (first connections, as `RunTotals::connect`).
#[derive(Clone)]
pub struct ConnectStepTotals {
    /// TCP connect.
    pub tcp: Histogram<u64>,
    /// TLS handshake (`wss://` connections only).
    pub tls: Histogram<u64>,
    /// WebSocket upgrade.
    pub upgrade: Histogram<u64>,
}

impl ConnectStepTotals {
    /// Nothing recorded.
    pub fn new() -> ConnectStepTotals {
        ConnectStepTotals {
            tcp: new_histogram(),
            tls: new_histogram(),
            upgrade: new_histogram(),
        }
    }

    /// Records one connect's steps.
    pub fn record(&mut self, steps: ConnectSteps) {
        self.tcp.saturating_record(steps.tcp_ns);
        if let Some(tls_ns) = steps.tls_ns {
            self.tls.saturating_record(tls_ns);
        }
        self.upgrade.saturating_record(steps.upgrade_ns);
    }

    /// Adds another worker's.
    pub fn merge(&mut self, other: &ConnectStepTotals) {
        add_histogram(&mut self.tcp, &other.tcp);
        add_histogram(&mut self.tls, &other.tls);
        add_histogram(&mut self.upgrade, &other.upgrade);
    }
}

impl Default for ChurnTotals {
    fn default() -> Self {
        ChurnTotals::new()
    }
}

impl RunTotals {
    /// Empty totals for a run with `publishers` publishers.
    pub fn new(publishers: usize) -> RunTotals {
        RunTotals {
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
            send_lag: new_histogram(),
            connect: new_histogram(),
            connect_steps: ConnectStepTotals::new(),
            sent: 0,
            sent_measured_by_publisher: vec![0; publishers],
            first_measured_seq_by_publisher: vec![None; publishers],
            delivered_by_publisher: vec![0; publishers],
            received: Vec::new(),
            delivered_bytes: 0,
            delivered_wire_bytes: 0,
            duplicated: 0,
            reordered: 0,
            foreign: 0,
            connected: 0,
            deflate_connected: 0,
            connect_failures: BTreeMap::new(),
            connect_failure_examples: BTreeMap::new(),
            disconnected: 0,
            protocol_errors: 0,
            protocol_error_example: None,
            stalled_connected: 0,
            stalled_closed_by_server: 0,
            nodes: None,
            churn: ChurnTotals::new(),
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
        self.connect_steps.merge(&other.connect_steps);
        self.sent += other.sent;
        add_vectors(
            &mut self.sent_measured_by_publisher,
            &other.sent_measured_by_publisher,
        );
        if self.first_measured_seq_by_publisher.len() < other.first_measured_seq_by_publisher.len()
        {
            self.first_measured_seq_by_publisher
                .resize(other.first_measured_seq_by_publisher.len(), None);
        }
        for (first, other) in self
            .first_measured_seq_by_publisher
            .iter_mut()
            .zip(&other.first_measured_seq_by_publisher)
        {
            // One publisher is on one worker; `min` also keeps the merge order-free.
            *first = match (*first, *other) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        add_vectors(
            &mut self.delivered_by_publisher,
            &other.delivered_by_publisher,
        );
        self.received.extend(other.received.iter().cloned());
        self.delivered_bytes += other.delivered_bytes;
        self.delivered_wire_bytes += other.delivered_wire_bytes;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.foreign += other.foreign;
        self.connected += other.connected;
        self.deflate_connected += other.deflate_connected;
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
        self.churn.merge(&other.churn);
    }

    /// Measured deliveries missing at the receivers, counted from what each one got against
    /// each publisher's measured sequences (not as expected - delivered, so the two can be
    /// checked against each other): per receiver and publisher of its room, the sequences of
    /// `[first measured, first measured + sent measured)` it never received.
    pub fn lost(&self, rooms: u64) -> u64 {
        let rooms = rooms.max(1);
        let mut lost = 0;
        for receiver in &self.received {
            for (slot, set) in receiver.by_slot.iter().enumerate() {
                let publisher = (slot as u64 * rooms + receiver.room) as usize;
                let sent = self
                    .sent_measured_by_publisher
                    .get(publisher)
                    .copied()
                    .unwrap_or(0);
                let Some(Some(first)) = self.first_measured_seq_by_publisher.get(publisher) else {
                    continue;
                };
                lost += sent - set.count_in(*first, first + sent);
            }
        }
        lost
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

    #[test]
    fn loss_is_what_receivers_missed_of_the_measured_range() {
        // Two rooms; publisher 0 in room 0 (measured 10..20), publisher 1 in room 1 (0..5).
        let mut totals = RunTotals::new(2);
        totals.sent_measured_by_publisher = vec![10, 5];
        totals.first_measured_seq_by_publisher = vec![Some(10), Some(0)];
        let set = |seqs: &[u64]| {
            let mut set = SequenceSet::default();
            for &seq in seqs {
                set.observe(seq);
            }
            set
        };
        // Room 0: one receiver got 8..18 (warm-up 8, 9 not counted; 18, 19 missing).
        totals.received.push(ReceivedSets {
            room: 0,
            by_slot: vec![set(&(8..18).collect::<Vec<_>>())],
        });
        // Room 1: one got everything, one got 0, 2 and 4.
        let mut other = RunTotals::new(2);
        other.received.push(ReceivedSets {
            room: 1,
            by_slot: vec![set(&[0, 1, 2, 3, 4])],
        });
        other.received.push(ReceivedSets {
            room: 1,
            by_slot: vec![set(&[4, 2, 0])],
        });
        totals.merge(&other);
        assert_eq!(totals.lost(2), 2 + 2);
    }
}
