//! Several nodes, one room: scale-out through Redis (`--broker`), which orders every room.
//!
//! Every node sends each message its clients publish (and each `POST /publish`) to Redis,
//! where a script (`publish_link.rs`) gives it its room's next offset in the room's epoch and
//! publishes it on the channel `{--broker-prefix}{room}` (`ringcast:lobby`) in an envelope
//! that carries both (`envelope.rs`). Every node subscribes to a room's channel while any of
//! its cores has a member of the room, and delivers the room's messages, its own clients'
//! included, as they come back: the room's home core (`stream.rs`) takes the epoch and offset
//! from the envelope instead of counting, so every node has the same order, offsets and
//! epochs, and a client can recover on another node than the one it left. A node that sees a
//! hole in a room's offsets (it missed messages: its link was down, or it was not subscribed)
//! cannot continue positions across it: its clients that count offsets are closed to
//! reconnect, and a position before the hole is told `reset`, never served a gap.
//!
//! While the links are down the node orders its own clients' messages itself (in an epoch of
//! its own, so no position crosses from one to the other): local rooms keep working. Delivery
//! across nodes is at most once: what is published while a link is down, or while a node is
//! not yet subscribed, does not reach that node.
//!
//! Two threads per node, each with its own blocking Redis connection:
//! - the publish link (`publish_link.rs`, the `redis` crate) takes messages from one bounded
//!   queue the cores fill without waiting (`--broker-queue`; full or link down: the message is
//!   ordered locally, and not sent to other nodes, counted) and sends what has queued as one
//!   pipeline per round trip;
//! - the subscribe link (`subscribe_link.rs`) follows the rooms the cores have members of,
//!   and hands each message to the room's home core through the cores' mailboxes, as a core
//!   hands its own: the frame is copied once per node and shared by every core, and is
//!   charged to the fan-out budget like any other. It reads the next message only while the
//!   budget has room, so a node that cannot keep up leaves the backlog in Redis, which bounds
//!   it too (`client-output-buffer-limit pubsub`, 32 MiB by default) by dropping the link; the
//!   node then reconnects and resubscribes.
//!
//! Why threads and not the cores' runtimes: a subscription per core would make Redis send, and
//! each node copy, every message once per core instead of once per node; and the crate's async
//! pub/sub reads the socket into an unbounded channel whatever the reader's pace, where a
//! blocking link reads only when asked.
//!
//! Faults: a link that fails logs once, reports down (`ringcast_broker_up` 0, `/readyz` 503),
//! and reconnects with backoff (`reconnect.rs`: 100 ms doubling to 2 s), on its own: the
//! other link only checks its connection. The subscribe link then subscribes to every room
//! with local members again. A reply (to EVALSHA, SUBSCRIBE, UNSUBSCRIBE, PING) is waited for
//! up to [`REPLY_TIMEOUT`]; one that takes longer fails the link. Local rooms work throughout.

mod envelope;
mod publish_link;
mod reconnect;
mod resp;
mod subscribe_link;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use super::mail::Mailboxes;
use crate::budget::FanoutBudget;
use crate::config::BrokerConfig;
use crate::metrics::{BrokerStats, DropReason};

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a link thread looks at the stop flag (and the subscribe link at the rooms) while
/// it waits for work; never a bound on a reply.
const POLL: Duration = Duration::from_millis(25);
/// The longest a link waits for Redis to answer a command (or, while a reply is due, for its
/// next bytes): a remote Redis, or one busy with a slow command, answers late, not never.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// A link that has not heard from Redis for this long pings it, so a Redis that went away is
/// noticed before a message is lost on a dead connection.
const IDLE_PING: Duration = Duration::from_secs(1);

/// What waits for the publish link.
#[derive(Debug)]
pub enum Outgoing {
    /// A message for Redis to order and publish.
    Message {
        /// Room name.
        room: Arc<str>,
        /// The encoded frame (charged to the fan-out budget while it waits).
        frame: Bytes,
    },
    /// A room's home core asks where the room stands in Redis (its epoch, made if it has
    /// none, and last offset): it has clients to tell and has not heard the room from Redis
    /// yet. Asked only once this node is subscribed to the room, so every later message
    /// reaches it.
    Anchor(Arc<str>),
}

