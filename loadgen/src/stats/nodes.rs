//! Several `--url`s (server nodes sharing rooms, e.g. through a pub/sub broker): whether a
//! delivery crossed nodes, and the measured deliveries of each class. A receiver tells from the
//! stamp's publisher, whose URL follows from its index (`plan::url_of_connection`), with no
//! extra bytes on the wire. A node is a URL as given: two URLs naming one server are two nodes.

use hdrhistogram::Histogram;

use super::histogram::{add_histogram, new_histogram};
use crate::plan::{url_of_connection, url_of_publisher, Scenario};

/// Whether a delivery stayed on one node or crossed to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeClass {
    /// Publisher and receiver use the same URL.
    Same,
    /// They use different URLs: the message went through whatever links the nodes.
    Cross,
}

/// A receiver's view of the nodes: its own URL and how to find a publisher's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classifier {
    /// The receiver's URL index.
    own: u64,
    /// Number of URLs (at least 2).
    urls: u64,
    /// Subscribers of the run: publisher p is connection `subscribers + p`.
    subscribers: u64,
}

impl Classifier {
    /// The classifier of connection `index`, or `None` with a single URL (nothing to classify).
    pub fn of(scenario: &Scenario, index: u64) -> Option<Classifier> {
        let urls = scenario.urls.len();
        (urls > 1).then(|| Classifier {
            own: url_of_connection(index, urls) as u64,
            urls: urls as u64,
            subscribers: scenario.subscribers,
        })
    }

    /// The class of a message from `publisher` (one add, one modulo: no allocation).
    pub fn classify(&self, publisher: u32) -> NodeClass {
        if (self.subscribers + u64::from(publisher)) % self.urls == self.own {
            NodeClass::Same
        } else {
            NodeClass::Cross
        }
    }
}

/// Measured deliveries of one class.
#[derive(Clone)]
pub struct ClassTotals {
    /// recv - intended of measured messages at non-stalled receivers, ns.
    pub latency: Histogram<u64>,
    /// Those deliveries (first copies).
    pub delivered: u64,
}

impl ClassTotals {
    /// Nothing recorded.
    fn new() -> ClassTotals {
        ClassTotals {
            latency: new_histogram(),
            delivered: 0,
        }
    }

    /// Records one measured delivery.
    pub fn record(&mut self, latency_ns: u64) {
        self.latency.saturating_record(latency_ns);
        self.delivered += 1;
    }

    /// Adds another worker's figures.
    fn merge(&mut self, other: &ClassTotals) {
        add_histogram(&mut self.latency, &other.latency);
        self.delivered += other.delivered;
    }
}

/// A worker's (or the run's) measured deliveries split by node class; one histogram per class.
#[derive(Clone)]
pub struct NodeTotals {
    /// Publisher and receiver on the same URL.
    pub same: ClassTotals,
    /// On different URLs.
    pub cross: ClassTotals,
}

impl NodeTotals {
    /// Nothing recorded.
    pub fn new() -> NodeTotals {
        NodeTotals {
            same: ClassTotals::new(),
            cross: ClassTotals::new(),
        }
    }

    /// The figures of `class`.
    pub fn class_mut(&mut self, class: NodeClass) -> &mut ClassTotals {
        match class {
            NodeClass::Same => &mut self.same,
            NodeClass::Cross => &mut self.cross,
        }
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &NodeTotals) {
        self.same.merge(&other.same);
        self.cross.merge(&other.cross);
    }
}

impl Default for NodeTotals {
    fn default() -> Self {
        NodeTotals::new()
    }
}

/// Expected measured deliveries per class: each publisher's measured sends times the connected,
/// non-stalled receivers of its room on its own URL (same) and on the other URLs (cross).
/// `receivers[room][url]` counts those receivers.
pub fn expected_by_class(
    scenario: &Scenario,
    sent_measured_by_publisher: &[u64],
    receivers: &[Vec<u64>],
) -> (u64, u64) {
    let rooms = scenario.rooms.max(1);
    let (mut same, mut cross) = (0u64, 0u64);
    for (publisher, sent) in sent_measured_by_publisher.iter().enumerate() {
        let Some(in_room) = receivers.get((publisher as u64 % rooms) as usize) else {
            continue;
        };
        let url = url_of_publisher(scenario, publisher as u32);
        let here = in_room.get(url).copied().unwrap_or(0);
        let elsewhere = in_room.iter().sum::<u64>() - here;
        same += sent * here;
        cross += sent * elsewhere;
    }
    (same, cross)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn scenario(args: &[&str]) -> Scenario {
        Plan::from_run_args(args).expect("valid scenario").scenario
    }

    const TWO: [&str; 4] = [
        "--url",
        "ws://127.0.0.1:9/ws",
        "--url",
        "ws://127.0.0.1:10/ws",
    ];

    #[test]
    fn one_url_has_nothing_to_classify() {
        let s = scenario(&["--url", "ws://127.0.0.1:9/ws"]);
        assert_eq!(Classifier::of(&s, 0), None);
        assert_eq!(url_of_publisher(&s, 0), 0);
    }

    #[test]
    fn publishers_and_receivers_are_classified_by_their_url_index() {
        // 3 subscribers (URLs 0 1 0), 2 publishers: connections 3 and 4, URLs 1 and 0.
        let args = [&TWO[..], &["--subscribers", "3", "--publishers", "2"]].concat();
        let s = scenario(&args);
        assert_eq!((url_of_publisher(&s, 0), url_of_publisher(&s, 1)), (1, 0));
        let at = |index| Classifier::of(&s, index).expect("two URLs");
        assert_eq!(at(0).classify(0), NodeClass::Cross);
        assert_eq!(at(0).classify(1), NodeClass::Same);
        assert_eq!(at(1).classify(0), NodeClass::Same);
        assert_eq!(at(1).classify(1), NodeClass::Cross);
        // A publisher receives its own messages on its own node.
        assert_eq!(at(3).classify(0), NodeClass::Same);
        assert_eq!(at(4).classify(1), NodeClass::Same);
    }

    #[test]
    fn expected_splits_each_room_by_the_publishers_url() {
        // 2 rooms; publishers 0 (connection 4, URL 0, room 0) and 1 (connection 5, URL 1, room 1).
        let args = [
            &TWO[..],
            &["--subscribers", "4", "--publishers", "2", "--rooms", "2"],
        ]
        .concat();
        let s = scenario(&args);
        // Room 0: 3 receivers on URL 0, 1 on URL 1; room 1: 2 and 5.
        let receivers = vec![vec![3, 1], vec![2, 5]];
        let (same, cross) = expected_by_class(&s, &[10, 100], &receivers);
        // Publisher 0: 3 same, 1 cross; publisher 1: 5 same, 2 cross.
        assert_eq!((same, cross), (10 * 3 + 100 * 5, 10 + 100 * 2));
    }

    #[test]
    fn classes_record_and_merge() {
        let mut a = NodeTotals::new();
        a.class_mut(NodeClass::Same).record(1_000);
        let mut b = NodeTotals::new();
        b.class_mut(NodeClass::Cross).record(5_000);
        b.class_mut(NodeClass::Cross).record(7_000);
        a.merge(&b);
        assert_eq!((a.same.delivered, a.same.latency.len()), (1, 1));
        assert_eq!((a.cross.delivered, a.cross.latency.len()), (2, 2));
        assert!(a.cross.latency.max() >= 7_000);
    }
}
