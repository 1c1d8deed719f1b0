//! Mail between cores: how a frame published on one core (or received from another node)
//! reaches the subscribers on the other cores.
//!
//! Each core has one FIFO mailbox (an unbounded channel): a message goes to its room's home
//! core ([`Mail::Publish`]), which puts it in the room's order and sends it to every other core
//! ([`Mail::Broadcast`]); the FIFO keeps that order, so every core delivers a room's messages
//! in the same order. Which windows of compressed frames a core's subscribers of a room take
//! ([`Mail::DeflateInterest`]) reaches the home core the same way. A recovering client's question and its answer ([`Mail::Recover`],
//! [`Mail::Answer`]) travel the same channels, so an answer arrives after every message it
//! covers and before every later one. The mailboxes are bounded by the fan-out budget, not by a
//! length: every mail is charged while it waits ([`MAIL_BYTES`] for its slot; the frame is
//! charged apart, once), and publishers are not read while the budget is exhausted.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use super::stream::{home_core, Answer, Position, Since};
use crate::budget::FanoutBudget;

/// What one mail costs while it waits in a channel (its slot; the frame is counted apart).
pub const MAIL_BYTES: usize = std::mem::size_of::<Mail>();

/// What one core sends another.
#[derive(Debug)]
pub enum Mail {
    /// A message for the room's home core to put in order (from a client, `POST /publish`
    /// or another node, on a core that is not the room's home).
    Publish {
        /// Room name.
        room: Arc<str>,
        /// The encoded frame, shared with the publishing core.
        frame: Bytes,
        /// What the mail is charged besides its slot until the home core takes it: the
        /// fan-out it is about to cause (see [`Mailboxes::publish`]).
        reserved: usize,
        /// Its place in the room's order, given by Redis (`--broker`); None: the home core
        /// gives it the next offset itself.
        position: Option<Position>,
    },
    /// A message put in order by its room's home core, for this core's subscribers of `room`.
    Broadcast {
        /// Room name.
        room: Arc<str>,
        /// The encoded frame, shared with every core.
        frame: Bytes,
        /// The frame compressed once by the home core, and its window bits (when the room
        /// has permessage-deflate subscribers and the message is worth compressing).
        deflated: Option<(u8, Bytes)>,
    },
    /// A core's first subscriber of `room` that takes compressed frames of `window` bits
    /// joined (`joined`), or its last one left: for the room's home core, which compresses
    /// for the smallest window any core needs.
    DeflateInterest {
        /// Room name.
        room: Arc<str>,
        /// Window bits (9-15).
        window: u8,
        /// Joined (else left).
        joined: bool,
    },
    /// The room's home core lost continuity (it missed messages of other nodes, or ordered
    /// this node's alone while Redis was away): this core's clients of `room` that count
    /// offsets are closed to reconnect, before any message after the hole reaches them.
    Discontinuity {
        /// Room name.
        room: Arc<str>,
    },
    /// Where `room` stands in Redis (`--broker`; the position's offset is the last given),
    /// for its home core, which asked ([`Outgoing::Anchor`](super::broker::Outgoing)).
    Anchor {
        /// Room name.
        room: Arc<str>,
        /// Its epoch and last offset.
        position: Position,
    },
    /// This node unsubscribed from `room` (`--broker`: it has no member left), for its home
    /// core: what the room's stream has may fall behind Redis from now on.
    Unfollowed {
        /// Room name.
        room: Arc<str>,
    },
    /// A client on core `core` asks the room's home core where it stands (`?since=`).
    Recover(Box<RecoverRequest>),
    /// The home core's answer to a [`Mail::Recover`].
    Answer(Box<RecoverAnswer>),
    /// Graceful shutdown: stop accepting, close every client with 1001, drain, exit.
    Shutdown,
}

