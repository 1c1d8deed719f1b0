//! Where a connection's close stands, as one packed value (a deadline and four flags) instead
//! of five cells: the subscriber reads and replaces it whole.
//!
//! The handshake (RFC 6455 7.1): whoever closes first queues one close frame and sets the
//! deadline by which the connection must be gone; the socket is shut down once our close frame
//! is written and either the client's close arrived or the connection failed (a protocol
//! error, or a client the server gives up on), or when the deadline passes (the sweep).

use std::time::Instant;

use crate::clock::Stamp;

/// The client's close frame arrived.
const RECEIVED: u8 = 1;
/// Our close frame was written.
const WRITTEN: u8 = 1 << 1;
/// The connection failed: shut down as soon as our close frame is written.
const FAILED: u8 = 1 << 2;
/// `shutdown(Both)` was called; nothing is read or written afterwards.
const SHUT: u8 = 1 << 3;

/// One connection's close state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseState {
    /// Set once our close frame is queued (or the socket shut down without one).
    deadline: Option<Stamp>,
    /// RECEIVED | WRITTEN | FAILED | SHUT.
    flags: u8,
}

impl CloseState {
    /// Deadline by which a closing connection must be gone.
    pub fn deadline(self) -> Option<Instant> {
        self.deadline.map(Stamp::instant)
    }

    /// True once a close frame is queued (or the socket is shut down): nothing else is queued.
    pub fn is_closing(self) -> bool {
        self.deadline.is_some()
    }

    /// Starts closing with `deadline`; false (and no change) if already closing: the first
    /// close wins.
    pub fn start(&mut self, deadline: Instant) -> bool {
        if self.is_closing() {
            return false;
        }
        self.deadline = Some(Stamp::of(deadline));
        true
    }

    /// Records the client's close frame.
    pub fn receive(&mut self) {
        self.flags |= RECEIVED;
    }

    /// Records that our close frame was written.
    pub fn write(&mut self) {
        self.flags |= WRITTEN;
    }

    /// Records a failure (shut down right after our close frame is written).
    pub fn fail(&mut self) {
        self.flags |= FAILED;
    }

    /// Records the shutdown; false if it had already happened. A connection shut down
    /// without a close frame is closing from now on.
    pub fn shut(&mut self, now: Instant) -> bool {
        if self.is_shut() {
            return false;
        }
        self.flags |= SHUT;
        self.start(now);
        true
    }

    /// Forgets a shutdown recorded before the socket existed, so that it is done for real.
    pub fn unshut(&mut self) {
        self.flags &= !SHUT;
    }

    /// True once our close frame was written.
    pub fn is_written(self) -> bool {
        self.flags & WRITTEN != 0
    }

    /// True once the socket was shut down.
    pub fn is_shut(self) -> bool {
        self.flags & SHUT != 0
    }

    /// True when our close frame is out and nothing more is awaited: the client's close
    /// arrived, or the connection failed.
    pub fn is_done(self) -> bool {
        self.is_written() && self.flags & (RECEIVED | FAILED) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_close_sets_the_deadline() {
        let now = Instant::now();
        let mut state = CloseState::default();
        assert!(!state.is_closing());
        assert!(state.start(now + Duration::from_secs(2)));
        assert!(!state.start(now + Duration::from_secs(9)));
        assert_eq!(state.deadline(), Some(now + Duration::from_secs(2)));
    }

    #[test]
    fn done_needs_our_close_written_and_theirs_received_or_a_failure() {
        let mut state = CloseState::default();
        state.write();
        assert!(!state.is_done());
        state.receive();
        assert!(state.is_done());
        let mut failed = CloseState::default();
        failed.fail();
        assert!(!failed.is_done());
        failed.write();
        assert!(failed.is_done());
    }

    #[test]
    fn shutting_down_happens_once_and_makes_the_connection_closing() {
        let now = Instant::now();
        let mut state = CloseState::default();
        assert!(state.shut(now));
        assert!(!state.shut(now));
        assert!(state.is_shut() && state.is_closing());
        state.unshut();
        assert!(!state.is_shut());
        assert!(state.shut(now));
    }
}
