//! One connection's outbound queue: shared frames waiting for the writer, and the budget that
//! covers them until the kernel has taken them.
//!
//! Frames are `Bytes` handles to buffers encoded once and shared by every subscriber, so
//! queueing costs a reference-count increment, never a copy. The queue enforces the
//! per-connection budget (`--max-backlog`) over everything the connection holds: frames queued
//! *and* frames handed to a write that has not completed, each charged at its length plus the
//! handle it occupies ([`FRAME_HANDLE_BYTES`]). A charge is released only when the kernel has
//! taken the frame whole ([`OutboundQueue::written`]), so a client that reads slowly cannot
//! hold more than the budget by keeping a batch half-written. A push that would exceed the
//! budget fails: that is how a slow consumer is detected.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use crate::memory::FRAME_HANDLE_BYTES;

/// Frames a fresh or drained queue keeps room for: enough that steady low-rate traffic never
/// reallocates, small enough for 10k idle connections.
const IDLE_CAPACITY: usize = 4;
/// A drained queue whose capacity grew past this (after a burst) gives the memory back.
const SHRINK_ABOVE: usize = 64;

/// Returned by [`OutboundQueue::push`] when the frame would exceed the byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound backlog would exceed {budget} bytes")]
pub struct BacklogExceeded {
    /// The budget that would have been exceeded.
    pub budget: usize,
}

/// Frames queued for one connection, with a byte budget that also covers the batch in flight.
#[derive(Debug)]
pub struct OutboundQueue {
    /// Frames in send order, not yet handed to the writer.
    frames: VecDeque<Bytes>,
    /// Charge of everything held: queued and in-flight frames, each at length + handle.
    charged_bytes: usize,
    /// Frames held (queued or in flight): handles to release.
    held_frames: usize,
    /// Most bytes that may be charged (the slow-consumer threshold).
    max_backlog_bytes: usize,
}

/// What one frame costs the budget.
fn charge(frame: &Bytes) -> usize {
    frame.len() + FRAME_HANDLE_BYTES
}

impl OutboundQueue {
    /// An empty queue that may hold at most `max_backlog_bytes` of charged frames.
    pub fn new(max_backlog_bytes: usize) -> Self {
        OutboundQueue {
            frames: VecDeque::with_capacity(IDLE_CAPACITY),
            charged_bytes: 0,
            held_frames: 0,
            max_backlog_bytes,
        }
    }

    /// Queue a shared frame; Err when it would exceed the byte budget (slow consumer).
    pub fn push(&mut self, frame: Bytes) -> Result<(), BacklogExceeded> {
        let new_total = self.charged_bytes + charge(&frame);
        if new_total > self.max_backlog_bytes {
            return Err(BacklogExceeded {
                budget: self.max_backlog_bytes,
            });
        }
        self.charged_bytes = new_total;
        self.held_frames += 1;
        self.frames.push_back(frame);
        Ok(())
    }

    /// Queue a frame regardless of the budget. Only for the single close frame that ends a
    /// connection, so it cannot grow memory.
    pub fn push_final(&mut self, frame: Bytes) {
        self.charged_bytes += charge(&frame);
        self.held_frames += 1;
        self.frames.push_back(frame);
    }

    /// Move up to `max_iov` queued frames into `batch` (for one writev). They stay charged
    /// until [`OutboundQueue::written`] reports them taken by the kernel.
    pub fn take_batch(&mut self, batch: &mut Vec<Bytes>, max_iov: usize) {
        let count = self.frames.len().min(max_iov);
        batch.extend(self.frames.drain(..count));
        if self.frames.is_empty() && self.frames.capacity() > SHRINK_ABOVE {
            self.frames.shrink_to(IDLE_CAPACITY);
        }
    }

    /// A write took `bytes` bytes, completing `frames` whole frames (see [`advance_batch`]).
    pub fn written(&mut self, bytes: usize, frames: usize) {
        let released = bytes + frames * FRAME_HANDLE_BYTES;
        self.charged_bytes = self.charged_bytes.saturating_sub(released);
        self.held_frames = self.held_frames.saturating_sub(frames);
    }

    /// Drop every queued frame (a slow consumer's backlog is discarded, not delivered);
    /// returns how many. Frames in flight stay charged until written.
    pub fn clear(&mut self) -> usize {
        let dropped = self.frames.len();
        let released: usize = self.frames.iter().map(charge).sum();
        self.frames.clear();
        self.frames.shrink_to(IDLE_CAPACITY);
        self.charged_bytes -= released;
        self.held_frames -= dropped;
        dropped
    }

    /// Bytes charged: queued and in-flight frames with their handles.
    pub fn charged_bytes(&self) -> usize {
        self.charged_bytes
    }

