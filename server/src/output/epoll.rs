//! The epoll write driver: one flush task per core writing with `sendmsg(2)`.
//!
//! Each flush step takes every connection on the core's flush list (`subscriber.rs`) and writes
//! all its unsent frames (up to IOV_MAX) in one nonblocking vectored send. A connection whose
//! send buffer is full keeps that write in flight: a small task waits until its socket is
//! writable and sends the same iovecs again, as the kernel does for an io_uring WRITEV. That
//! is the slow path (a lagging client); on the fast path a delivery costs no task, no wake-up
//! and no allocation, as on io_uring, and a write costs one syscall.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use super::flush::{flush_now, Sent, WriteTally};
use super::subscriber::{CoreOutput, Subscriber};
use crate::backend::cvt;
use crate::clock::CoarseClock;
use crate::metrics::CoreMetrics;

/// One core's writer state.
#[derive(Debug, Default)]
pub struct EpollDriver {
    /// Writes waiting for their socket to become writable.
    waiting: Cell<usize>,
}

impl EpollDriver {
    /// Writes that wait for writability (in flight, for the shutdown drain).
    pub fn in_flight(&self) -> usize {
        self.waiting.get()
    }
}

/// Sends what `iovecs` describe without waiting, without SIGPIPE.
fn send_vectored(fd: RawFd, iovecs: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_ptr().cast_mut();
    // At most IOV_MAX iovecs (start_write's bound), which fits every msg_iovlen type.
    message.msg_iovlen = iovecs.len() as _;
    // SAFETY: the iovecs point into frames the subscriber holds until finish_write.
    cvt(unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

/// The core's flush task: one send per listed connection, then wait for more.
pub async fn flush_loop(
    driver: Rc<EpollDriver>,
    core_output: Rc<CoreOutput>,
    metrics: Arc<CoreMetrics>,
    clock: Rc<CoarseClock>,
) {
    let flush = &core_output.flush;
    let (mut listed, mut iovecs) = (Vec::new(), Vec::new());
    loop {
        let now = clock.now();
        let tally = flush_now(
            flush,
            &mut listed,
            &mut iovecs,
            now,
            |subscriber, fd, iovecs| match send_vectored(fd, iovecs) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    driver.waiting.set(driver.waiting.get() + 1);
                    tokio::task::spawn_local(send_when_writable(
                        Rc::clone(&driver),
                        Rc::clone(subscriber),
                        std::mem::take(iovecs),
                        Arc::clone(&metrics),
                        Rc::clone(&clock),
                    ));
                    Sent::InFlight
                }
                result => Sent::Done(result),
            },
        );
        tally.record(&metrics);
        if flush.is_empty() {
            flush.marked().await;
        }
    }
}

/// A write the socket had no room for: sends it once the socket is writable (or fails it
/// once the socket is shut down, which also makes it "writable").
async fn send_when_writable(
    driver: Rc<EpollDriver>,
    subscriber: Rc<Subscriber>,
    iovecs: Vec<libc::iovec>,
    metrics: Arc<CoreMetrics>,
    clock: Rc<CoarseClock>,
) {
    let result = match subscriber.socket() {
        Some(socket) => {
            socket
                .write_when_ready(|fd| send_vectored(fd, &iovecs))
                .await
        }
        None => Err(io::Error::from(io::ErrorKind::NotConnected)),
    };
    let mut tally = WriteTally::default();
    tally.add(subscriber.finish_write(result, clock.now()));
    tally.record(&metrics);
    driver.waiting.set(driver.waiting.get() - 1);
}
