//! One connection's outbound queue (sans-IO): the frames it must still send, the part of them
//! handed to the kernel, and the budget that covers them until the kernel has taken them.
//!
//! Frames are [`LocalFrame`]s: a core-local `Rc` of a buffer encoded once and shared by every
//! subscriber on every core, so queueing costs a non-atomic reference-count increment, never a
//! copy or an atomic operation. A frame stays in the queue until the kernel has taken it whole:
//! [`OutboundQueue::start_write`] describes the head of the queue as iovecs for one write,
//! [`OutboundQueue::finish_write`] drops what that write took (and remembers how far into the
//! next frame it got). So the per-connection budget (`--max-backlog`) covers everything the
//! connection holds, queued or in flight, each frame charged at its length plus its handle
//! ([`FRAME_HANDLE_BYTES`]). A push that would exceed the budget fails: that is how a slow
//! consumer is detected.

use std::collections::VecDeque;

use crate::budget::{LocalFrame, CONTROL_FRAME_OVERHEAD, FRAME_HANDLE_BYTES};

/// Most iovecs one write describes (Linux IOV_MAX).
pub const MAX_IOV: usize = 1024;

/// Frames a drained queue keeps room for: enough that steady low-rate traffic never
/// reallocates, small enough for 10k idle connections. (A fresh queue allocates at its first
/// frame: an idle connection that was never sent anything holds no buffer.)
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

/// Frames one connection must still send, with a byte budget that covers the write in flight.
#[derive(Debug)]
pub struct OutboundQueue {
    /// Frames in send order; the first `in_flight` are described by the write in flight.
    frames: VecDeque<LocalFrame>,
    /// Bytes of `frames[0]` already taken by the kernel (a write may stop inside a frame).
    head_written: usize,
    /// Frames the write in flight covers (0: no write in flight).
    in_flight: usize,
    /// Charge of every frame held: length + handle, less what was already written.
    charged_bytes: usize,
    /// Most bytes that may be charged (the slow-consumer threshold).
    max_backlog_bytes: usize,
}

/// What one frame costs the budget: its length and its handle; a control frame (pong,
/// keepalive ping, close) also its allocations, since the connection holds it alone (a
/// broadcast frame's are shared by every subscriber and charged once, to the fan-out budget).
fn charge(frame: &LocalFrame) -> usize {
    frame.len() + overhead(frame)
}

/// The part of [`charge`] that is not the frame's length.
fn overhead(frame: &LocalFrame) -> usize {
    // Bit 3 of the opcode marks control frames (RFC 6455 5.2); every frame has a header byte.
    let control = frame.first().is_some_and(|&byte| byte & 0x08 != 0);
    FRAME_HANDLE_BYTES + if control { CONTROL_FRAME_OVERHEAD } else { 0 }
}

impl OutboundQueue {
    /// An empty queue that may hold at most `max_backlog_bytes` of charged frames.
    pub fn new(max_backlog_bytes: usize) -> Self {
        OutboundQueue {
            frames: VecDeque::new(),
            head_written: 0,
            in_flight: 0,
            charged_bytes: 0,
            max_backlog_bytes,
        }
    }

    /// Queue a shared frame; Err when it would exceed the byte budget (slow consumer).
    pub fn push(&mut self, frame: LocalFrame) -> Result<(), BacklogExceeded> {
        let new_total = self.charged_bytes + charge(&frame);
        if new_total > self.max_backlog_bytes {
            return Err(BacklogExceeded {
                budget: self.max_backlog_bytes,
            });
        }
        self.charged_bytes = new_total;
        self.frames.push_back(frame);
        Ok(())
    }

    /// Queue a frame regardless of the budget. Only for the single close frame that ends a
    /// connection, so it cannot grow memory.
    pub fn push_final(&mut self, frame: LocalFrame) {
        self.charged_bytes += charge(&frame);
        self.frames.push_back(frame);
    }

    /// Describes up to `max_iov` frames from the head of the queue as iovecs (cleared first)
    /// for one write, and marks them in flight. Returns how many iovecs; 0 when nothing is
    /// left to send or a write is already in flight (one write per connection keeps order).
    ///
    /// The iovecs point into the frames' buffers, which stay in the queue (and alive) until
    /// [`OutboundQueue::finish_write`].
    pub fn start_write(&mut self, iovecs: &mut Vec<libc::iovec>, max_iov: usize) -> usize {
        iovecs.clear();
        if self.in_flight > 0 {
            return 0;
        }
        for (index, frame) in self.frames.iter().take(max_iov).enumerate() {
            let skip = if index == 0 { self.head_written } else { 0 };
            let unsent = &frame[skip..];
            iovecs.push(libc::iovec {
                iov_base: unsent.as_ptr().cast_mut().cast(),
                iov_len: unsent.len(),
            });
        }
        self.in_flight = iovecs.len();
        self.in_flight
    }

