//! Rooms of one core, publishing, and cross-core fan-out.
//!
//! A message is encoded once into a `Bytes` as the core's reader decodes it from its publisher
//! ([`Hub::publish_message`], which counts the frame's bytes in the fan-out budget until its
//! last handle drops). [`Hub::publish`] pushes a clone (a reference-count increment) into the
//! queue of every local subscriber of the room — the room is found once per message (the
//! publisher holds it), then its subscriber list is iterated — and sends one clone to each other
//! core's mailbox. Each mailbox is a FIFO channel, so every core sees one publisher's messages
//! in the order they were received.
//!
//! The mailboxes are bounded by the fan-out budget (`memory.rs`), not by a length: every mail
//! is counted while it waits, a publisher is not read while the budget is exhausted, and a core
//! takes mail only while the budget has room (`cores.rs`), so a core that falls behind makes
//! the publishers wait instead of queueing without limit.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::budget::{CoreLedger, FanoutMemory};
use crate::fanout::broker::Broker;
use crate::metrics::{CoreMetrics, FANOUT_SAMPLE_EVERY};
use crate::output::queue::LocalFrame;
use crate::output::subscriber::{CoreOutput, Subscriber};
use crate::ws::encode::{encode_frame_into, MessageKind};

/// What one mail costs while it waits in a channel (its slot; the frame is counted apart).
pub const MAIL_BYTES: usize = std::mem::size_of::<Mail>();

/// What one core sends another.
#[derive(Debug)]
pub enum Mail {
    /// A frame published on another core, for this core's subscribers of `room`.
    Broadcast {
        /// Room name.
        room: Arc<str>,
        /// The encoded frame, shared with the publishing core.
        frame: Bytes,
    },
    /// Graceful shutdown: stop accepting, close every client with 1001, drain, exit.
    Shutdown,
}

/// The local subscribers of one room.
#[derive(Debug)]
pub struct Room {
    /// Room name (shared with other cores' mail).
    name: Arc<str>,
    /// Subscribers on this core; each knows its index for O(1) removal.
    subscribers: RefCell<Vec<Rc<Subscriber>>>,
}

impl Room {
    /// Pushes `frame` to every subscriber; returns how many became slow consumers.
    pub fn deliver(&self, frame: &LocalFrame) -> u64 {
        let subscribers = self.subscribers.borrow();
        let mut slow = 0;
        for subscriber in subscribers.iter() {
            slow += u64::from(subscriber.offer(frame));
        }
        slow
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of local subscribers.
    pub fn len(&self) -> usize {
        self.subscribers.borrow().len()
    }

    /// True when no local subscriber is left.
    pub fn is_empty(&self) -> bool {
        self.subscribers.borrow().is_empty()
    }
}

/// The rooms of one core and the mailboxes of the others.
#[derive(Debug)]
pub struct Hub {
    /// Rooms with at least one local subscriber.
    rooms: RefCell<HashMap<Arc<str>, Rc<Room>>>,
    /// Mailboxes of the other cores (not this one).
    peers: Vec<UnboundedSender<Mail>>,
    /// Every core's metrics; this hub writes `metrics[core]`.
    metrics: Arc<[CoreMetrics]>,
    /// This core's frame-handle ledger and flush list, shared with its subscribers.
    output: Rc<CoreOutput>,
    /// Index of this core.
    core: usize,
    /// Coarse clock, refreshed by the keepalive sweep; readers stamp inbound traffic with it
    /// instead of reading the clock per read.
    coarse_now: Cell<Instant>,
    /// Messages fanned out on this core; every [`FANOUT_SAMPLE_EVERY`]-th is timed.
    fanned_out: Cell<u32>,
    /// The other nodes, with `--broker`.
    broker: Option<Arc<Broker>>,
}

impl Hub {
    /// A hub for core `core` that forwards to `peers`, counts into `metrics[core]` and charges
    /// held frames to `memory`.
    pub fn new(
        core: usize,
        peers: Vec<UnboundedSender<Mail>>,
        metrics: Arc<[CoreMetrics]>,
        memory: Arc<FanoutMemory>,
    ) -> Self {
        Hub {
            rooms: RefCell::new(HashMap::new()),
            peers,
            metrics,
            output: Rc::new(CoreOutput::new(CoreLedger::new(core, memory))),
            core,
            coarse_now: Cell::new(Instant::now()),
            fanned_out: Cell::new(0),
            broker: None,
        }
    }

    /// The hub, also publishing to and following rooms on the other nodes through `broker`.
    pub fn with_broker(mut self, broker: Option<Arc<Broker>>) -> Self {
        self.broker = broker;
        self
    }

