//! The io_uring write driver: one flush task per core and a ring of its own, driven with the
//! `io-uring` crate (why not tokio-uring's writes: docs/ARCHITECTURE.md):
//!
//! - one flush step per wake-up takes every connection on the core's flush list
//!   (`subscriber.rs`), pushes one write per connection (all its unsent frames, up to IOV_MAX: a
//!   SEND for one frame, else a WRITEV) and submits them all with one `io_uring_enter`;
//! - completions signal the ring's eventfd (`backend::CoreRing`); tokio's reactor (inside
//!   tokio-uring's runtime) wakes this task, which reaps them all, advances each queue and
//!   lists again the connections that have more to send.
//!
//! So a delivery costs no task, no wake-up and no allocation: the flush task wakes once per
//! burst of deliveries and once per burst of completions. One write in flight per connection
//! keeps order. A write in flight owns an `Rc` of its subscriber, which owns the socket: the fd
//! cannot be closed (and its number reused) under it, and the frames its iovecs point into stay
//! in the subscriber's queue until the completion is processed.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use io_uring::{opcode, types};

use super::flush::WriteTally;
use super::subscriber::{CoreOutput, Subscriber};
use crate::backend::CoreRing;
use crate::clock::CoarseClock;
use crate::metrics::CoreMetrics;

/// Submission queue entries of the output ring: writes beyond it in one flush step are
/// submitted in several `io_uring_enter` calls.
const SUBMISSION_ENTRIES: u32 = 4096;
/// Completion queue entries: one per write in flight, and at most one write per connection is.
/// (Beyond it the kernel keeps completions on its overflow list; none is lost.)
const COMPLETION_ENTRIES: u32 = 64 * 1024;

/// A write the kernel has not completed yet.
struct InFlight {
    /// Whose write it is (keeps the socket and the frames alive).
    subscriber: Rc<Subscriber>,
    /// The iovecs the write points to.
    iovecs: Vec<libc::iovec>,
}

/// One core's output ring and its writes in flight.
pub struct UringDriver {
    /// The ring and its eventfd.
    ring: CoreRing,
    /// Writes in flight, indexed by the SQE's user data.
    slots: RefCell<Vec<Option<InFlight>>>,
    /// Free indexes of `slots`.
    free_slots: RefCell<Vec<usize>>,
    /// iovec arrays of completed writes, reused by the next ones.
    spare_iovecs: RefCell<Vec<Vec<libc::iovec>>>,
    /// (user data, result) of the completions being reaped, kept allocated between reaps.
    reaped: RefCell<Vec<(u64, i32)>>,
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDriver")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl UringDriver {
    /// Sets up the ring; must run inside the core's runtime (see `CoreRing::new`).
    pub fn new() -> io::Result<Self> {
        Ok(UringDriver {
            ring: CoreRing::new(SUBMISSION_ENTRIES, COMPLETION_ENTRIES)?,
            slots: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            spare_iovecs: RefCell::new(Vec::new()),
            reaped: RefCell::new(Vec::new()),
        })
    }

    /// Writes the kernel has not completed.
    pub fn in_flight(&self) -> usize {
        self.slots.borrow().len() - self.free_slots.borrow().len()
    }

