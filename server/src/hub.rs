//! Rooms of one core, publishing, and cross-core fan-out.
//!
//! A message is encoded once into a `Bytes` by the publisher's reader task. [`Hub::publish`]
//! pushes a clone (a reference-count increment) into the queue of every local subscriber of the
//! room — the room is found once per message (the publisher holds it), then its subscriber list
//! is iterated — and sends one clone to each other core's mailbox. Each mailbox is a FIFO
//! channel, so every core sees one publisher's messages in the order they were received.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::CoreMetrics;
use crate::subscriber::Subscriber;

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
    pub fn deliver(&self, frame: &Bytes) -> u64 {
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
    /// Index of this core.
    core: usize,
    /// Coarse clock, refreshed by the keepalive sweep; readers stamp inbound traffic with it
    /// instead of reading the clock per read.
    coarse_now: Cell<Instant>,
}

impl Hub {
    /// A hub for core `core` that forwards to `peers` and counts into `metrics[core]`.
    pub fn new(
        core: usize,
        peers: Vec<UnboundedSender<Mail>>,
        metrics: Arc<[CoreMetrics]>,
    ) -> Self {
        Hub {
            rooms: RefCell::new(HashMap::new()),
            peers,
            metrics,
            core,
            coarse_now: Cell::new(Instant::now()),
        }
    }

    /// A single-core hub without peers (benches and tests without sockets).
    pub fn standalone() -> Self {
        Hub::new(0, Vec::new(), Arc::from(vec![CoreMetrics::default()]))
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
        }
    }

    /// Publishes an encoded frame from a local client: every local subscriber of `room`, then
    /// one clone per other core.
    pub fn publish(&self, room: &Room, frame: Bytes) {
        let slow = room.deliver(&frame);
        self.count_slow(slow);
        for peer in &self.peers {
            // A closed mailbox means that core is shutting down; its clients get nothing more.
            let _ = peer.send(Mail::Broadcast {
                room: Arc::clone(&room.name),
                frame: frame.clone(),
            });
        }
    }

    /// Delivers a frame another core published to this core's subscribers of `room`.
    pub fn deliver_from_peer(&self, room: &str, frame: &Bytes) {
        let target = self.rooms.borrow().get(room).cloned();
        if let Some(target) = target {
            let slow = target.deliver(frame);
            self.count_slow(slow);
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
    use crate::frame::{encode_message, MessageKind};

    fn drain(subscriber: &Subscriber) -> Vec<Bytes> {
        let mut batch = Vec::new();
        subscriber.take_batch(&mut batch, 1024);
        batch
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
        assert_eq!(drain(&a), vec![frame.clone()]);
        assert_eq!(drain(&b), vec![frame]);
        assert!(drain(&other).is_empty());
        assert_eq!(hub.metrics().rooms.load(Ordering::Relaxed), 2);
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
        assert_eq!(drain(&subs[1]).len(), 1);
        hub.leave(&room, &subs[1]);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.metrics().rooms.load(Ordering::Relaxed), 0);
    }
}
