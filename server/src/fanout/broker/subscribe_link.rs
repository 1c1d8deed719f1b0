//! The subscribe link: follows the rooms this node has members of, and hands every message
//! Redis ordered in them (this node's too) to the rooms' home cores, with its epoch and offset.
//!
//! Between two messages (or every [`POLL`] when none come) the link takes the rooms that gained
//! their first local member or lost their last, and sends SUBSCRIBE for the new ones and
//! UNSUBSCRIBE for the gone ones; it waits for their replies up to [`REPLY_TIMEOUT`] each,
//! handing on the messages that come before them; then it tells the home cores of the gone
//! rooms (they stop answering from what they have), and passes the home cores' requests for
//! where a room stands (anchors) to the publish link, now that it is subscribed to their
//! rooms, so that every message after an anchor reaches this node. A message is read only
//! while the fan-out budget has room: the rest waits in Redis (see `mod.rs`). A link idle for
//! [`IDLE_PING`] pings, so a Redis that stopped answering is noticed, not only one that closed
//! the connection. Redis is read by `resp.rs`, not by the `redis` crate's `PubSub` (why there).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::envelope::{self, Opened};
use super::reconnect::Reconnect;
use super::resp::{self, Value, Wire};
use super::{Broker, InterestChange, IDLE_PING, POLL, REPLY_TIMEOUT};
use crate::budget::FanoutBudget;
use crate::fanout::mail::Mailboxes;
use crate::fanout::stream::Position;
use crate::metrics::{BrokerLink, DropReason};

/// Most channels in one SUBSCRIBE or UNSUBSCRIBE (a reconnection subscribes to every room).
const MAX_CHANNELS: usize = 1024;
/// Bytes of a message from Redis besides its frame's payload and the channel prefix: the
/// envelope and frame headers, the room name (at most 64 bytes) and RESP's framing.
const MESSAGE_OVERHEAD: usize = 1024;

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
    let mut reconnect = Reconnect::new(BrokerLink::Subscribe);
    // The most one message from Redis may take: a larger one is dropped unread.
    let limit = (relay.max_message)
        .saturating_add(broker.prefix.len())
        .saturating_add(MESSAGE_OVERHEAD);
    while !broker.is_stopping() {
        let result = Wire::connect(client.get_connection_info(), limit)
            .and_then(|wire| Session::new(broker, relay, wire).run(&mut reconnect));
        broker.stats.subscriptions.store(0, Ordering::Relaxed);
        if let Err(error) = result {
            // Redis may have gone or restarted: the publish link checks its own connection.
            broker.check_publish_link();
            reconnect.failed(broker, &error);
        }
    }
}

/// What Redis sent the link.
enum Pushed<'v> {
    /// A message on `channel`: its payload, or why it is not one.
    Message {
        /// The channel.
        channel: &'v [u8],
        /// The envelope.
        payload: Result<&'v [u8], &'static str>,
    },
    /// SUBSCRIBE's or UNSUBSCRIBE's reply for one channel.
    Ack,
    /// PING's reply.
    Pong,
    /// An error reply.
    Refused(&'v [u8]),
    /// Anything else.
    Other,
}

impl<'v> Pushed<'v> {
    /// What `value` is.
    fn of(value: &Value<'v>) -> Pushed<'v> {
        match value {
            Value::Array(items) => match items.as_slice() {
                [Value::Bulk(Some(b"message")), Value::Bulk(Some(channel)), payload] => {
                    Pushed::Message {
                        channel,
                        payload: match payload {
                            Value::Bulk(Some(payload)) => Ok(payload),
                            Value::TooLong => Err("over --max-message"),
                            _ => Err("not a string"),
                        },
                    }
                }
                [Value::Bulk(Some(b"subscribe" | b"unsubscribe")), _, Value::Integer(_)] => {
                    Pushed::Ack
                }
                [Value::Bulk(Some(b"pong")), _] => Pushed::Pong,
                _ => Pushed::Other,
            },
            Value::Simple(b"PONG") => Pushed::Pong,
            Value::Error(error) => Pushed::Refused(error),
            _ => Pushed::Other,
        }
    }
}

/// One connection's subscriptions.
struct Session<'a> {
    /// The shared side.
    broker: &'a Broker,
    /// Where messages go.
    relay: &'a Relay,
    /// The connection.
    wire: Wire,
    /// Subscribed channels and their rooms.
    channels: HashMap<String, Arc<str>>,
    /// When the connection last showed it is alive.
    last_heard: Instant,
    /// The epoch of the last message: reused while the next ones name the same (one
    /// allocation per epoch, not per message).
    epoch: Option<Arc<str>>,
}