    /// Frames held, queued or in flight.
    pub fn held_frames(&self) -> usize {
        self.held_frames
    }

    /// True when nothing is queued (a batch may still be in flight).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Accounts a `writev` that wrote `written` bytes of `batch`: drops the frames written whole and
/// advances the one written in part (an O(1) `Bytes::advance`, no copy), so the next `writev`
/// resumes exactly where the kernel stopped. Returns how many whole frames were written.
pub fn advance_batch(batch: &mut Vec<Bytes>, written: usize) -> usize {
    let mut remaining = written;
    let mut complete = 0;
    for frame in batch.iter_mut() {
        if remaining >= frame.len() {
            remaining -= frame.len();
            complete += 1;
        } else {
            frame.advance(remaining);
            break;
        }
    }
    batch.drain(..complete);
    complete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    /// Charge of a frame of `len` bytes.
    fn charged(len: usize) -> usize {
        len + FRAME_HANDLE_BYTES
    }

    #[test]
    fn push_refuses_frames_over_budget() {
        let mut queue = OutboundQueue::new(charged(60) + charged(40));
        assert!(queue.push(frame(60)).is_ok());
        assert!(queue.push(frame(40)).is_ok());
        assert_eq!(queue.charged_bytes(), charged(60) + charged(40));
        assert!(queue.push(frame(1)).is_err());
        assert_eq!(queue.clear(), 2);
        assert_eq!(queue.charged_bytes(), 0);
        assert!(queue.is_empty());
    }

    #[test]
    fn final_frame_bypasses_budget() {
        let mut queue = OutboundQueue::new(10);
        queue.push_final(frame(20));
        assert_eq!(queue.charged_bytes(), charged(20));
    }

    #[test]
    fn frames_in_flight_stay_charged_until_written() {
        let budget = 4 * charged(100);
        let mut queue = OutboundQueue::new(budget);
        for _ in 0..4 {
            queue.push(frame(100)).unwrap();
        }
        let mut batch = Vec::new();
        queue.take_batch(&mut batch, 1024);
        assert!(queue.is_empty());
        assert!(
            queue.push(frame(100)).is_err(),
            "a batch handed to the writer still counts against the budget"
        );
        // The kernel takes one frame and a half: one frame's charge comes back.
        let complete = advance_batch(&mut batch, 150);
        queue.written(150, complete);
        assert_eq!(queue.charged_bytes(), budget - 150 - FRAME_HANDLE_BYTES);
        assert!(queue.push(frame(100)).is_ok());
        assert!(queue.push(frame(20)).is_err(), "{}", queue.charged_bytes());
    }

    #[test]
    fn tiny_frames_are_charged_their_handles() {
        // 1 MiB of 2-byte frames (empty messages): the handles, not the bytes, fill the budget.
        let mut queue = OutboundQueue::new(1 << 20);
        let mut accepted = 0;
        while queue.push(Bytes::from_static(&[0x82, 0])).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted, (1 << 20) / charged(2));
        assert_eq!(queue.held_frames(), accepted);
    }

    #[test]
    fn take_batch_is_bounded_by_max_iov_and_keeps_order() {
        let mut queue = OutboundQueue::new(1 << 20);
        for len in 1..=5 {
            queue.push(frame(len)).unwrap();
        }
        let mut batch = Vec::new();
        queue.take_batch(&mut batch, 3);
        assert_eq!(batch.iter().map(Bytes::len).collect::<Vec<_>>(), [1, 2, 3]);
        queue.take_batch(&mut batch, 3);
        assert_eq!(batch.len(), 5);
        assert!(queue.is_empty());
        queue.written(15, advance_batch(&mut batch, 15));
        assert_eq!(queue.charged_bytes(), 0);
        assert_eq!(queue.held_frames(), 0);
    }

    #[test]
    fn partial_write_advances_inside_a_frame() {
        let mut batch = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"hi"),
        ];
        assert_eq!(advance_batch(&mut batch, 5), 1);
        assert_eq!(batch[0], Bytes::from_static(b"fg"));
        assert_eq!(batch.len(), 2);
        assert_eq!(advance_batch(&mut batch, 2), 1);
        assert_eq!(batch, vec![Bytes::from_static(b"hi")]);
        assert_eq!(advance_batch(&mut batch, 2), 1);
        assert!(batch.is_empty());
    }

    #[test]
    fn zero_byte_write_changes_nothing() {
        let mut batch = vec![Bytes::from_static(b"abc")];
        assert_eq!(advance_batch(&mut batch, 0), 0);
        assert_eq!(batch, vec![Bytes::from_static(b"abc")]);
    }
}