/// The node's side of the broker, shared by its cores and the two link threads.
#[derive(Debug)]
pub struct Broker {
    /// `--history-ttl`: Redis forgets a room's epoch after as long without a message.
    history_ttl: Duration,
    /// `--broker-prefix`.
    prefix: String,
    /// The publish link's queue.
    outbound: SyncSender<Outgoing>,
    /// Rooms with local members, and which of them changed since the subscribe link looked.
    interest: Mutex<Interest>,
    /// Set when `interest` changed since the subscribe link last looked.
    interest_changed: AtomicBool,
    /// Rooms whose home core asked where they stand (see [`Outgoing::Anchor`]), waiting for
    /// the subscribe link to have subscribed to them.
    anchors: Mutex<Vec<Arc<str>>>,
    /// Counters and link states (shared with `/metrics` and `/readyz`).
    stats: Arc<BrokerStats>,
    /// Set when the subscribe link lost its connection: the publish link pings before its next
    /// batch (a restarted Redis would drop that batch on a dead connection otherwise).
    publish_check: AtomicBool,
    /// Set when the server stops: the link threads end.
    stopping: AtomicBool,
}

impl Broker {
    /// Connects this node to the broker: starts both link threads (they connect, and
    /// reconnect, by themselves, counting into `stats`) that hand the rooms' messages to
    /// `cores` (every core's mailbox), charged to `budget`, if their payload is at most
    /// `max_message` bytes; a room's epoch is kept in Redis until it had no message for
    /// `history_ttl`.
    pub fn start(
        config: &BrokerConfig,
        stats: Arc<BrokerStats>,
        cores: Mailboxes,
        budget: Arc<FanoutBudget>,
        max_message: usize,
        history_ttl: Duration,
    ) -> std::io::Result<BrokerThreads> {
        let (outbound, queue) = sync_channel(config.queue);
        let broker = Arc::new(Broker {
            history_ttl,
            prefix: config.prefix.clone(),
            outbound,
            interest: Mutex::new(Interest::default()),
            interest_changed: AtomicBool::new(false),
            anchors: Mutex::new(Vec::new()),
            stats,
            publish_check: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let publish = {
            let (broker, client, cores) =
                (Arc::clone(&broker), config.client.clone(), cores.clone());
            std::thread::Builder::new()
                .name("ringcast-broker-pub".to_owned())
                .spawn(move || publish_link::run(&broker, &client, &queue, &cores))?
        };
        let relay = subscribe_link::Relay {
            cores,
            budget,
            max_message,
        };
        let subscribe = {
            let (broker, client) = (Arc::clone(&broker), config.client.clone());
            std::thread::Builder::new()
                .name("ringcast-broker-sub".to_owned())
                .spawn(move || subscribe_link::run(&broker, &client, &relay))?
        };
        Ok(BrokerThreads {
            broker,
            threads: vec![publish, subscribe],
        })
    }

    /// The Redis channel of `room`.
    pub fn channel(&self, room: &str) -> String {
        let mut channel = String::new();
        self.write_channel(&mut channel, room);
        channel
    }

    /// Writes the Redis channel of `room` into `out` (cleared first): the publish link reuses
    /// one buffer instead of allocating a name per message.
    pub fn write_channel(&self, out: &mut String, room: &str) {
        out.clear();
        out.push_str(&self.prefix);
        out.push_str(room);
    }

    /// Queues a message a local client published for Redis to order, without waiting (every
    /// node, this one too, delivers it when it comes back); false while either link is down
    /// (this node would not get it back): the caller orders it on this node alone, and it is
    /// counted as dropped for the other nodes. A message the queue has no room for is dropped
    /// for every node, this one included (counted): ordering it here alone would put it
    /// before its publisher's earlier messages, still on their way through Redis.
    pub fn forward(&self, room: &Arc<str>, frame: &Bytes) -> bool {
        if !self.in_touch() {
            self.stats.drop_messages(DropReason::LinkDown, 1);
            return false;
        }
        let outgoing = Outgoing::Message {
            room: Arc::clone(room),
            frame: frame.clone(),
        };
        match self.outbound.try_send(outgoing) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.stats.drop_messages(DropReason::QueueFull, 1),
            // The publish link's thread has ended (the server is stopping).
            Err(TrySendError::Disconnected(_)) => {
                self.stats.drop_messages(DropReason::LinkDown, 1);
            }
        }
        true
    }

    /// `room`'s home core asks where the room stands in Redis: the answer comes by mail
    /// (`Mail::Anchor`), unless a link fails first.
    pub fn anchor(&self, room: &Arc<str>) {
        let mut anchors = self.anchors.lock().unwrap_or_else(PoisonError::into_inner);
        anchors.push(Arc::clone(room));
    }

    /// The rooms whose home core asked where they stand (called before the subscribe link
    /// looks at the rooms: each was joined before it was asked about, so once the link has
    /// subscribed to what it took after this, it has subscribed to these).
    pub fn take_anchors(&self) -> Vec<Arc<str>> {
        let mut anchors = self.anchors.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *anchors)
    }

