//! The rooms of one core, publishing, and fan-out to the other cores and nodes.
//!
//! A message is encoded once into a `Bytes` as the core's reader decodes it from its publisher
//! ([`Hub::publish`]), its bytes counted in the fan-out budget until its last handle drops.
//! [`Hub::publish_frame`] pushes one core-local handle of it into the queue of every local
//! subscriber of the room (the room is found once per message: the publisher holds it, then
//! its subscriber list is iterated), sends one clone to each other core's mailbox (`mail.rs`)
//! and, with `--broker`, one to the other nodes (`broker/`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::broker::Broker;
use super::mail::{Mailboxes, MAIL_BYTES};
use super::room::Room;
use crate::budget::{FanoutBudget, LocalFrame};
use crate::metrics::{CoreMetrics, FANOUT_SAMPLE_EVERY};
use crate::output::{CoreOutput, Subscriber};
use crate::ws::{encode_frame_into, MessageKind};

/// The rooms of one core, the mailboxes of the others, and the other nodes.
#[derive(Debug)]
pub struct Hub {
    /// Rooms with at least one local subscriber.
    rooms: RefCell<HashMap<Arc<str>, Rc<Room>>>,
    /// Mailboxes of the other cores (not this one).
    peers: Mailboxes,
    /// The other nodes, with `--broker`.
    broker: Option<Arc<Broker>>,
    /// This core's frame-handle ledger (and flush list), shared with its subscribers.
    core_output: Rc<CoreOutput>,
    /// This core's metrics.
    metrics: Arc<CoreMetrics>,
    /// The process-wide fan-out budget, charged for every frame encoded here.
    budget: Arc<FanoutBudget>,
    /// Messages fanned out on this core; every [`FANOUT_SAMPLE_EVERY`]-th is timed.
    fanned_out: Cell<u32>,
}

impl Hub {
    /// The hub of a core whose subscribers report to `core_output`: it forwards to `peers`
    /// (the other cores) and `broker` (the other nodes), counts into `metrics` and charges
    /// what it encodes to `budget`.
    pub fn new(
        core_output: Rc<CoreOutput>,
        peers: Mailboxes,
        broker: Option<Arc<Broker>>,
        metrics: Arc<CoreMetrics>,
        budget: Arc<FanoutBudget>,
    ) -> Self {
        Hub {
            rooms: RefCell::new(HashMap::new()),
            peers,
            broker,
            core_output,
            metrics,
            budget,
            fanned_out: Cell::new(0),
        }
    }

    /// Adds `subscriber` to `room` (created on first join); returns the room.
    pub fn join(&self, room: &str, subscriber: Rc<Subscriber>) -> Rc<Room> {
        let mut rooms = self.rooms.borrow_mut();
        let room = match rooms.get(room) {
            Some(existing) => Rc::clone(existing),
            None => {
                let name: Arc<str> = Arc::from(room);
                let created = Rc::new(Room::new(Arc::clone(&name)));
                if let Some(broker) = &self.broker {
                    broker.room_opened(&name);
                }
                rooms.insert(name, Rc::clone(&created));
                CoreMetrics::add(&self.metrics.rooms, 1);
                created
            }
        };
        room.add(subscriber);
        room
    }

    /// Removes `subscriber` from `room`, dropping the room when it becomes empty.
    pub fn leave(&self, room: &Rc<Room>, subscriber: &Rc<Subscriber>) {
        let now_empty = room.remove(subscriber);
        if now_empty && self.rooms.borrow_mut().remove(room.name()).is_some() {
            CoreMetrics::sub(&self.metrics.rooms, 1);
            if let Some(broker) = &self.broker {
                broker.room_closed(room.name());
            }
        }
    }

    /// Publishes a client's message: encodes it once, its bytes counted in the fan-out budget
    /// until the last handle drops, and fans it out ([`Hub::publish_frame`]).
    pub fn publish(&self, room: &Room, kind: MessageKind, payload: &[u8]) {
        self.publish_frame(room, self.encode(kind, payload));
    }

    /// Publishes a message from outside any room (`POST /publish`) like [`Hub::publish`]: to
    /// this core's subscribers of room `name` if it has any, and to every other core (which
    /// drops it if it has none) and node.
    pub fn publish_named(&self, name: &str, kind: MessageKind, payload: &[u8]) {
        let frame = self.encode(kind, payload);
        let local = self.rooms.borrow().get(name).cloned();
        match local {
            Some(room) => self.publish_frame(&room, frame),
            None => self.forward(&Arc::from(name), &frame),
        }
    }

