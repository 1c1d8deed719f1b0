//! The flush step's shared parts: one step for drivers whose writes complete at once
//! ([`flush_now`]), and the tally that counts a batch of writes into the metrics once.
//!
//! Delivering a frame lists its connection on the core's [`FlushList`] (once: a listed or
//! writing connection is not listed again) instead of waking a task per connection. The core's
//! write driver (`uring.rs`, `epoll.rs`) takes the whole list in one flush step and starts one
//! write per connection; a completed write that leaves frames unsent lists the connection
//! again. The step is sans-IO: both drivers take the list the same way.

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use super::subscriber::{FlushList, Subscriber, WriteDone};
use crate::metrics::{CoreMetrics, WriteSizes};

/// One flush step for a driver whose writes complete at once (epoll; benches and tests with
/// the IO stubbed): starts the next write of every connection on `list` and hands it to
/// `send` (the connection, its fd, the write's iovecs). A write `send` completed is finished
/// here; one it left in flight (it took the iovecs) is finished by the driver. `listed` and
/// `iovecs` are kept allocated between steps.
pub fn flush_now(
    list: &FlushList,
    listed: &mut Vec<Rc<Subscriber>>,
    iovecs: &mut Vec<libc::iovec>,
    now: Instant,
    mut send: impl FnMut(&Rc<Subscriber>, RawFd, &mut Vec<libc::iovec>) -> Sent,
) -> WriteTally {
    let mut tally = WriteTally::default();
    list.take_all(listed);
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

/// What the driver did with one write of [`flush_now`].
#[derive(Debug)]
pub enum Sent {
    /// It completed: bytes the kernel took, or the error.
    Done(io::Result<usize>),
    /// It stays in flight; the driver calls `Subscriber::finish_write` later.
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
    #[cfg(any(test, feature = "testing"))]
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
    use super::super::subscriber::testing::{attach_stub, standalone_core_output};
    use super::*;
    use crate::output::CoreOutput;
    use crate::ws::{encode_message, MessageKind};

    /// A stub-attached subscriber of `core` holding one 10-byte message (12-byte frame).
    fn listed(core: &Rc<CoreOutput>) -> Rc<Subscriber> {
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::clone(core),
            Instant::now(),
        ));
        attach_stub(&subscriber);
        subscriber.offer(&Rc::new(encode_message(MessageKind::Binary, &[7; 10])));
        subscriber
    }

    #[test]
    fn flush_now_finishes_completed_writes_relists_partial_ones_and_leaves_in_flight_alone() {
        let core = Rc::new(standalone_core_output());
        let (whole, partial, in_flight) = (listed(&core), listed(&core), listed(&core));
        assert!(!core.flush.is_empty(), "offering lists the connections");
        let (mut list, mut iovecs) = (Vec::new(), Vec::new());
        let mut sent = Vec::new();
        let tally = flush_now(
            &core.flush,
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
