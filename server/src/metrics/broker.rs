//! The broker links' counters and states (`ringcast_broker_*`, `/readyz`), written by the link
//! threads (`fanout/broker/`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why a message did not cross the broker.
#[derive(Debug, Clone, Copy)]
pub enum DropReason {
    /// Outbound, the publish link was down.
    LinkDown,
    /// Outbound, `--broker-queue` messages were already waiting.
    QueueFull,
    /// Inbound, not a valid envelope (see `fanout/broker/envelope.rs`).
    Invalid,
}

impl DropReason {
    /// Every reason, in metric order.
    pub const ALL: [DropReason; 3] = [
        DropReason::LinkDown,
        DropReason::QueueFull,
        DropReason::Invalid,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::LinkDown => "link_down",
            DropReason::QueueFull => "queue_full",
            DropReason::Invalid => "invalid",
        }
    }
}

/// One of the two connections to the broker (`fanout/broker/`): each fails and reconnects on
/// its own.
#[derive(Debug, Clone, Copy)]
pub enum BrokerLink {
    /// Sends this node's messages.
    Publish,
    /// Receives the other nodes' messages.
    Subscribe,
}

impl BrokerLink {
    /// Both links, in metric order.
    pub const ALL: [BrokerLink; 2] = [BrokerLink::Publish, BrokerLink::Subscribe];

    /// The `link` label.
    pub fn label(self) -> &'static str {
        match self {
            BrokerLink::Publish => "publish",
            BrokerLink::Subscribe => "subscribe",
        }
    }
}

/// What `/metrics` and `/readyz` show of the broker.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// The publish link is connected.
    pub publish_up: AtomicBool,
    /// The subscribe link is connected and subscribed to every room with local members.
    pub subscribe_up: AtomicBool,
    /// Messages sent to Redis.
    pub published: AtomicU64,
    /// Messages from other nodes handed to the cores.
    pub received: AtomicU64,
    /// Messages dropped, by [`DropReason`].
    pub dropped: [AtomicU64; DropReason::ALL.len()],
    /// Successful reconnections after a failure, by [`BrokerLink`].
    pub reconnects: [AtomicU64; BrokerLink::ALL.len()],
    /// Channels the subscribe link is subscribed to.
    pub subscriptions: AtomicU64,
}

impl BrokerStats {
    /// Both links are up.
    pub fn is_up(&self) -> bool {
        self.publish_up.load(Ordering::Relaxed) && self.subscribe_up.load(Ordering::Relaxed)
    }

    /// The up flag of `link`.
    pub fn link_up(&self, link: BrokerLink) -> &AtomicBool {
        match link {
            BrokerLink::Publish => &self.publish_up,
            BrokerLink::Subscribe => &self.subscribe_up,
        }
    }

    /// Counts `count` messages dropped for `reason`.
    pub fn drop_messages(&self, reason: DropReason, count: u64) {
        self.dropped[reason as usize].fetch_add(count, Ordering::Relaxed);
    }
}
