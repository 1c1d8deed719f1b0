//! A recovering client's replay: kept frames still to send, shared by every client answered
//! from the same kept messages (`fanout/stream.rs` makes them), sent as the client's queue
//! drains (`subscriber.rs`).

use std::sync::Arc;

use bytes::Bytes;

/// Kept frames to send in order: `frames[next..]`, shared by every client answered from the
/// same kept messages.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// A snapshot of the room's kept frames.
    frames: Arc<[Bytes]>,
    /// The first one still to send.
    next: usize,
}

impl Replay {
    /// `frames[next..]`.
    pub fn new(frames: Arc<[Bytes]>, next: usize) -> Self {
        Replay { frames, next }
    }

    /// Frames left.
    pub fn len(&self) -> usize {
        self.frames.len() - self.next
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next frame, if any.
    pub fn pop(&mut self) -> Option<Bytes> {
        let frame = self.frames.get(self.next)?.clone();
        self.next += 1;
        Some(frame)
    }

    /// The next frame without taking it.
    pub fn peek(&self) -> Option<&Bytes> {
        self.frames.get(self.next)
    }
}