impl<'a> Session<'a> {
    /// A session on a fresh connection: nothing subscribed yet.
    fn new(broker: &'a Broker, relay: &'a Relay, wire: Wire) -> Self {
        Session {
            broker,
            relay,
            wire,
            channels: HashMap::new(),
            last_heard: Instant::now(),
            epoch: None,
        }
    }

    /// Subscribes to every room with local members, reports the link up, then relays
    /// messages until the connection fails (`Err`) or the server stops (`Ok`).
    fn run(mut self, reconnect: &mut Reconnect) -> io::Result<()> {
        self.follow_interest(true)?;
        reconnect.connected(self.broker);
        while !self.broker.is_stopping() {
            // Taken before looking at the rooms: each was asked about after its room was
            // joined, so the subscriptions below cover it.
            let anchors = self.broker.take_anchors();
            self.follow_interest(false)?;
            if !anchors.is_empty() {
                self.broker.ask_anchors(anchors);
            }
            // A wait that ends in the middle of a message keeps what came (`resp.rs`).
            let Some(value) = self.wire.next(POLL)? else {
                self.ping_if_idle()?;
                continue;
            };
            self.last_heard = Instant::now();
            match Pushed::of(&value) {
                Pushed::Message { channel, payload } => {
                    deliver(
                        self.broker,
                        self.relay,
                        &self.channels,
                        &mut self.epoch,
                        channel,
                        payload,
                    );
                }
                _ => return Err(unexpected("while waiting for messages")),
            }
        }
        Ok(())
    }

    /// Subscribes to the rooms that gained local members and unsubscribes from those that
    /// lost their last, if any changed (with `all`, compares every room: a fresh connection).
    fn follow_interest(&mut self, all: bool) -> io::Result<()> {
        let Some(change) = self.broker.take_interest(all) else {
            return Ok(());
        };
        let (mut new, mut gone) = (Vec::new(), Vec::new());
        match change {
            InterestChange::All(rooms) => {
                let wanted: HashMap<String, Arc<str>> = rooms
                    .into_iter()
                    .map(|room| (self.broker.channel(&room), room))
                    .collect();
                gone.extend(
                    (self.channels.iter())
                        .filter(|(channel, _)| !wanted.contains_key(*channel))
                        .map(|(channel, room)| (channel.clone(), Arc::clone(room))),
                );
                new.extend(
                    (wanted.keys())
                        .filter(|channel| !self.channels.contains_key(*channel))
                        .cloned(),
                );
                self.channels = wanted;
            }
            InterestChange::Rooms(rooms) => {
                for (room, wanted) in rooms {
                    let channel = self.broker.channel(&room);
                    if wanted && !self.channels.contains_key(&channel) {
                        new.push(channel.clone());
                        self.channels.insert(channel, room);
                    } else if !wanted {
                        if let Some(room) = self.channels.remove(&channel) {
                            gone.push((channel, room));
                        }
                    }
                }
            }
        }
        self.command("SUBSCRIBE", &new)?;
        let channels: Vec<String> = gone.iter().map(|(channel, _)| channel.clone()).collect();
        self.command("UNSUBSCRIBE", &channels)?;
        // After the messages that came before the replies: the home cores stop answering from
        // what they have until Redis tells them where these rooms stand.
        for (_, room) in &gone {
            self.relay.cores.unfollowed(room);
        }
        let count = self.channels.len() as u64;
        self.broker
            .stats
            .subscriptions
            .store(count, Ordering::Relaxed);
        Ok(())
    }

