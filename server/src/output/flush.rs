//! The connections of one core that have output to send, collected between flush steps.
//!
//! Delivering a frame marks its connection here (once: a marked or writing connection is not
//! marked again) instead of waking a task per connection. The core's output backend
//! (`uring_output.rs`, `epoll_output.rs`) takes the whole list in one flush step and starts
//! one write per connection; a completed write that leaves frames unsent marks the connection
//! again. The list is sans-IO: both backends take it the same way.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use crate::metrics::{CoreMetrics, WriteSizes};
use crate::output::subscriber::{Subscriber, WriteDone};
use crate::output::wake::LocalWake;

/// Connections waiting for the next flush step.
#[derive(Debug, Default)]
pub struct FlushList {
    /// Marked connections, each at most once (their `marked` flag says so).
    pending: RefCell<Vec<Rc<Subscriber>>>,
    /// Wakes the flush task when the list goes from empty to non-empty.
    wake: LocalWake,
}

impl FlushList {
    /// Adds a connection (the caller checked it is not marked yet).
    pub fn mark(&self, subscriber: Rc<Subscriber>) {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            self.wake.wake();
        }
        pending.push(subscriber);
    }

    /// Moves every marked connection into `into` (kept allocated between flush steps).
    pub fn take_all(&self, into: &mut Vec<Rc<Subscriber>>) {
        into.append(&mut self.pending.borrow_mut());
    }

    /// Waits until a connection is marked (at once if one was marked since the last wait).
    pub async fn marked(&self) {
        self.wake.wait().await;
    }

    /// True when no connection waits.
    pub fn is_empty(&self) -> bool {
        self.pending.borrow().is_empty()
    }

    /// One flush step for a backend whose writes complete at once (epoll; benches and tests
    /// with the IO stubbed): starts the next write of every listed connection and hands it to
    /// `send` (the connection, its fd, the write's iovecs). A write `send` completed is
    /// finished here; one it left in flight (it took the iovecs) is finished by the backend.
    /// `listed` and `iovecs` are kept allocated between steps.
    pub fn flush_now(
        &self,
        listed: &mut Vec<Rc<Subscriber>>,
        iovecs: &mut Vec<libc::iovec>,
        now: Instant,
        mut send: impl FnMut(&Rc<Subscriber>, RawFd, &mut Vec<libc::iovec>) -> Sent,
    ) -> WriteTally {
        let mut tally = WriteTally::default();
        self.take_all(listed);
        for subscriber in listed.drain(..) {
            let Some(fd) = subscriber.start_write(iovecs, now) else {
                continue;
            };
            if let Sent::Done(result) = send(&subscriber, fd, iovecs) {
                tally.add(subscriber.finish_write(result, now));
                iovecs.clear();
            }
        }
        tally
    }
}

/// What the backend did with one write of [`FlushList::flush_now`].
#[derive(Debug)]
pub enum Sent {
    /// It completed: bytes the kernel took, or the error.
    Done(io::Result<usize>),
    /// It stays in flight; the backend calls `Subscriber::finish_write` later.
    InFlight,
}

/// What the writes of one flush step (or one batch of completions) did, counted into the
/// metrics once per batch instead of once per write.
#[derive(Debug, Default)]
pub struct WriteTally {
    /// Writes completed.
    writes: u64,
    /// Frames they took whole.
    frames: u64,
    /// Bytes they took.
    bytes: u64,
    /// Frames per write (`ringcast_frames_per_write`).
    frames_per_write: WriteSizes,
}

impl WriteTally {
    /// Counts one completed write.
    pub fn add(&mut self, done: WriteDone) {
        self.writes += 1;
        self.frames += done.frames as u64;
        self.bytes += done.bytes as u64;
        self.frames_per_write.record(done.frames as u64);
    }

    /// Frames the batch's writes took whole.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Adds the batch to the core's counters.
    pub fn record(self, metrics: &CoreMetrics) {
        CoreMetrics::add(&metrics.writev_calls, self.writes);
        CoreMetrics::add(&metrics.frames_written, self.frames);
        CoreMetrics::add(&metrics.bytes_out, self.bytes);
        metrics.record_writes(&self.frames_per_write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::subscriber::CoreOutput;
    use crate::ws::encode::{encode_message, MessageKind};

    /// A stub-attached subscriber of `core` holding one 10-byte message (12-byte frame).
    fn listed(core: &Rc<CoreOutput>) -> Rc<Subscriber> {
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::clone(core),
            Instant::now(),
        ));
        subscriber.attach_stub();
        subscriber.offer(&Rc::new(encode_message(MessageKind::Binary, &[7; 10])));
        subscriber
    }

    #[test]
    fn flush_now_finishes_completed_writes_relists_partial_ones_and_leaves_in_flight_alone() {
        let core = Rc::new(CoreOutput::standalone());
        let (whole, partial, in_flight) = (listed(&core), listed(&core), listed(&core));
        assert!(!core.flush.is_empty(), "offering lists the connections");
        let (mut list, mut iovecs) = (Vec::new(), Vec::new());
        let mut sent = Vec::new();
        let tally = core.flush.flush_now(
            &mut list,
            &mut iovecs,
            Instant::now(),
            |subscriber, _, iovecs| {
                let bytes: usize = iovecs.iter().map(|iov| iov.iov_len).sum();
                sent.push(bytes);
                if Rc::ptr_eq(subscriber, &whole) {
                    Sent::Done(Ok(bytes))
                } else if Rc::ptr_eq(subscriber, &partial) {
                    Sent::Done(Ok(5))
                } else {
                    Sent::InFlight
                }
            },
        );
        assert_eq!(sent, [12, 12, 12], "one write per listed connection");
        assert_eq!(tally.frames(), 1, "only the whole write took a frame");
        assert_eq!(whole.held_frames(), 0);
        assert_eq!(partial.held_frames(), 1);
        assert_eq!(in_flight.held_frames(), 1);
        // The partial write's rest is listed again; the write in flight is not touched.
        core.flush.take_all(&mut list);
        assert_eq!(list.len(), 1);
        assert!(Rc::ptr_eq(&list[0], &partial));
        in_flight.finish_write(Ok(12), Instant::now());
        assert_eq!(in_flight.held_frames(), 0);
    }
}