    /// Hands `rooms` (from [`Broker::take_anchors`], now subscribed to) to the publish link to
    /// ask Redis; those the queue has no room for wait for the next call.
    pub fn ask_anchors(&self, rooms: Vec<Arc<str>>) {
        let mut rooms = rooms.into_iter();
        for room in rooms.by_ref() {
            match self.outbound.try_send(Outgoing::Anchor(room)) {
                Ok(()) => {}
                Err(TrySendError::Full(Outgoing::Anchor(room))) => {
                    let mut anchors = self.anchors.lock().unwrap_or_else(PoisonError::into_inner);
                    anchors.push(room);
                    anchors.extend(rooms);
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// A core has its first member of `room`.
    pub fn room_opened(&self, room: &Arc<str>) {
        let mut interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        if interest.opened(room) {
            self.interest_changed.store(true, Ordering::Release);
        }
    }

    /// A core's last member of `room` left.
    pub fn room_closed(&self, room: &str) {
        let mut interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        if interest.closed(room) {
            self.interest_changed.store(true, Ordering::Release);
        }
    }

    /// The rooms that gained their first local member or lost their last since the last call,
    /// if any; with `all` (on a fresh connection), every room with local members.
    pub fn take_interest(&self, all: bool) -> Option<InterestChange> {
        if !self.interest_changed.swap(false, Ordering::AcqRel) && !all {
            return None;
        }
        let mut interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        Some(interest.take(all))
    }

    /// Makes the publish link ping before its next batch (the subscribe link lost Redis).
    pub fn check_publish_link(&self) {
        self.publish_check.store(true, Ordering::Release);
    }

    /// True once after [`check_publish_link`](Broker::check_publish_link).
    pub fn take_publish_check(&self) -> bool {
        self.publish_check.swap(false, Ordering::AcqRel)
    }

    /// Whether both links are up: Redis orders this node's messages and this node hears the
    /// rooms' order. While not, a position is not continued here (`stream.rs`): what the other
    /// nodes publish meanwhile never reaches this node.
    pub fn in_touch(&self) -> bool {
        self.stats.is_up()
    }

    /// True once the server stops.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// The rooms with local members, kept so that a join or leave costs O(1) under the lock the
/// cores share, however many rooms there are.
#[derive(Debug, Default)]
struct Interest {
    /// How many cores have members of each room.
    cores: HashMap<Arc<str>, usize>,
    /// Rooms that gained their first or lost their last local member since the subscribe link
    /// looked.
    changed: HashSet<Arc<str>>,
    /// More changed than [`Interest::changed_limit`]: the link takes every room instead.
    overflowed: bool,
}

impl Interest {
    /// A core has its first member of `room`; true if the node has its first.
    fn opened(&mut self, room: &Arc<str>) -> bool {
        let cores = self.cores.entry(Arc::clone(room)).or_insert(0);
        *cores += 1;
        let first = *cores == 1;
        if first {
            self.changed(room);
        }
        first
    }

    /// A core's last member of `room` left; true if it was the node's last.
    fn closed(&mut self, room: &str) -> bool {
        let Some(cores) = self.cores.get_mut(room) else {
            return false;
        };
        *cores -= 1;
        if *cores > 0 {
            return false;
        }
        match self.cores.remove_entry(room) {
            Some((name, _)) => {
                self.changed(&name);
                true
            }
            None => false,
        }
    }

    /// What changed since the last call: the changed rooms, or every room (with `all`, or
    /// when too many changed). O(changes), except for every room.
    fn take(&mut self, all: bool) -> InterestChange {
        if all || std::mem::take(&mut self.overflowed) {
            self.changed.clear();
            return InterestChange::All(self.cores.keys().cloned().collect());
        }
        let rooms = (self.changed.drain())
            .map(|room| {
                let wanted = self.cores.contains_key(&room);
                (room, wanted)
            })
            .collect();
        InterestChange::Rooms(rooms)
    }

    /// Notes that `room` changed, keeping `changed` within [`Interest::changed_limit`].
    fn changed(&mut self, room: &Arc<str>) {
        if self.overflowed {
            return;
        }
        if self.changed.len() >= self.changed_limit() {
            self.changed.clear();
            self.overflowed = true;
            return;
        }
        self.changed.insert(Arc::clone(room));
    }

    /// The most changed rooms kept (while the subscribe link is down, say): beyond it the link
    /// compares every room once, which costs no more per change than the changes it replaces.
    fn changed_limit(&self) -> usize {
        self.cores.len().max(1024)
    }
}

/// What changed in the rooms with local members.
#[derive(Debug, PartialEq)]
pub enum InterestChange {
    /// Every room with local members (subscribe to these, unsubscribe from the rest).
    All(Vec<Arc<str>>),
    /// Rooms that changed, each with whether it has local members now.
    Rooms(Vec<(Arc<str>, bool)>),
}

/// The running link threads; stopping joins them.
#[derive(Debug)]
pub struct BrokerThreads {
    /// The shared side.
    broker: Arc<Broker>,
    /// The two link threads.
    threads: Vec<JoinHandle<()>>,
}

impl BrokerThreads {
    /// The handle the cores' hubs use.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Ends both links (within [`POLL`], or [`REPLY_TIMEOUT`] while a reply is due) and joins
    /// their threads.
    pub fn stop(&mut self) {
        self.broker.stopping.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a broker link thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` rooms named `prefix0`, `prefix1`, ...
    fn rooms(prefix: &str, count: usize) -> Vec<Arc<str>> {
        (0..count)
            .map(|i| Arc::from(format!("{prefix}{i}")))
            .collect()
    }

    #[test]
    fn a_room_that_opens_or_closes_among_many_costs_the_link_one_change() {
        let mut interest = Interest::default();
        let many = rooms("big", 10_000);
        for room in &many {
            interest.opened(room);
        }
        // A fresh connection takes every room.
        let InterestChange::All(all) = interest.take(true) else {
            panic!("all asked for");
        };
        assert_eq!(all.len(), 10_000);
        assert_eq!(interest.take(false), InterestChange::Rooms(Vec::new()));

        // Then each change is one entry, however many rooms there are.
        let new: Arc<str> = Arc::from("new");
        assert!(interest.opened(&new));
        assert!(!interest.opened(&new), "a second core's first member");
        assert_eq!(
            interest.take(false),
            InterestChange::Rooms(vec![(Arc::clone(&new), true)])
        );
        assert!(!interest.closed("new"), "one core still has members");
        assert!(interest.closed("new"));
        assert!(interest.closed(&many[0]));
        let InterestChange::Rooms(mut changed) = interest.take(false) else {
            panic!("two changes fit the queue");
        };
        changed.sort();
        assert_eq!(changed, vec![(Arc::clone(&many[0]), false), (new, false)]);
        assert_eq!(interest.take(false), InterestChange::Rooms(Vec::new()));
    }

    #[test]
    fn changes_past_the_limit_make_the_link_compare_every_room_once() {
        let mut interest = Interest::default();
        let kept: Arc<str> = Arc::from("kept");
        interest.opened(&kept);
        // Rooms that come and go while the link does not look (it is reconnecting, say).
        for room in rooms("brief", 5_000) {
            interest.opened(&room);
            interest.closed(&room);
        }
        assert_eq!(interest.changed.len(), 0, "dropped for a full comparison");
        assert_eq!(interest.take(false), InterestChange::All(vec![kept]));
        assert_eq!(interest.take(false), InterestChange::Rooms(Vec::new()));
    }

    #[test]
    fn a_room_that_opens_and_closes_between_two_looks_is_one_change() {
        let mut interest = Interest::default();
        let room: Arc<str> = Arc::from("brief");
        for _ in 0..3 {
            interest.opened(&room);
            interest.closed("brief");
        }
        assert_eq!(
            interest.take(false),
            InterestChange::Rooms(vec![(room, false)])
        );
    }
}