    /// Publishes an encoded frame from a local client: every local subscriber of `room`, then
    /// one clone per other core and one to the broker.
    pub fn publish_frame(&self, room: &Room, frame: Bytes) {
        self.deliver_locally(room, Rc::new(frame.clone()));
        self.forward(room.shared_name(), &frame);
    }

    /// Sends a frame published on this node to the other cores and, with a broker, nodes.
    fn forward(&self, room: &Arc<str>, frame: &Bytes) {
        self.peers.broadcast(room, frame);
        if let Some(broker) = &self.broker {
            broker.forward(room, frame);
        }
    }

    /// Encodes one frame, its bytes counted in the fan-out budget until the last handle drops.
    fn encode(&self, kind: MessageKind, payload: &[u8]) -> Bytes {
        let mut encoded = Vec::new();
        encode_frame_into(&mut encoded, kind.opcode(), payload);
        self.budget.track(encoded)
    }

    /// Delivers a frame another core (or node) published to this core's subscribers of `room`.
    pub fn deliver_from_peer(&self, room: &str, frame: Bytes) {
        self.budget.mail_taken(MAIL_BYTES);
        let target = self.rooms.borrow().get(room).cloned();
        if let Some(target) = target {
            self.deliver_locally(&target, Rc::new(frame));
        }
    }

    /// Queues `frame` (this core's one handle of it) for every subscriber of `room` on this
    /// core, then makes the core's new handle count visible to the others (once per message,
    /// not per delivery). One message in [`FANOUT_SAMPLE_EVERY`] is timed
    /// (`ringcast_fanout_seconds`): two clock reads cost as much as the rest of a one-member
    /// fan-out (measured with the `fanout/1` bench).
    fn deliver_locally(&self, room: &Room, frame: LocalFrame) {
        let count = self.fanned_out.get();
        self.fanned_out.set(count.wrapping_add(1));
        let started = count.is_multiple_of(FANOUT_SAMPLE_EVERY).then(Instant::now);
        let slow = room.deliver(&frame);
        self.core_output.ledger.mirror();
        if slow > 0 {
            self.metrics
                .slow_consumer_closes
                .fetch_add(slow, Ordering::Relaxed);
        }
        if let Some(started) = started {
            self.metrics.record_fanout(started.elapsed());
        }
    }

    /// Calls `visit` for every local subscriber (keepalive sweep, shutdown). `visit` must not
    /// join or leave rooms.
    pub fn for_each_subscriber(&self, mut visit: impl FnMut(&Rc<Subscriber>)) {
        for room in self.rooms.borrow().values() {
            room.for_each(&mut visit);
        }
    }

    /// Number of local subscribers across rooms.
    pub fn subscriber_count(&self) -> usize {
        self.rooms
            .borrow()
            .values()
            .map(|room| room.member_count())
            .sum()
    }
}