    /// Sends `name` (SUBSCRIBE or UNSUBSCRIBE) for `channels` and waits for every reply.
    fn command(&mut self, name: &str, channels: &[String]) -> io::Result<()> {
        for chunk in channels.chunks(MAX_CHANNELS) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(chunk.len() + 1);
            args.push(name.as_bytes());
            args.extend(chunk.iter().map(String::as_bytes));
            self.wire.send(&args)?;
            self.await_replies(name, chunk.len())?;
        }
        Ok(())
    }

    /// Waits for `count` replies to `command` (PING: one pong; else one per channel) while
    /// Redis sends something at least every [`REPLY_TIMEOUT`], handing on the messages it sent
    /// before them: they go to the cores under the budget like any other, not into a queue.
    /// Waits in [`POLL`] slices (a slice that ends mid-reply keeps what came) so that a stop
    /// is not held up.
    fn await_replies(&mut self, command: &str, mut count: usize) -> io::Result<()> {
        // Since the command was sent or the last value was handled: a wait for the budget
        // while handing on a message is this node's, not Redis's.
        let mut waiting = Instant::now();
        while count > 0 {
            let Some(value) = self.wire.next(POLL)? else {
                if self.broker.is_stopping() {
                    return Ok(());
                }
                if self.wire.quiet_for().min(waiting.elapsed()) >= REPLY_TIMEOUT {
                    return Err(resp::late(command));
                }
                continue;
            };
            match (Pushed::of(&value), command) {
                (Pushed::Message { channel, payload }, _) => {
                    deliver(
                        self.broker,
                        self.relay,
                        &self.channels,
                        &mut self.epoch,
                        channel,
                        payload,
                    );
                }
                (Pushed::Pong, "PING") => count -= 1,
                (Pushed::Ack, "SUBSCRIBE" | "UNSUBSCRIBE") => count -= 1,
                (Pushed::Refused(error), _) => return Err(resp::refused(command, error)),
                _ => return Err(unexpected(command)),
            }
            self.last_heard = Instant::now();
            waiting = self.last_heard;
        }
        Ok(())
    }

    /// Pings when nothing was heard for [`IDLE_PING`]; an unanswered ping fails the link.
    fn ping_if_idle(&mut self) -> io::Result<()> {
        if self.last_heard.elapsed() < IDLE_PING {
            return Ok(());
        }
        self.wire.send(&[b"PING"])?;
        self.await_replies("PING", 1)
    }
}

/// Redis sent a reply nobody asked for (`when`): the link fails and reconnects.
fn unexpected(when: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("Redis sent an unexpected reply ({when})"),
    )
}

/// Hands a message on `channel` to its room's home core, once the fan-out budget has room;
/// `epoch` is the last message's epoch (reused if this one's is the same).
fn deliver(
    broker: &Broker,
    relay: &Relay,
    channels: &HashMap<String, Arc<str>>,
    epoch: &mut Option<Arc<str>>,
    channel: &[u8],
    payload: Result<&[u8], &'static str>,
) {
    let room = std::str::from_utf8(channel)
        .ok()
        .and_then(|channel| channels.get(channel));
    let Some(room) = room else {
        return; // Unsubscribed since it was sent.
    };
    let stats = &broker.stats;
    let opened = match payload {
        Ok(payload) => envelope::open(payload, relay.max_message),
        Err(why) => Opened::Invalid(why),
    };
    let (named, offset, frame) = match opened {
        Opened::Frame {
            epoch,
            offset,
            frame,
        } => (epoch, offset, frame),
        Opened::Invalid(why) => {
            tracing::debug!(room = %room, why, "dropped an invalid message from the broker");
            stats.drop_messages(DropReason::Invalid, 1);
            return;
        }
    };
    // Like any publisher, only while the budget has room (the cores' writers free it).
    while relay.budget.must_pause(false) && !broker.is_stopping() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let frame = relay.budget.track(frame.to_vec());
    // Counted before the hand-off, so a client never has a message /metrics does not.
    stats.received.fetch_add(1, Ordering::Relaxed);
    let epoch = match epoch {
        Some(epoch) if **epoch == *named => Arc::clone(epoch),
        _ => Arc::clone(epoch.insert(Arc::from(named))),
    };
    // To the room's home core, which takes Redis's position for it (nothing reserved: this
    // link waits for the budget before each message anyway).
    relay
        .cores
        .publish(room, &frame, 0, Some(Position { epoch, offset }));
}
