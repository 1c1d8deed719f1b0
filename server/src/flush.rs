//! The connections of one core that have output to send, collected between flush steps.
//!
//! Delivering a frame marks its connection here (once: a marked or writing connection is not
//! marked again) instead of waking a task per connection. The core's output backend
//! (`uring_output.rs`, `epoll_output.rs`) takes the whole list in one flush step and starts
//! one write per connection; a completed write that leaves frames unsent marks the connection
//! again. The list is sans-IO: both backends take it the same way.

use std::cell::RefCell;
use std::rc::Rc;

use crate::metrics::CoreMetrics;
use crate::subscriber::{Subscriber, WriteDone};
use crate::wake::LocalWake;

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
}

impl WriteTally {
    /// Counts one completed write.
    pub fn add(&mut self, done: WriteDone) {
        self.writes += 1;
        self.frames += done.frames as u64;
        self.bytes += done.bytes as u64;
    }

    /// Adds the batch to the core's counters.
    pub fn record(self, metrics: &CoreMetrics) {
        CoreMetrics::add(&metrics.writev_calls, self.writes);
        CoreMetrics::add(&metrics.frames_written, self.frames);
        CoreMetrics::add(&metrics.bytes_out, self.bytes);
    }
}