/// A core's fan-out without sockets or runtime, for benches and tests (`crate::testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::sync::mpsc::UnboundedSender;

    use super::Hub;
    use crate::budget::{CoreLedger, FanoutBudget};
    use crate::fanout::mail::{Mail, Mailboxes};
    use crate::metrics::CoreMetrics;
    use crate::output::testing::attach_stub;
    use crate::output::{CoreOutput, Subscriber};

    /// One core's fan-out without sockets or runtime: its hub and what the hub reports to.
    #[derive(Debug)]
    pub struct TestCore {
        /// The hub.
        pub hub: Hub,
        /// The ledger, flush list and ended list its subscribers report to.
        pub core_output: Rc<CoreOutput>,
        /// Its metrics.
        pub metrics: Arc<CoreMetrics>,
        /// The fan-out budget it charges.
        pub budget: Arc<FanoutBudget>,
    }

    impl TestCore {
        /// Core `index`, mailing to `peers`, charging `budget` (made for at least `index + 1`
        /// cores).
        pub fn new(
            index: usize,
            peers: Vec<UnboundedSender<Mail>>,
            budget: Arc<FanoutBudget>,
        ) -> Self {
            let core_output = Rc::new(CoreOutput::new(CoreLedger::new(index, Arc::clone(&budget))));
            let metrics = Arc::new(CoreMetrics::default());
            let hub = Hub::new(
                Rc::clone(&core_output),
                Mailboxes::new(peers, Arc::clone(&budget)),
                None,
                Arc::clone(&metrics),
                Arc::clone(&budget),
            );
            TestCore {
                hub,
                core_output,
                metrics,
                budget,
            }
        }

        /// A single core without peers under an unbounded budget.
        pub fn standalone() -> Self {
            TestCore::new(0, Vec::new(), FanoutBudget::new(1, usize::MAX))
        }

        /// A subscriber of this core without a socket: frames only queue up.
        pub fn subscriber(&self, max_backlog: usize) -> Rc<Subscriber> {
            Rc::new(Subscriber::new(
                max_backlog,
                None,
                Rc::clone(&self.core_output),
                Instant::now(),
            ))
        }

        /// A subscriber of this core listed on its flush list like a connection, its writes left
        /// to the caller's flush step ([`flush_now`] with a stub `send`).
        pub fn flushed_subscriber(&self, max_backlog: usize) -> Rc<Subscriber> {
            let subscriber = self.subscriber(max_backlog);
            attach_stub(&subscriber);
            subscriber
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestCore;
    use super::*;
    use crate::fanout::Mail;
    use crate::output::testing::{detached, drain};
    use crate::ws::encode_message;

    #[test]
    fn publish_reaches_every_subscriber_of_the_room_only() {
        let core = TestCore::standalone();
        let hub = &core.hub;
        let a = detached(1 << 20);
        let b = detached(1 << 20);
        let other = detached(1 << 20);
        let room = hub.join("chat", Rc::clone(&a));
        hub.join("chat", Rc::clone(&b));
        hub.join("elsewhere", Rc::clone(&other));
        let frame = encode_message(MessageKind::Text, b"hi");
        hub.publish_frame(&room, frame.clone());
        assert_eq!(drain(&a), frame);
        assert_eq!(drain(&b), frame);
        assert!(drain(&other).is_empty());
        assert_eq!(core.metrics.rooms.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn publish_named_reaches_local_room_and_peers() {
        let (peer_tx, mut peer_rx) = tokio::sync::mpsc::unbounded_channel();
        let core = TestCore::new(0, vec![peer_tx], FanoutBudget::new(1, usize::MAX));
        let hub = &core.hub;
        let member = detached(1 << 20);
        hub.join("here", Rc::clone(&member));
        hub.publish_named("here", MessageKind::Text, b"hi");
        assert_eq!(drain(&member), b"\x81\x02hi");
        // No local room: still mailed to the other core, which may have members.
        hub.publish_named("elsewhere", MessageKind::Binary, b"x");
        let rooms: Vec<_> = std::iter::from_fn(|| peer_rx.try_recv().ok())
            .map(|mail| match mail {
                Mail::Broadcast { room, frame } => (room.to_string(), frame.to_vec()),
                Mail::Shutdown => panic!("unexpected shutdown mail"),
            })
            .collect();
        assert_eq!(
            rooms,
            [
                ("here".to_owned(), b"\x81\x02hi".to_vec()),
                ("elsewhere".to_owned(), vec![0x82, 1, b'x'])
            ]
        );
    }

    #[test]
    fn leave_keeps_slots_consistent_and_drops_empty_rooms() {
        let core = TestCore::standalone();
        let hub = &core.hub;
        let subs: Vec<_> = (0..3).map(|_| detached(1 << 20)).collect();
        let room = subs
            .iter()
            .map(|s| hub.join("r", Rc::clone(s)))
            .last()
            .unwrap();
        hub.leave(&room, &subs[0]);
        assert_eq!(room.member_count(), 2);
        hub.leave(&room, &subs[2]);
        hub.leave(&room, &subs[2]);
        assert_eq!(room.member_count(), 1);
        hub.publish_frame(&room, encode_message(MessageKind::Binary, b"x"));
        assert_eq!(drain(&subs[1]), [0x82, 1, b'x']);
        hub.leave(&room, &subs[1]);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(core.metrics.rooms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn published_messages_count_against_the_budget_until_written() {
        let budget = FanoutBudget::new(1, 1 << 20);
        let core = TestCore::new(0, Vec::new(), Arc::clone(&budget));
        let subscriber = core.subscriber(1 << 20);
        let room = core.hub.join("r", Rc::clone(&subscriber));
        core.hub.publish(&room, MessageKind::Text, b"hello");
        assert!(budget.used() > 7 + crate::budget::FRAME_HANDLE_BYTES);
        assert_eq!(drain(&subscriber), b"\x81\x05hello");
        assert_eq!(budget.used(), 0, "written: frame freed, handle released");
    }
}
