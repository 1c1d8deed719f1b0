//! One connection's outbound queue: shared frames waiting for the writer task.
//!
//! Frames are `Bytes` handles to buffers encoded once and shared by every subscriber, so
//! queueing costs a reference-count increment, never a copy. The queue enforces the
//! per-connection byte budget (`--max-backlog`): a push that would exceed it fails, which is how
//! a slow consumer is detected. The writer drains the queue in batches of at most `max_iov`
//! frames, one `writev` per batch, so memory per connection is bounded by twice the budget (the
//! queue plus the batch the kernel is currently taking).

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

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

/// Frames queued for one connection, with a byte budget.
#[derive(Debug)]
pub struct OutboundQueue {
    /// Frames in send order.
    frames: VecDeque<Bytes>,
    /// Sum of the lengths of `frames`.
    queued_bytes: usize,
    /// Most bytes `frames` may hold (the slow-consumer threshold).
    max_backlog_bytes: usize,
}

impl OutboundQueue {
    /// An empty queue that accepts at most `max_backlog_bytes` of queued frames.
    pub fn new(max_backlog_bytes: usize) -> Self {
        OutboundQueue {
            frames: VecDeque::with_capacity(IDLE_CAPACITY),
            queued_bytes: 0,
            max_backlog_bytes,
        }
    }

    /// Queue a shared frame; Err when it would exceed the byte budget (slow consumer).
    pub fn push(&mut self, frame: Bytes) -> Result<(), BacklogExceeded> {
        let new_total = self.queued_bytes + frame.len();
        if new_total > self.max_backlog_bytes {
            return Err(BacklogExceeded {
                budget: self.max_backlog_bytes,
            });
        }
        self.queued_bytes = new_total;
        self.frames.push_back(frame);
        Ok(())
    }

    /// Queue a frame regardless of the budget. Only for the single close frame that ends a
    /// connection, so it cannot grow memory.
    pub fn push_final(&mut self, frame: Bytes) {
        self.queued_bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Move up to `max_iov` queued frames into `batch` (for one writev).
    pub fn take_batch(&mut self, batch: &mut Vec<Bytes>, max_iov: usize) {
        let count = self.frames.len().min(max_iov);
        for frame in self.frames.drain(..count) {
            self.queued_bytes -= frame.len();
            batch.push(frame);
        }
        if self.frames.is_empty() && self.frames.capacity() > SHRINK_ABOVE {
            self.frames.shrink_to(IDLE_CAPACITY);
        }
    }

    /// Drop every queued frame (a slow consumer's backlog is discarded, not delivered).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.frames.shrink_to(IDLE_CAPACITY);
        self.queued_bytes = 0;
    }

    /// Bytes currently queued (not counting a batch already handed to the writer).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// True when nothing is queued.
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

    #[test]
    fn push_refuses_frames_over_budget() {
        let mut queue = OutboundQueue::new(100);
        assert!(queue.push(frame(60)).is_ok());
        assert!(queue.push(frame(40)).is_ok());
        assert_eq!(queue.queued_bytes(), 100);
        assert_eq!(queue.push(frame(1)), Err(BacklogExceeded { budget: 100 }));
        assert_eq!(queue.queued_bytes(), 100);
        queue.clear();
        assert_eq!(queue.queued_bytes(), 0);
        assert!(queue.is_empty());
    }

    #[test]
    fn final_frame_bypasses_budget() {
        let mut queue = OutboundQueue::new(10);
        queue.push_final(frame(20));
        assert_eq!(queue.queued_bytes(), 20);
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
        assert_eq!(queue.queued_bytes(), 4 + 5);
        queue.take_batch(&mut batch, 3);
        assert_eq!(batch.len(), 5);
        assert_eq!(queue.queued_bytes(), 0);
        assert!(queue.is_empty());
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