    /// Copies the unsent frames at the head of the queue to `into` (at least one, then as long
    /// as they fit in `max_bytes`) and marks them in flight, for a TLS write that seals them
    /// (`sealed.rs`); returns how many. 0 when none waits or a write is in flight.
    pub fn start_copied_write(&mut self, into: &mut Vec<u8>, max_bytes: usize) -> usize {
        if self.in_flight > 0 {
            return 0;
        }
        for (index, frame) in self.frames.iter().enumerate() {
            let unsent = &frame[if index == 0 { self.head_written } else { 0 }..];
            if index > 0 && into.len() + unsent.len() > max_bytes {
                break;
            }
            into.extend_from_slice(unsent);
            self.in_flight += 1;
        }
        self.in_flight
    }

    /// The write in flight took `written` bytes: drops the frames it took whole, remembers how
    /// far it got into the next, releases their charges. Returns the whole frames written.
    pub fn finish_write(&mut self, written: usize) -> usize {
        let mut remaining = written;
        let mut complete = 0;
        let mut released = written;
        while let Some(head) = self.frames.front() {
            let unsent = head.len() - self.head_written;
            if remaining < unsent {
                self.head_written += remaining;
                break;
            }
            remaining -= unsent;
            released += overhead(head);
            self.frames.pop_front();
            self.head_written = 0;
            complete += 1;
            if remaining == 0 {
                break;
            }
        }
        self.charged_bytes = self.charged_bytes.saturating_sub(released);
        self.in_flight = 0;
        if self.frames.is_empty() && self.frames.capacity() > SHRINK_ABOVE {
            self.frames.shrink_to(IDLE_CAPACITY);
        }
        complete
    }

    /// Drop every frame not in flight (a slow consumer's backlog is discarded, not
    /// delivered); returns how many. Frames in flight stay until their write completes.
    pub fn clear(&mut self) -> usize {
        let dropped = self.frames.len() - self.in_flight;
        let released: usize = self.frames.iter().skip(self.in_flight).map(charge).sum();
        self.frames.truncate(self.in_flight);
        if self.in_flight == 0 {
            self.frames.shrink_to(IDLE_CAPACITY);
        }
        self.charged_bytes -= released;
        dropped
    }

    /// Bytes charged: every frame held, queued or in flight, with its handle.
    pub fn charged_bytes(&self) -> usize {
        self.charged_bytes
    }

    /// Frames held, queued or in flight.
    pub fn held_frames(&self) -> usize {
        self.frames.len()
    }

    /// True while a write is in flight.
    pub fn is_writing(&self) -> bool {
        self.in_flight > 0
    }

    /// True when frames wait that no write covers yet.
    pub fn has_unsent(&self) -> bool {
        self.frames.len() > self.in_flight
    }

    /// The frames held, in send order (tests and benches look at them).
    #[cfg(any(test, feature = "testing"))]
    pub fn frames(&self) -> impl Iterator<Item = &LocalFrame> {
        self.frames.iter()
    }

    /// The most bytes that may be charged (`--max-backlog`).
    pub fn max_backlog(&self) -> usize {
        self.max_backlog_bytes
    }

    /// True when nothing is held at all.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use bytes::Bytes;

    use super::*;

    fn frame(len: usize) -> LocalFrame {
        Rc::new(Bytes::from(vec![0u8; len]))
    }

    /// Charge of a frame of `len` bytes.
    fn charged(len: usize) -> usize {
        len + FRAME_HANDLE_BYTES
    }

