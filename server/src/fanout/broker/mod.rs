//! Several nodes, one room: scale-out through Redis pub/sub (`--broker`).
//!
//! Every node publishes each message its clients send (and each `POST /publish`) to the Redis
//! channel `{--broker-prefix}{room}` (`ringcast:lobby`), and subscribes to a room's channel
//! while any of its cores has a member of the room. A node delivers its own clients' messages
//! straight away, as without a broker, and skips their echo from Redis by the node id in the
//! envelope (`envelope.rs`): local delivery costs nothing more and keeps working while
//! Redis is down; the other nodes get the message one Redis hop later. Delivery across nodes is
//! at most once, as in Centrifugo's pub/sub mode: what is published while a link is down, or
//! while a node is not yet subscribed, is not replayed.
//!
//! Two threads per node, each with its own blocking Redis connection (the `redis` crate):
//! - the publish link (`publish_link.rs`) takes messages from one bounded queue the cores
//!   fill without waiting (`--broker-queue`; full or link down: the message is not sent to
//!   other nodes, counted) and sends what has queued as one pipeline per round trip;
//! - the subscribe link (`subscribe_link.rs`) follows the rooms the cores have members of,
//!   and hands each message from another node to every core through the cores' mailboxes, as a
//!   core hands its own: the frame is copied once per node and shared by every core, and is
//!   charged to the fan-out budget like any other. It reads the next message only while the
//!   budget has room, so a node that cannot keep up leaves the backlog in Redis, which bounds
//!   it too (`client-output-buffer-limit pubsub`, 32 MiB by default) by dropping the link; the
//!   node then reconnects and resubscribes.
//!
//! Why threads and not the cores' runtimes: a subscription per core would make Redis send, and
//! each node copy, every message once per core instead of once per node; and the crate's async
//! pub/sub reads the socket into an unbounded channel whatever the reader's pace, where the
//! blocking one reads only when asked.
//!
//! Faults: a link that fails logs once, reports down (`ringcast_broker_up` 0, `/readyz` 503),
//! and reconnects with backoff (`reconnect.rs`: 100 ms doubling to 2 s); the subscribe link
//! then subscribes to every room with local members again. Local rooms work throughout.

mod envelope;
mod publish_link;
mod reconnect;
mod subscribe_link;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// How often a link thread looks at the stop flag while it waits.
const POLL: Duration = Duration::from_millis(25);
/// A link that has not heard from Redis for this long pings it, so a Redis that went away is
/// noticed before a message is lost on a dead connection.
const IDLE_PING: Duration = Duration::from_secs(1);

/// A message for the other nodes, waiting for the publish link.
#[derive(Debug)]
pub struct Outgoing {
    /// Room name.
    pub room: Arc<str>,
    /// The encoded frame (charged to the fan-out budget while it waits).
    pub frame: Bytes,
}

/// The node's side of the broker, shared by its cores and the two link threads.
#[derive(Debug)]
pub struct Broker {
    /// This node's id in envelopes: random per process.
    node_id: u64,
    /// `--broker-prefix`.
    prefix: String,
    /// The publish link's queue.
    outbound: SyncSender<Outgoing>,
    /// Rooms with local members: how many cores have members of each.
    interest: Mutex<HashMap<Arc<str>, usize>>,
    /// Set when `interest` changed since the subscribe link last looked.
    interest_changed: AtomicBool,
    /// Counters and link states (shared with `/metrics` and `/readyz`).
    stats: Arc<BrokerStats>,
    /// Failures of either link so far: the publish link reconnects when the subscribe link
    /// saw Redis go (a restarted Redis would drop its next batch otherwise).
    link_failures: AtomicU64,
    /// Set when the server stops: the link threads end.
    stopping: AtomicBool,
}

impl Broker {
    /// Connects this node to the broker: starts both link threads (they connect, and
    /// reconnect, by themselves, counting into `stats`) that hand messages from other nodes to
    /// `cores` (every core's mailbox), charged to `budget`, if their payload is at most
    /// `max_message` bytes.
    pub fn start(
        config: &BrokerConfig,
        stats: Arc<BrokerStats>,
        cores: Mailboxes,
        budget: Arc<FanoutBudget>,
        max_message: usize,
    ) -> std::io::Result<BrokerThreads> {
        let (outbound, queue) = sync_channel(config.queue);
        let broker = Arc::new(Broker {
            node_id: std::collections::hash_map::RandomState::new()
                .hash_one((std::process::id(), std::time::SystemTime::now())),
            prefix: config.prefix.clone(),
            outbound,
            interest: Mutex::new(HashMap::new()),
            interest_changed: AtomicBool::new(true),
            stats,
            link_failures: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let publish = {
            let (broker, client) = (Arc::clone(&broker), config.client.clone());
            std::thread::Builder::new()
                .name("ringcast-broker-pub".to_owned())
                .spawn(move || publish_link::run(&broker, &client, &queue))?
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

    /// This node's id in envelopes.
    pub fn node_id(&self) -> u64 {
        self.node_id
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

    /// Queues a message a local client published for the other nodes, without waiting: while
    /// the publish link is down or the queue is full it is dropped (and counted).
    pub fn forward(&self, room: &Arc<str>, frame: &Bytes) {
        if !self.stats.publish_up.load(Ordering::Relaxed) {
            self.stats.drop_messages(DropReason::LinkDown, 1);
            return;
        }
        let outgoing = Outgoing {
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
    }

    /// A core has its first member of `room`.
    pub fn room_opened(&self, room: &Arc<str>) {
        let mut interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        *interest.entry(Arc::clone(room)).or_insert(0) += 1;
        self.interest_changed.store(true, Ordering::Release);
    }

    /// A core's last member of `room` left.
    pub fn room_closed(&self, room: &str) {
        let mut interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cores) = interest.get_mut(room) {
            *cores -= 1;
            if *cores == 0 {
                interest.remove(room);
            }
        }
        self.interest_changed.store(true, Ordering::Release);
    }

    /// The rooms with local members, if they changed since the last call.
    pub fn changed_interest(&self) -> Option<Vec<Arc<str>>> {
        if !self.interest_changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        let interest = self.interest.lock().unwrap_or_else(PoisonError::into_inner);
        Some(interest.keys().cloned().collect())
    }

    /// Makes the next [`changed_interest`](Broker::changed_interest) return every room (after
    /// a reconnection, to subscribe again).
    pub fn resubscribe_all(&self) {
        self.interest_changed.store(true, Ordering::Release);
    }

    /// How many times either link failed so far.
    pub fn link_failures(&self) -> u64 {
        self.link_failures.load(Ordering::Acquire)
    }

    /// True once the server stops.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
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

    /// Ends both links (within [`POLL`] or a round trip) and joins their threads.
    pub fn stop(&mut self) {
        self.broker.stopping.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a broker link thread panicked");
            }
        }
    }
}
