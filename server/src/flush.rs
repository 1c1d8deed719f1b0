//! The connections of one core that have output to send, collected between flush steps.
//!
//! Delivering a frame marks its connection here (once: a marked or writing connection is not
//! marked again) instead of waking a task per connection. The core's output backend
//! (`uring_output.rs`) takes the whole list in one flush step and submits one write per
//! connection, all in one submission; a completion that leaves frames unsent marks the
//! connection again. The list is sans-IO: the epoll backend takes it the same way.

use std::cell::RefCell;
use std::rc::Rc;

use crate::subscriber::Subscriber;
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