    /// The bytes a set of iovecs describes.
    fn described(iovecs: &[libc::iovec]) -> Vec<u8> {
        iovecs
            .iter()
            // SAFETY: the iovecs point into frames the queue under test keeps alive.
            .flat_map(|iov| unsafe {
                std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len)
            })
            .copied()
            .collect()
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
        let mut iovecs = Vec::new();
        assert_eq!(queue.start_write(&mut iovecs, MAX_IOV), 4);
        assert!(!queue.has_unsent());
        assert!(
            queue.push(frame(100)).is_err(),
            "a write in flight still counts against the budget"
        );
        // The kernel takes one frame and a half: that much of the charge comes back.
        assert_eq!(queue.finish_write(150), 1);
        assert_eq!(queue.charged_bytes(), budget - 150 - FRAME_HANDLE_BYTES);
        assert!(queue.push(frame(100)).is_ok());
        assert!(queue.push(frame(60)).is_err(), "{}", queue.charged_bytes());
    }

    #[test]
    fn clearing_a_slow_consumer_keeps_the_frames_in_flight() {
        let mut queue = OutboundQueue::new(1 << 20);
        for len in [10, 20, 30] {
            queue.push(frame(len)).unwrap();
        }
        let mut iovecs = Vec::new();
        queue.start_write(&mut iovecs, 2);
        queue.push(frame(40)).unwrap();
        assert_eq!(queue.clear(), 2, "the unsent 30 and 40");
        assert_eq!(queue.held_frames(), 2);
        assert_eq!(
            described(&iovecs).len(),
            30,
            "the write's buffers are still alive"
        );
        assert_eq!(queue.finish_write(30), 2);
        assert_eq!(queue.charged_bytes(), 0);
    }

    #[test]
    fn a_control_frame_is_charged_its_allocations_until_written() {
        let mut queue = OutboundQueue::new(1 << 20);
        let pong = Rc::new(Bytes::from_static(&[0x8A, 0]));
        queue.push(Rc::clone(&pong)).expect("room");
        queue.push(frame(10)).expect("room");
        assert_eq!(
            queue.charged_bytes(),
            2 + FRAME_HANDLE_BYTES + CONTROL_FRAME_OVERHEAD + charged(10)
        );
        let mut iovecs = Vec::new();
        assert_eq!(queue.start_write(&mut iovecs, MAX_IOV), 2);
        assert_eq!(queue.finish_write(1), 0, "inside the pong");
        queue.start_write(&mut iovecs, MAX_IOV);
        assert_eq!(queue.finish_write(1 + 10), 2);
        assert_eq!(queue.charged_bytes(), 0, "everything released");
    }

    #[test]
    fn tiny_frames_are_charged_their_handles() {
        // 1 MiB of 2-byte frames (empty messages): the handles, not the bytes, fill the budget.
        let mut queue = OutboundQueue::new(1 << 20);
        let empty = Rc::new(Bytes::from_static(&[0x82, 0]));
        let mut accepted = 0;
        while queue.push(Rc::clone(&empty)).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted, (1 << 20) / charged(2));
        assert_eq!(queue.held_frames(), accepted);
    }

    #[test]
    fn a_write_is_bounded_by_max_iov_and_keeps_order() {
        let mut queue = OutboundQueue::new(1 << 20);
        for byte in 1..=5u8 {
            queue
                .push(Rc::new(Bytes::from(vec![byte; byte as usize])))
                .unwrap();
        }
        let mut iovecs = Vec::new();
        assert_eq!(queue.start_write(&mut iovecs, 3), 3);
        assert_eq!(described(&iovecs), [1, 2, 2, 3, 3, 3]);
        assert_eq!(queue.start_write(&mut iovecs, 3), 0, "one write at a time");
        assert_eq!(queue.finish_write(6), 3);
        assert_eq!(queue.start_write(&mut iovecs, 3), 2);
        assert_eq!(queue.finish_write(9), 2);
        assert!(queue.is_empty());
        assert_eq!(queue.charged_bytes(), 0);
    }

    #[test]
    fn a_partial_write_resumes_inside_a_frame() {
        let mut queue = OutboundQueue::new(1 << 20);
        for text in [&b"abc"[..], b"defg", b"hi"] {
            queue.push(Rc::new(Bytes::copy_from_slice(text))).unwrap();
        }
        let mut iovecs = Vec::new();
        queue.start_write(&mut iovecs, MAX_IOV);
        assert_eq!(queue.finish_write(5), 1);
        queue.start_write(&mut iovecs, MAX_IOV);
        assert_eq!(described(&iovecs), b"fghi");
        assert_eq!(
            queue.finish_write(0),
            0,
            "a zero-byte write changes nothing"
        );
        queue.start_write(&mut iovecs, MAX_IOV);
        assert_eq!(described(&iovecs), b"fghi");
        assert_eq!(queue.finish_write(4), 2);
        assert!(queue.is_empty());
    }
}
