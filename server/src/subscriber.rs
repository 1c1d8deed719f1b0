//! One WebSocket connection as the hub and the keepalive sweep see it: its outbound queue, the
//! wake-up of its writer task, its keepalive and write-progress clocks, and its close state
//! machine.
//!
//! Everything here is single-threaded (`Cell`/`RefCell` on one core), so delivering a frame is
//! a borrow, a reference-count increment, a queue push and two counter updates: no lock,
//! allocation or syscall. Every frame held (queued or in flight) is charged to the connection's
//! budget and counted in the core's [`CoreLedger`] until it is written or dropped.
//!
//! Closing: whoever ends a connection queues exactly one close frame (bypassing the budget) and
//! sets a deadline. The socket is shut down (`shutdown(Both)`, which also ends a pending read or
//! a stuck `writev`) as soon as the close handshake is complete, at once after a protocol
//! error, or by the per-core sweep when the deadline passes.

use std::cell::{Cell, OnceCell, RefCell};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_uring::net::TcpStream;

use crate::frame::{encode_close, encode_close_echo, CloseCode};
use crate::memory::CoreLedger;
use crate::outbound::{advance_batch, OutboundQueue};
use crate::server_state::ConnectionPermit;
use crate::wake::LocalWake;

/// How long a connection we close may take to answer our close frame (or, for a slow consumer,
/// to take it at all) before its socket is shut down.
pub const CLOSE_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