    /// Queues (does not submit) the next write of `subscriber`, if it has one.
    fn push_write(&self, subscriber: Rc<Subscriber>, now: Instant) -> io::Result<()> {
        let mut iovecs = self.spare_iovecs.borrow_mut().pop().unwrap_or_default();
        let Some(fd) = subscriber.start_write(&mut iovecs, now) else {
            self.spare_iovecs.borrow_mut().push(iovecs);
            return Ok(());
        };
        let entry = match iovecs.as_slice() {
            // One frame (the common case below a few hundred messages per second): a SEND
            // skips importing an iovec array (a frame over 4 GiB is sent in parts).
            [single] => opcode::Send::new(
                types::Fd(fd),
                single.iov_base.cast(),
                single.iov_len.min(u32::MAX as usize) as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build(),
            // start_write describes at most IOV_MAX iovecs, which fits a u32.
            many => opcode::Writev::new(types::Fd(fd), many.as_ptr(), many.len() as u32).build(),
        }
        .user_data(self.take_slot(InFlight { subscriber, iovecs }) as u64);
        // SAFETY: the iovecs and the buffers they point to live in the slot (the iovec Vec,
        // and the subscriber's queue) until this write's completion is reaped.
        if let Err(error) = unsafe { self.ring.push(&entry) } {
            // This write was never submitted, so no completion will free its slot: end it here
            // as failed (the connection is shut down), or the slot, the subscriber and its
            // queue would be held until the process exits.
            self.abandon(entry.get_user_data() as usize, now);
            return Err(error);
        }
        Ok(())
    }

    /// Ends the write in slot `index`, which was never submitted, as failed.
    fn abandon(&self, index: usize, now: Instant) {
        let write = self
            .slots
            .borrow_mut()
            .get_mut(index)
            .and_then(Option::take);
        if let Some(InFlight {
            subscriber,
            mut iovecs,
        }) = write
        {
            self.free_slots.borrow_mut().push(index);
            let unsubmitted = io::Error::from_raw_os_error(libc::ECANCELED);
            subscriber.finish_write(Err(unsubmitted), now);
            iovecs.clear();
            self.spare_iovecs.borrow_mut().push(iovecs);
        }
    }

    /// Stores a write in flight; returns its index.
    fn take_slot(&self, write: InFlight) -> usize {
        let mut slots = self.slots.borrow_mut();
        match self.free_slots.borrow_mut().pop() {
            Some(index) => {
                slots[index] = Some(write);
                index
            }
            None => {
                slots.push(Some(write));
                slots.len() - 1
            }
        }
    }

    /// Processes every completion: finishes each write and counts it.
    fn reap(&self, metrics: &CoreMetrics, now: Instant) {
        // Copied out first: finishing a write must not hold the ring borrowed.
        let mut completed = self.reaped.take();
        completed.extend(
            self.ring
                .borrow_mut()
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        let mut tally = WriteTally::default();
        for &(user_data, result) in &completed {
            let index = user_data as usize;
            let Some(InFlight {
                subscriber,
                mut iovecs,
            }) = self
                .slots
                .borrow_mut()
                .get_mut(index)
                .and_then(Option::take)
            else {
                continue;
            };
            self.free_slots.borrow_mut().push(index);
            let result = usize::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result));
            tally.add(subscriber.finish_write(result, now));
            iovecs.clear();
            self.spare_iovecs.borrow_mut().push(iovecs);
        }
        completed.clear();
        *self.reaped.borrow_mut() = completed;
        tally.record(metrics);
    }
}

/// The core's flush task: reap completions, submit one write per listed connection, wait for
/// either more listed connections or more completions.
pub async fn flush_loop(
    driver: Rc<UringDriver>,
    core_output: Rc<CoreOutput>,
    metrics: Arc<CoreMetrics>,
    clock: Rc<CoarseClock>,
) {
    let flush = &core_output.flush;
    let mut listed = Vec::new();
    loop {
        let now = clock.now();
        driver.reap(&metrics, now);
        flush.take_all(&mut listed);
        let mut failed = None;
        for subscriber in listed.drain(..) {
            if let Err(error) = driver.push_write(Rc::clone(&subscriber), now) {
                failed = Some(error);
                subscriber.shutdown_socket();
            }
        }
        if let Err(error) = driver.ring.borrow_mut().submit() {
            failed = Some(error);
        }
        if let Some(error) = failed {
            // A broken ring, or EBUSY with completions overflowing the CQ (a core with more
            // connections than its entries): the writes not submitted ended their connections
            // (`abandon`); the ones submitted complete as usual.
            tracing::error!(%error, "output ring submission failed");
        }
        if !flush.is_empty() {
            continue;
        }
        tokio::select! {
            () = flush.marked() => {}
            signalled = driver.ring.signalled() => {
                if let Err(error) = signalled {
                    tracing::error!(%error, "output ring eventfd failed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::subscriber::testing::{attach_stub, detached};
    use super::*;

    /// A write whose submission failed (the ring refused it) gets no completion: abandoning it
    /// frees its slot (and its hold on the subscriber) and ends the connection.
    #[test]
    fn a_write_never_submitted_frees_its_slot_and_ends_the_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let _inside = runtime.enter();
        let driver = UringDriver::new().expect("io_uring (this host runs the uring backend)");
        let subscriber = detached(1 << 20);
        attach_stub(&subscriber);
        assert!(!subscriber.offer(&Rc::new(Bytes::from_static(&[0x82, 0]))));
        let mut iovecs = Vec::new();
        assert!(subscriber
            .start_write(&mut iovecs, Instant::now())
            .is_some());
        let index = driver.take_slot(InFlight {
            subscriber: Rc::clone(&subscriber),
            iovecs,
        });
        assert_eq!(driver.in_flight(), 1);
        driver.abandon(index, Instant::now());
        assert_eq!(driver.in_flight(), 0, "the slot is free");
        assert!(subscriber.is_shut_down(), "the connection ends");
    }
}
