//! Mail between cores: how a frame published on one core (or received from another node)
//! reaches the subscribers on the other cores.
//!
//! Each core has one FIFO mailbox (an unbounded channel), so every core sees one publisher's
//! messages in the order they were received. The mailboxes are bounded by the fan-out budget,
//! not by a length: every mail is charged while it waits ([`MAIL_BYTES`] for its slot; the
//! frame is charged apart, once), publishers are not read while the budget is exhausted, and a
//! core takes mail only while its own writers are within their share of the budget
//! (`core/mod.rs`), so a core that falls behind makes the publishers wait instead of queueing
//! without limit.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::budget::FanoutBudget;

/// What one mail costs while it waits in a channel (its slot; the frame is counted apart).
pub const MAIL_BYTES: usize = std::mem::size_of::<Mail>();

/// What one core sends another.
#[derive(Debug)]
pub enum Mail {
    /// A frame published on another core (or node), for this core's subscribers of `room`.
    Broadcast {
        /// Room name.
        room: Arc<str>,
        /// The encoded frame, shared with the publishing core.
        frame: Bytes,
    },
    /// Graceful shutdown: stop accepting, close every client with 1001, drain, exit.
    Shutdown,
}

/// The mailboxes a frame is sent to (the other cores of a hub; every core for the broker's
/// subscribe link), each mail charged to the fan-out budget until its core takes it.
#[derive(Debug)]
pub struct Mailboxes {
    /// The cores' mailboxes.
    senders: Vec<UnboundedSender<Mail>>,
    /// Where waiting mail is charged.
    budget: Arc<FanoutBudget>,
}

impl Mailboxes {
    /// Mail to `senders`, charged to `budget`.
    pub fn new(senders: Vec<UnboundedSender<Mail>>, budget: Arc<FanoutBudget>) -> Self {
        Mailboxes { senders, budget }
    }

    /// Sends one clone of `frame` (a reference-count increment) to every mailbox.
    pub fn broadcast(&self, room: &Arc<str>, frame: &Bytes) {
        for sender in &self.senders {
            self.budget.mail_sent(MAIL_BYTES);
            let mail = Mail::Broadcast {
                room: Arc::clone(room),
                frame: frame.clone(),
            };
            // A closed mailbox means that core is shutting down; its clients get nothing more.
            if sender.send(mail).is_err() {
                self.budget.mail_taken(MAIL_BYTES);
            }
        }
    }
}
