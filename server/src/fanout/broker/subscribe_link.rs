//! The subscribe link: follows the rooms this node has members of, and hands every message
//! another node published in them to the cores.
//!
//! Between two messages (or every [`POLL`] when none come) the link compares the rooms the
//! cores have members of with its subscriptions and sends one SUBSCRIBE for the new ones and
//! one UNSUBSCRIBE for the gone ones. A message is read only while the fan-out budget has
//! room: the rest waits in Redis (see `broker.rs`). A link idle for [`IDLE_PING`] pings, so a
//! Redis that stopped answering is noticed, not only one that closed the connection.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::envelope::{self, Opened};
use super::reconnect::Reconnect;
use super::{Broker, CONNECT_TIMEOUT, IDLE_PING, POLL};
use crate::budget::FanoutBudget;
use crate::fanout::mail::Mailboxes;
use crate::metrics::DropReason;

/// A ping unanswered this long fails the link.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Where messages from other nodes go, and what they may be.
#[derive(Debug)]
pub struct Relay {
    /// Every core's mailbox.
    pub cores: Mailboxes,
    /// The fan-out budget the frames are charged to.
    pub budget: Arc<FanoutBudget>,
    /// `--max-message`: larger messages from other nodes are dropped.
    pub max_message: usize,
}

/// Runs the link until the server stops.
pub fn run(broker: &Broker, client: &redis::Client, relay: &Relay) {
    let mut reconnect = Reconnect::new("subscribe", |stats| &stats.subscribe_up);
    while !broker.is_stopping() {
        let result = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .and_then(|mut connection| {
                Session::new(broker, relay, &mut connection.as_pubsub()).run(&mut reconnect)
            });
        broker.stats.subscriptions.store(0, Ordering::Relaxed);
        if let Err(error) = result {
            reconnect.failed(broker, &error);
        }
    }
}

/// One connection's subscriptions.
struct Session<'a, 'c> {
    /// The shared side.
    broker: &'a Broker,
    /// Where messages go.
    relay: &'a Relay,
    /// The connection, in pub/sub mode.
    pubsub: &'a mut redis::PubSub<'c>,
    /// Subscribed channels and their rooms.
    channels: HashMap<String, Arc<str>>,
    /// When the connection last showed it is alive.
    last_heard: Instant,
}

impl<'a, 'c> Session<'a, 'c> {
    /// A session on a fresh connection: nothing subscribed yet.
    fn new(broker: &'a Broker, relay: &'a Relay, pubsub: &'a mut redis::PubSub<'c>) -> Self {
        Session {
            broker,
            relay,
            pubsub,
            channels: HashMap::new(),
            last_heard: Instant::now(),
        }
    }

    /// Subscribes to every room with local members, reports the link up, then relays
    /// messages until the connection fails (`Err`) or the server stops (`Ok`).
    fn run(mut self, reconnect: &mut Reconnect) -> redis::RedisResult<()> {
        self.pubsub.set_read_timeout(Some(POLL))?;
        self.broker.resubscribe_all();
        self.follow_interest()?;
        reconnect.connected(self.broker);
        while !self.broker.is_stopping() {
            self.follow_interest()?;
            match self.pubsub.get_message() {
                Ok(message) => {
                    self.last_heard = Instant::now();
                    self.relay(&message);
                }
                Err(error) if error.is_timeout() => self.ping_if_idle()?,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Subscribes to the rooms that gained local members and unsubscribes from those that
    /// lost their last, if any changed.
    fn follow_interest(&mut self) -> redis::RedisResult<()> {
        let Some(rooms) = self.broker.changed_interest() else {
            return Ok(());
        };
        let wanted: HashMap<String, Arc<str>> = rooms
            .into_iter()
            .map(|room| (self.broker.channel(&room), room))
            .collect();
        let gone: Vec<String> = (self.channels.keys())
            .filter(|channel| !wanted.contains_key(*channel))
            .cloned()
            .collect();
        let new: Vec<&String> = (wanted.keys())
            .filter(|channel| !self.channels.contains_key(*channel))
            .collect();
        if !new.is_empty() {
            self.pubsub.subscribe(&new)?;
        }
        if !gone.is_empty() {
            self.pubsub.unsubscribe(&gone)?;
        }
        self.channels = wanted;
        let count = self.channels.len() as u64;
        self.broker
            .stats
            .subscriptions
            .store(count, Ordering::Relaxed);
        Ok(())
    }

    /// Hands a message from another node to every core, once the fan-out budget has room.
    fn relay(&self, message: &redis::Msg) {
        let Some(room) = self.channels.get(message.get_channel_name()) else {
            return; // Unsubscribed since it was sent.
        };
        let relay = self.relay;
        let stats = &self.broker.stats;
        let frame = match envelope::open(
            message.get_payload_bytes(),
            self.broker.node_id(),
            relay.max_message,
        ) {
            Opened::Frame(frame) => frame,
            Opened::OwnEcho => return,
            Opened::Invalid(why) => {
                tracing::debug!(room = %room, why, "dropped an invalid message from the broker");
                stats.drop_messages(DropReason::Invalid, 1);
                return;
            }
        };
        // Like any publisher, only while the budget has room (the cores' writers free it).
        while relay.budget.must_pause(false) && !self.broker.is_stopping() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let frame = relay.budget.track(frame.to_vec());
        // Counted before the hand-off, so a client never has a message /metrics does not.
        stats.received.fetch_add(1, Ordering::Relaxed);
        relay.cores.broadcast(room, &frame);
    }

    /// Pings when nothing was heard for [`IDLE_PING`]; an unanswered ping fails the link.
    fn ping_if_idle(&mut self) -> redis::RedisResult<()> {
        if self.last_heard.elapsed() < IDLE_PING {
            return Ok(());
        }
        self.pubsub.set_read_timeout(Some(PING_TIMEOUT))?;
        self.pubsub.ping::<redis::Value>()?;
        self.pubsub.set_read_timeout(Some(POLL))?;
        self.last_heard = Instant::now();
        Ok(())
    }
}
