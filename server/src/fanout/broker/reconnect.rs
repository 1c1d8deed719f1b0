//! One broker link's reconnection: backoff, and the outage logged once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Broker, POLL};
use crate::metrics::BrokerLink;

/// First wait before reconnecting a failed link; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One link's reconnection: backoff, and the outage logged once.
#[derive(Debug)]
pub struct Reconnect {
    /// Which link.
    link: BrokerLink,
    /// The next wait.
    delay: Duration,
    /// The current outage was logged.
    outage_logged: bool,
    /// The link was up before (so connecting again is a reconnection).
    was_up: bool,
}

impl Reconnect {
    /// The state of `link`.
    pub fn new(link: BrokerLink) -> Self {
        Reconnect {
            link,
            delay: FIRST_BACKOFF,
            outage_logged: false,
            was_up: false,
        }
    }

    /// The link is up.
    pub fn connected(&mut self, broker: &Broker) {
        if self.was_up || self.outage_logged {
            tracing::info!(link = self.link.label(), "broker link up again");
        }
        if self.was_up {
            broker.stats.reconnects[self.link as usize].fetch_add(1, Ordering::Relaxed);
        }
        broker
            .stats
            .link_up(self.link)
            .store(true, Ordering::Relaxed);
        self.was_up = true;
        self.outage_logged = false;
        self.delay = FIRST_BACKOFF;
    }

    /// The link failed (or could not connect): marks it down, logs the outage once, then waits
    /// before the next attempt (returns early if the server stops).
    pub fn failed(&mut self, broker: &Broker, error: &dyn std::fmt::Display) {
        broker
            .stats
            .link_up(self.link)
            .store(false, Ordering::Relaxed);
        if !self.outage_logged {
            tracing::warn!(
                link = self.link.label(),
                %error,
                "broker unreachable: local rooms keep working, other nodes are not reached; \
                 reconnecting with backoff"
            );
            self.outage_logged = true;
        }
        let mut waited = Duration::ZERO;
        while waited < self.delay && !broker.is_stopping() {
            std::thread::sleep(POLL);
            waited += POLL;
        }
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }
}