    /// A single-core hub without peers (benches and tests without sockets).
    pub fn standalone() -> Self {
        Hub::new(
            0,
            Vec::new(),
            Arc::from(vec![CoreMetrics::default()]),
            FanoutMemory::unbounded(),
        )
    }

    /// This core's ledger and flush list (given to each new subscriber).
    pub fn output(&self) -> &Rc<CoreOutput> {
        &self.output
    }

    /// The process-wide fan-out budget.
    pub fn memory(&self) -> &Arc<FanoutMemory> {
        self.output.ledger.memory()
    }

    /// This core's metrics.
    pub fn metrics(&self) -> &CoreMetrics {
        &self.metrics[self.core]
    }

    /// Adds `subscriber` to `room` (created on first join); returns the room.
    pub fn join(&self, room: &str, subscriber: Rc<Subscriber>) -> Rc<Room> {
        let mut rooms = self.rooms.borrow_mut();
        let room = match rooms.get(room) {
            Some(existing) => Rc::clone(existing),
            None => {
                let name: Arc<str> = Arc::from(room);
                let created = Rc::new(Room {
                    name: Arc::clone(&name),
                    subscribers: RefCell::new(Vec::new()),
                });
                if let Some(broker) = &self.broker {
                    broker.room_opened(&name);
                }
                rooms.insert(name, Rc::clone(&created));
                CoreMetrics::add(&self.metrics().rooms, 1);
                created
            }
        };
        let mut subscribers = room.subscribers.borrow_mut();
        subscriber.set_room_slot(subscribers.len());
        subscribers.push(subscriber);
        drop(subscribers);
        room
    }

    /// Removes `subscriber` from `room`, dropping the room when it becomes empty.
    pub fn leave(&self, room: &Rc<Room>, subscriber: &Rc<Subscriber>) {
        let mut subscribers = room.subscribers.borrow_mut();
        let slot = subscriber.room_slot();
        let found = match subscribers.get(slot) {
            Some(at_slot) if Rc::ptr_eq(at_slot, subscriber) => Some(slot),
            _ => subscribers.iter().position(|s| Rc::ptr_eq(s, subscriber)),
        };
        let Some(slot) = found else { return };
        subscribers.swap_remove(slot);
        if let Some(moved) = subscribers.get(slot) {
            moved.set_room_slot(slot);
        }
        let now_empty = subscribers.is_empty();
        drop(subscribers);
        if now_empty && self.rooms.borrow_mut().remove(room.name()).is_some() {
            CoreMetrics::sub(&self.metrics().rooms, 1);
            if let Some(broker) = &self.broker {
                broker.room_closed(room.name());
            }
        }
    }

    /// Encodes a client's message once, its bytes counted in the fan-out budget until the
    /// last handle drops, and publishes it.
    pub fn publish_message(&self, room: &Room, kind: MessageKind, payload: &[u8]) {
        self.publish(room, self.encode(kind, payload));
    }

    /// Publishes a message from outside any room (`POST /publish`) like [`publish_message`]:
    /// to this core's subscribers of room `name` if it has any, and to every other core (which
    /// drops it if it has none) and node.
    ///
    /// [`publish_message`]: Hub::publish_message
    pub fn publish_to_name(&self, name: &str, kind: MessageKind, payload: &[u8]) {
        let frame = self.encode(kind, payload);
        let local = self.rooms.borrow().get(name).cloned();
        match local {
            Some(room) => self.publish(&room, frame),
            None => self.forward(&Arc::from(name), &frame),
        }
    }

    /// Publishes an encoded frame from a local client: every local subscriber of `room`, then
    /// one clone per other core and one to the broker.
    pub fn publish(&self, room: &Room, frame: Bytes) {
        self.deliver_locally(room, Rc::new(frame.clone()));
        self.forward(&room.name, &frame);
    }

    /// Sends a frame published on this node to the other cores and, with a broker, nodes.
    fn forward(&self, room: &Arc<str>, frame: &Bytes) {
        self.send_to_peers(room, frame);
        if let Some(broker) = &self.broker {
            broker.publish(room, frame);
        }
    }

    /// Encodes one frame, its bytes counted in the fan-out budget until the last handle drops.
    fn encode(&self, kind: MessageKind, payload: &[u8]) -> Bytes {
        let mut encoded = Vec::new();
        encode_frame_into(&mut encoded, kind.opcode(), payload);
        self.memory().track(encoded)
    }

    /// Sends one clone of `frame` to every other core's mailbox.
    fn send_to_peers(&self, room: &Arc<str>, frame: &Bytes) {
        for peer in &self.peers {
            self.memory().mail_sent(MAIL_BYTES);
            // A closed mailbox means that core is shutting down; its clients get nothing more.
            if peer
                .send(Mail::Broadcast {
                    room: Arc::clone(room),
                    frame: frame.clone(),
                })
                .is_err()
            {
                self.memory().mail_taken(MAIL_BYTES);
            }
        }
    }