/// A recovering client's question to its room's home core.
#[derive(Debug)]
pub struct RecoverRequest {
    /// The room.
    pub room: Arc<str>,
    /// What the client asked.
    pub since: Since,
    /// The core the client is on.
    pub core: usize,
    /// Which of that core's recovering clients asks.
    pub ticket: u64,
}

/// The home core's answer, for the client the ticket names.
#[derive(Debug)]
pub struct RecoverAnswer {
    /// The ticket of the [`RecoverRequest`].
    pub ticket: u64,
    /// Where the client stands and what to replay.
    pub answer: Answer,
}

/// Every core's mailbox (indexed by core), each mail charged to the fan-out budget until its
/// core takes it.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    /// The cores' mailboxes, by core index.
    senders: Vec<UnboundedSender<Mail>>,
    /// Where waiting mail is charged.
    budget: Arc<FanoutBudget>,
}

impl Mailboxes {
    /// Mail to the cores of `senders` (by index), charged to `budget`.
    pub fn new(senders: Vec<UnboundedSender<Mail>>, budget: Arc<FanoutBudget>) -> Self {
        Mailboxes { senders, budget }
    }

    /// How many cores there are.
    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Sends `mail` to core `core`.
    pub fn send(&self, core: usize, mail: Mail) {
        self.send_charged(core, mail, MAIL_BYTES);
    }

    /// Sends `mail` to core `core`, charged `charge` until that core takes it.
    fn send_charged(&self, core: usize, mail: Mail, charge: usize) {
        let Some(sender) = self.senders.get(core) else {
            return;
        };
        self.budget.mail_sent(charge);
        // A closed mailbox means that core is shutting down; its clients get nothing more.
        if sender.send(mail).is_err() {
            self.budget.mail_taken(charge);
        }
    }

    /// Sends `frame`, a message of `room`, to the room's home core to be put in order,
    /// charged until it gets there with `reserved` besides its slot: the handles it is about
    /// to cost on every core (the caller's estimate). Without it a publisher whose room is
    /// homed elsewhere would see only frames and slots while its messages are on their way,
    /// and run past the budget by their whole fan-out before it is paused. `position`: see
    /// [`Mail::Publish`].
    pub fn publish(
        &self,
        room: &Arc<str>,
        frame: &Bytes,
        reserved: usize,
        position: Option<Position>,
    ) {
        let mail = Mail::Publish {
            room: Arc::clone(room),
            frame: frame.clone(),
            reserved,
            position,
        };
        self.send_charged(home_core(room, self.cores()), mail, MAIL_BYTES + reserved);
    }

    /// Tells `room`'s home core where the room stands in Redis.
    pub fn anchor(&self, room: &Arc<str>, position: Position) {
        let mail = Mail::Anchor {
            room: Arc::clone(room),
            position,
        };
        self.send(home_core(room, self.cores()), mail);
    }

    /// Tells `room`'s home core that this node unsubscribed from the room.
    pub fn unfollowed(&self, room: &Arc<str>) {
        let mail = Mail::Unfollowed {
            room: Arc::clone(room),
        };
        self.send(home_core(room, self.cores()), mail);
    }

    /// Tells every core but `except` (the home core) that `room` lost continuity.
    pub fn discontinuity(&self, except: usize, room: &Arc<str>) {
        for core in (0..self.cores()).filter(|&core| core != except) {
            let mail = Mail::Discontinuity {
                room: Arc::clone(room),
            };
            self.send(core, mail);
        }
    }

    /// Sends one clone of `frame` and of its compressed form `deflated` (reference-count
    /// increments) to every core but `except` (the home core, which delivered it itself).
    pub fn broadcast(
        &self,
        except: usize,
        room: &Arc<str>,
        frame: &Bytes,
        deflated: Option<&(u8, Bytes)>,
    ) {
        for core in (0..self.cores()).filter(|&core| core != except) {
            let mail = Mail::Broadcast {
                room: Arc::clone(room),
                frame: frame.clone(),
                deflated: deflated.cloned(),
            };
            self.send(core, mail);
        }
    }
}