/// One connection's hub-facing state.
pub struct Subscriber {
    /// Frames waiting for the writer task or in its write; bounded by --max-backlog.
    queue: RefCell<OutboundQueue>,
    /// The core's count of frame handles, charged for every frame this connection holds.
    ledger: Rc<CoreLedger>,
    /// Wakes the writer task when its queue goes from empty to non-empty (or on close).
    writer_wake: LocalWake,
    /// Deadline by which the connection must be gone; Some once our close frame is queued,
    /// after which nothing else is queued.
    close_deadline: Cell<Option<Instant>>,
    /// The client's close frame has arrived.
    close_received: Cell<bool>,
    /// Our close frame has been written.
    close_written: Cell<bool>,
    /// The connection failed (protocol error): shut down right after our close is written.
    failed: Cell<bool>,
    /// Last time (coarse clock of the core) the client sent anything (data, ping, pong).
    last_inbound: Cell<Instant>,
    /// Last keepalive ping queued, if one was sent since the client last spoke.
    last_ping: Cell<Option<Instant>>,
    /// Last time the writer took a batch or the kernel took bytes: a connection holding output
    /// with no progress for --write-timeout is stalled (closed with 1008).
    last_write_progress: Cell<Instant>,
    /// The reader stopped reading because the fan-out budget is exhausted: the client is not
    /// silent, the server is not listening, so keepalive leaves it alone.
    reading_paused: Cell<bool>,
    /// Index of this subscriber in its room's list, for O(1) removal.
    room_slot: Cell<usize>,
    /// The socket, shared with the reader and writer tasks. Attached once the 101 response is
    /// flushed (the subscriber joins its room before that, so no message published after the
    /// handshake is missed); never set in socket-less benches/tests.
    socket: OnceCell<Rc<TcpStream>>,
    /// `shutdown(Both)` was already called.
    socket_shut: Cell<bool>,
    /// Holds this connection's place under --max-connections until the subscriber is dropped.
    _permit: Option<ConnectionPermit>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("charged_bytes", &self.charged_bytes())
            .field("closing", &self.is_closing())
            .field("has_socket", &self.socket.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Subscriber {
    /// Whatever the connection still held (queued, or in a write that will never complete) is
    /// freed with it: give its handles back to the core's count.
    fn drop(&mut self) {
        self.ledger
            .release_handles(self.queue.get_mut().held_frames());
    }
}

impl Subscriber {
    /// A subscriber counted under `permit` whose frames are counted in `ledger`, its socket
    /// attached later.
    pub fn new(
        max_backlog: usize,
        permit: Option<ConnectionPermit>,
        ledger: Rc<CoreLedger>,
        now: Instant,
    ) -> Self {
        Subscriber {
            queue: RefCell::new(OutboundQueue::new(max_backlog)),
            ledger,
            writer_wake: LocalWake::default(),
            close_deadline: Cell::new(None),
            close_received: Cell::new(false),
            close_written: Cell::new(false),
            failed: Cell::new(false),
            last_inbound: Cell::new(now),
            last_ping: Cell::new(None),
            last_write_progress: Cell::new(now),
            reading_paused: Cell::new(false),
            room_slot: Cell::new(0),
            socket: OnceCell::new(),
            socket_shut: Cell::new(false),
            _permit: permit,
        }
    }

    /// A subscriber without a socket (benches, allocation test): frames only queue up.
    pub fn detached(max_backlog: usize) -> Self {
        Subscriber::new(
            max_backlog,
            None,
            Rc::new(CoreLedger::standalone()),
            Instant::now(),
        )
    }

    /// Queues a frame (broadcast, pong or keepalive ping, all under the same budget). Returns
    /// true if this push made the connection a slow consumer (its backlog is dropped and it is
    /// closed with 1008).
    pub fn offer(&self, frame: &Bytes) -> bool {
        if self.close_deadline.get().is_some() {
            return false;
        }
        let mut queue = self.queue.borrow_mut();
        let was_empty = queue.is_empty();
        if queue.push(frame.clone()).is_ok() {
            drop(queue);
            self.ledger.charge_handles(1);
            if was_empty {
                self.writer_wake.wake();
            }
            return false;
        }
        let dropped = queue.clear();
        drop(queue);
        self.ledger.release_handles(dropped);
        self.close(CloseCode::SlowConsumer, "slow consumer");
        true
    }

    /// Starts a server-initiated close: queues the close frame; the client has
    /// [`CLOSE_HANDSHAKE_DEADLINE`] to answer.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.close_with(encode_close(code as u16, reason), CLOSE_HANDSHAKE_DEADLINE);
    }

    /// Like [`Subscriber::close`] with a caller-chosen deadline (graceful shutdown's grace).
    pub fn close_within(&self, code: CloseCode, reason: &str, grace: Duration) {
        self.close_with(encode_close(code as u16, reason), grace);
    }

    /// Fails the connection after a protocol error: close frame, then shutdown once written.
    pub fn fail(&self, code: CloseCode, reason: &str) {
        self.failed.set(true);
        self.close(code, reason);
        if self.close_written.get() {
            self.shutdown_socket();
        }
    }

    /// The client sent a (validated) close frame. Echo it if we have not sent ours; if we had,
    /// the handshake is complete.
    pub fn close_received(&self, payload: &[u8]) {
        self.close_received.set(true);
        if self.close_deadline.get().is_none() {
            self.close_with(encode_close_echo(payload), CLOSE_HANDSHAKE_DEADLINE);
        } else if self.close_written.get() {
            self.shutdown_socket();
        }
    }

    /// Queues `frame` as the last frame and sets the deadline (first close wins).
    fn close_with(&self, frame: Bytes, grace: Duration) {
        if self.close_deadline.get().is_some() {
            return;
        }
        self.close_deadline.set(Some(Instant::now() + grace));
        self.queue.borrow_mut().push_final(frame);
        self.ledger.charge_handles(1);
        self.writer_wake.wake();
    }

    /// Called by the writer when the queue is drained after the close frame went out. Returns
    /// true when the socket was shut down (handshake complete or connection failed).
    pub fn close_frame_written(&self) -> bool {
        self.close_written.set(true);
        if self.close_received.get() || self.failed.get() {
            self.shutdown_socket();
            return true;
        }
        false
    }

    /// Shuts the socket down both ways (once): pending reads return 0, writes fail, and the
    /// idle writer is woken to exit, so both tasks finish and the fd closes when they drop it.
    /// Nothing is queued afterwards.
    pub fn shutdown_socket(&self) {
        if self.socket_shut.replace(true) {
            return;
        }
        if self.close_deadline.get().is_none() {
            self.close_deadline.set(Some(Instant::now()));
        }
        if let Some(socket) = self.socket.get() {
            // An error here means the socket is already disconnected, which is the goal.
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.writer_wake.wake();
    }

    /// True once the socket was shut down: the writer has nothing left to do.
    pub fn is_shut_down(&self) -> bool {
        self.socket_shut.get()
    }

    /// True once a close frame is queued (no more frames will be accepted).
    pub fn is_closing(&self) -> bool {
        self.close_deadline.get().is_some()
    }

    /// Deadline by which a closing connection must be gone.
    pub fn close_deadline(&self) -> Option<Instant> {
        self.close_deadline.get()
    }

    /// Records inbound traffic (for keepalive): any frame, a pong included, proves the client
    /// alive and restarts its ping schedule.
    pub fn touch(&self, now: Instant) {
        self.last_inbound.set(now);
        self.last_ping.set(None);
    }

    /// Last inbound traffic.
    pub fn last_inbound(&self) -> Instant {
        self.last_inbound.get()
    }

    /// When the last keepalive ping went out, if the client has not spoken since.
    pub fn last_ping(&self) -> Option<Instant> {
        self.last_ping.get()
    }

    /// Records a keepalive ping queued at `now`.
    pub fn pinged(&self, now: Instant) {
        self.last_ping.set(Some(now));
    }

    /// Marks the reader as paused (or resumed) by the fan-out budget.
    pub fn set_reading_paused(&self, paused: bool) {
        self.reading_paused.set(paused);
    }

    /// True while the reader is paused by the fan-out budget.
    pub fn is_reading_paused(&self) -> bool {
        self.reading_paused.get()
    }

    /// Moves up to `max_iov` queued frames into `batch`; they stay charged until written.
    pub fn take_batch(&self, batch: &mut Vec<Bytes>, max_iov: usize, now: Instant) {
        self.queue.borrow_mut().take_batch(batch, max_iov);
        self.last_write_progress.set(now);
    }

    /// Accounts a write that took `written` bytes of `batch`: drops the frames written whole,
    /// advances a partly written one, releases their charges. Returns the whole frames written.
    pub fn complete_write(&self, batch: &mut Vec<Bytes>, written: usize, now: Instant) -> usize {
        let frames = advance_batch(batch, written);
        self.queue.borrow_mut().written(written, frames);
        self.ledger.release_handles(frames);
        if written > 0 {
            self.last_write_progress.set(now);
        }
        frames
    }

    /// Bytes charged to the budget: queued and in-flight frames with their handles.
    pub fn charged_bytes(&self) -> usize {
        self.queue.borrow().charged_bytes()
    }

    /// True when the connection holds output and neither the writer nor the kernel has taken
    /// any of it since `since`.
    pub fn write_stalled_since(&self, since: Instant) -> bool {
        self.queue.borrow().held_frames() > 0 && self.last_write_progress.get() < since
    }

    /// Waits until the writer has something to do (a permit is kept if woken early).
    pub async fn writer_wakeup(&self) {
        self.writer_wake.wait().await;
    }

    /// Attaches the socket after the handshake. If the connection was already told to shut
    /// down meanwhile, the socket is shut down at once.
    pub fn attach_socket(&self, socket: Rc<TcpStream>) {
        let shut_before = self.socket_shut.get();
        if self.socket.set(socket).is_ok() && shut_before {
            self.socket_shut.set(false);
            self.shutdown_socket();
        }
    }

    /// Position in the room's subscriber list.
    pub(crate) fn room_slot(&self) -> usize {
        self.room_slot.get()
    }

    /// Records the position in the room's subscriber list.
    pub(crate) fn set_room_slot(&self, slot: usize) {
        self.room_slot.set(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_message, MessageKind};

    #[test]
    fn slow_consumer_is_closed_with_1008_and_its_backlog_dropped() {
        let subscriber = Subscriber::detached(100 + crate::memory::FRAME_HANDLE_BYTES);
        let frame = encode_message(MessageKind::Binary, &[0u8; 60]);
        assert!(!subscriber.offer(&frame));
        assert!(subscriber.offer(&frame), "second frame exceeds the budget");
        assert!(subscriber.is_closing());
        let mut batch = Vec::new();
        subscriber.take_batch(&mut batch, 16, Instant::now());
        assert_eq!(batch.len(), 1, "only the close frame remains");
        assert_eq!(&batch[0][..4], &[0x88, 15, 0x03, 0xF0]);
        assert!(
            !subscriber.offer(&frame),
            "nothing is queued after the close"
        );
        subscriber.take_batch(&mut batch, 16, Instant::now());
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn client_close_is_echoed_once() {
        let subscriber = Subscriber::detached(1000);
        subscriber.close_received(&1000u16.to_be_bytes());
        subscriber.close_received(&1000u16.to_be_bytes());
        let mut batch = Vec::new();
        subscriber.take_batch(&mut batch, 16, Instant::now());
        assert_eq!(batch, vec![Bytes::from_static(&[0x88, 2, 0x03, 0xE8])]);
        assert!(subscriber.is_closing());
    }

    #[test]
    fn held_frames_are_counted_in_the_core_ledger_until_written_or_dropped() {
        let ledger = Rc::new(CoreLedger::standalone());
        let handle = crate::memory::FRAME_HANDLE_BYTES;
        let subscriber = Subscriber::new(1 << 20, None, Rc::clone(&ledger), Instant::now());
        let frame = encode_message(MessageKind::Binary, &[1u8; 10]);
        for _ in 0..3 {
            subscriber.offer(&frame);
        }
        assert_eq!(ledger.handle_bytes(), 3 * handle);
        let mut batch = Vec::new();
        subscriber.take_batch(&mut batch, 16, Instant::now());
        assert_eq!(ledger.handle_bytes(), 3 * handle, "in flight still counts");
        assert_eq!(
            subscriber.complete_write(&mut batch, frame.len() + 1, Instant::now()),
            1
        );
        assert_eq!(ledger.handle_bytes(), 2 * handle);
        drop(batch);
        drop(subscriber);
        assert_eq!(
            ledger.handle_bytes(),
            0,
            "dropping the connection releases the rest"
        );
    }

    #[test]
    fn a_write_that_makes_no_progress_is_stalled() {
        let start = Instant::now();
        let subscriber = Subscriber::detached(1 << 20);
        assert!(!subscriber.write_stalled_since(start + Duration::from_secs(1)));
        subscriber.offer(&encode_message(MessageKind::Binary, b"x"));
        let mut batch = Vec::new();
        subscriber.take_batch(&mut batch, 16, start);
        assert!(subscriber.write_stalled_since(start + Duration::from_secs(1)));
        subscriber.complete_write(&mut batch, 1, start + Duration::from_secs(2));
        assert!(!subscriber.write_stalled_since(start + Duration::from_secs(1)));
    }
}