    /// Delivers a frame another core published to this core's subscribers of `room`.
    pub fn deliver_from_peer(&self, room: &str, frame: Bytes) {
        self.memory().mail_taken(MAIL_BYTES);
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
        self.output.ledger.publish();
        self.count_slow(slow);
        if let Some(started) = started {
            self.metrics().record_fanout(started.elapsed());
        }
    }

    /// Calls `visit` for every local subscriber (keepalive sweep, shutdown). `visit` must not
    /// join or leave rooms.
    pub fn for_each_subscriber(&self, mut visit: impl FnMut(&Rc<Subscriber>)) {
        for room in self.rooms.borrow().values() {
            for subscriber in room.subscribers.borrow().iter() {
                visit(subscriber);
            }
        }
    }

    /// Number of local subscribers across rooms.
    pub fn subscriber_count(&self) -> usize {
        self.rooms.borrow().values().map(|room| room.len()).sum()
    }

    /// The coarse clock.
    pub fn now(&self) -> Instant {
        self.coarse_now.get()
    }

    /// Refreshes the coarse clock.
    pub fn set_now(&self, now: Instant) {
        self.coarse_now.set(now);
    }

    /// Counts new slow-consumer closes.
    fn count_slow(&self, slow: u64) {
        if slow > 0 {
            self.metrics()
                .slow_consumer_closes
                .fetch_add(slow, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::{encode_message, MessageKind};

    use crate::output::subscriber::drain_detached;

    fn drain(subscriber: &Rc<Subscriber>) -> Vec<u8> {
        drain_detached(subscriber)
    }

    #[test]
    fn publish_reaches_every_subscriber_of_the_room_only() {
        let hub = Hub::standalone();
        let a = Rc::new(Subscriber::detached(1 << 20));
        let b = Rc::new(Subscriber::detached(1 << 20));
        let other = Rc::new(Subscriber::detached(1 << 20));
        let room = hub.join("chat", Rc::clone(&a));
        hub.join("chat", Rc::clone(&b));
        hub.join("elsewhere", Rc::clone(&other));
        let frame = encode_message(MessageKind::Text, b"hi");
        hub.publish(&room, frame.clone());
        assert_eq!(drain(&a), frame);
        assert_eq!(drain(&b), frame);
        assert!(drain(&other).is_empty());
        assert_eq!(hub.metrics().rooms.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn publish_to_name_reaches_local_room_and_peers() {
        let (peer_tx, mut peer_rx) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(
            0,
            vec![peer_tx],
            Arc::from(vec![CoreMetrics::default()]),
            FanoutMemory::unbounded(),
        );
        let member = Rc::new(Subscriber::detached(1 << 20));
        hub.join("here", Rc::clone(&member));
        hub.publish_to_name("here", MessageKind::Text, b"hi");
        assert_eq!(drain(&member), b"\x81\x02hi");
        // No local room: still mailed to the other core, which may have members.
        hub.publish_to_name("elsewhere", MessageKind::Binary, b"x");
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
        let hub = Hub::standalone();
        let subs: Vec<_> = (0..3)
            .map(|_| Rc::new(Subscriber::detached(1 << 20)))
            .collect();
        let room = subs
            .iter()
            .map(|s| hub.join("r", Rc::clone(s)))
            .last()
            .unwrap();
        hub.leave(&room, &subs[0]);
        assert_eq!(room.len(), 2);
        hub.leave(&room, &subs[2]);
        hub.leave(&room, &subs[2]);
        assert_eq!(room.len(), 1);
        hub.publish(&room, encode_message(MessageKind::Binary, b"x"));
        assert_eq!(drain(&subs[1]), [0x82, 1, b'x']);
        hub.leave(&room, &subs[1]);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.metrics().rooms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn published_messages_count_against_the_budget_until_written() {
        let memory = FanoutMemory::new(1, 1 << 20);
        let hub = Hub::new(
            0,
            Vec::new(),
            Arc::from(vec![CoreMetrics::default()]),
            Arc::clone(&memory),
        );
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::clone(hub.output()),
            Instant::now(),
        ));
        let room = hub.join("r", Rc::clone(&subscriber));
        hub.publish_message(&room, MessageKind::Text, b"hello");
        assert!(memory.used() > 7 + crate::budget::FRAME_HANDLE_BYTES);
        assert_eq!(drain(&subscriber), b"\x81\x05hello");
        assert_eq!(memory.used(), 0, "written: frame freed, handle released");
    }
}
