//! One WebSocket connection as the hub, the keepalive sweep and the output backend see it: its
//! outbound queue, its place in the core's flush list, its keepalive and write-progress clocks,
//! and its close state machine.
//!
//! Everything here is single-threaded (`Cell`/`RefCell` on one core), so delivering a frame is
//! a borrow, a non-atomic reference-count increment, a queue push, two counter updates and, for
//! a connection that had nothing to send, one push onto the flush list: no lock, atomic,
//! allocation, syscall or task wake-up. Every frame held (queued or in flight) is charged to
//! the connection's budget and counted in the core's [`CoreLedger`] until written or dropped.
//!
//! Closing: whoever ends a connection queues exactly one close frame (bypassing the budget) and
//! sets a deadline. The socket is shut down (`shutdown(Both)`, which also ends a pending read or
//! a stuck write) as soon as the close handshake is complete, at once after a protocol error,
//! or by the per-core sweep when the deadline passes.

use std::cell::{Cell, OnceCell, RefCell};
use std::io;
use std::net::Shutdown;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::backend::socket::ConnSocket;
use crate::budget::CoreLedger;
use crate::input::reader::{EndedConnections, ReaderKey};
use crate::output::flush::FlushList;
use crate::output::queue::{LocalFrame, OutboundQueue, MAX_IOV};
use crate::state::ConnectionPermit;
use crate::ws::close::CloseState;
use crate::ws::encode::{encode_close, encode_close_echo, CloseCode};

/// How long a connection we close may take to answer our close frame (or, for a slow consumer,
/// to take it at all) before its socket is shut down.
pub const CLOSE_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

/// The core-wide parts a connection reports to: its handle count, its flush list and the
/// reader's list of connections whose socket was shut down.
#[derive(Debug)]
pub struct CoreOutput {
    /// Frame handles held by this core's connections.
    pub ledger: CoreLedger,
    /// Connections with output waiting for the next flush step.
    pub flush: FlushList,
    /// Connections the core's reader is to drop (their socket was shut down).
    pub ended: EndedConnections,
}

impl CoreOutput {
    /// The output parts of a core counting into `ledger`.
    pub fn new(ledger: CoreLedger) -> Self {
        CoreOutput {
            ledger,
            flush: FlushList::default(),
            ended: EndedConnections::default(),
        }
    }

    /// Parts of their own (socket-less subscribers in benches and tests).
    pub fn standalone() -> Self {
        CoreOutput::new(CoreLedger::standalone())
    }
}

/// What a completed write did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteDone {
    /// Bytes the kernel took.
    pub bytes: usize,
    /// Frames it took whole.
    pub frames: usize,
}

/// Where a connection's output goes.
enum Endpoint {
    /// A client's socket.
    Socket(ConnSocket),
    /// No socket: listed and flushed like a connection, the writes done by whoever runs the
    /// flush step (benches and tests of the output path, with the IO stubbed).
    Stub,
}

/// One connection's hub-facing state.
pub struct Subscriber {
    /// Frames waiting for a write or in one; bounded by --max-backlog.
    queue: RefCell<OutboundQueue>,
    /// The core's ledger and flush list.
    core: Rc<CoreOutput>,
    /// In the core's flush list now (so it is added once).
    marked: Cell<bool>,
    /// The close handshake: deadline, close received/written, failed, shut down.
    close: Cell<CloseState>,
    /// Last time (coarse clock of the core) the client sent anything (data, ping, pong).
    last_inbound: Cell<Instant>,
    /// Last keepalive ping queued, if one was sent since the client last spoke.
    last_ping: Cell<Option<Instant>>,
    /// Last time a write started or the kernel took bytes: a connection holding output with
    /// no progress for --write-timeout is stalled (closed with 1008).
    last_write_progress: Cell<Instant>,
    /// The reader stopped reading because the fan-out budget is exhausted: the client is not
    /// silent, the server is not listening, so keepalive leaves it alone.
    reading_paused: Cell<bool>,
    /// Index of this subscriber in its room's list, for O(1) removal.
    room_slot: Cell<usize>,
    /// Where output goes: the socket, read by the core's reader and written by the output
    /// backend. Attached once the 101 response is flushed (the subscriber joins its room
    /// before that, so no message published after the handshake is missed); never set for
    /// detached subscribers.
    endpoint: OnceCell<Endpoint>,
    /// This connection's entry in the core's reader, which drops it once the socket is shut
    /// down (none for a subscriber that is not read, or not yet).
    reader_key: Cell<Option<ReaderKey>>,
    /// Holds this connection's place under --max-connections until the subscriber is dropped.
    _permit: Option<ConnectionPermit>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("charged_bytes", &self.charged_bytes())
            .field("closing", &self.is_closing())
            .field("has_socket", &self.socket().is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Subscriber {
    /// Whatever the connection still held is freed with it: give its handles back to the
    /// core's count. (A write in flight keeps its subscriber alive, so none is pending here.)
    fn drop(&mut self) {
        let held = self.queue.get_mut().held_frames();
        self.core.ledger.release_handles(held);
    }
}

impl Subscriber {
    /// A subscriber counted under `permit`, reporting to `core`, its socket attached later.
    pub fn new(
        max_backlog: usize,
        permit: Option<ConnectionPermit>,
        core: Rc<CoreOutput>,
        now: Instant,
    ) -> Self {
        Subscriber {
            queue: RefCell::new(OutboundQueue::new(max_backlog)),
            core,
            marked: Cell::new(false),
            close: Cell::new(CloseState::default()),
            last_inbound: Cell::new(now),
            last_ping: Cell::new(None),
            last_write_progress: Cell::new(now),
            reading_paused: Cell::new(false),
            room_slot: Cell::new(0),
            endpoint: OnceCell::new(),
            reader_key: Cell::new(None),
            _permit: permit,
        }
    }

    /// A subscriber without a socket (benches, allocation test): frames only queue up.
    pub fn detached(max_backlog: usize) -> Self {
        Subscriber::new(
            max_backlog,
            None,
            Rc::new(CoreOutput::standalone()),
            Instant::now(),
        )
    }

    /// Queues a frame (broadcast, pong or keepalive ping, all under the same budget). Returns
    /// true if this push made the connection a slow consumer (its unsent backlog is dropped and
    /// it is closed with 1008).
    pub fn offer(self: &Rc<Self>, frame: &LocalFrame) -> bool {
        if self.is_closing() {
            return false;
        }
        let mut queue = self.queue.borrow_mut();
        if queue.push(Rc::clone(frame)).is_ok() {
            drop(queue);
            self.core.ledger.charge_handles(1);
            self.request_flush();
            return false;
        }
        let dropped = queue.clear();
        drop(queue);
        self.core.ledger.release_handles(dropped);
        self.close(CloseCode::SlowConsumer, "slow consumer");
        true
    }

    /// Puts the connection on the core's flush list if it has unsent frames, a socket, no
    /// write in flight and is not listed yet.
    fn request_flush(self: &Rc<Self>) {
        if self.marked.get() || self.is_shut_down() || self.endpoint.get().is_none() {
            return;
        }
        let queue = self.queue.borrow();
        if queue.is_writing() || !queue.has_unsent() {
            return;
        }
        drop(queue);
        self.marked.set(true);
        self.core.flush.mark(Rc::clone(self));
    }

    /// Starts a server-initiated close: queues the close frame; the client has
    /// [`CLOSE_HANDSHAKE_DEADLINE`] to answer.
    pub fn close(self: &Rc<Self>, code: CloseCode, reason: &str) {
        self.close_with(encode_close(code as u16, reason), CLOSE_HANDSHAKE_DEADLINE);
    }

    /// Like [`Subscriber::close`] with a caller-chosen deadline (graceful shutdown's grace).
    pub fn close_within(self: &Rc<Self>, code: CloseCode, reason: &str, grace: Duration) {
        self.close_with(encode_close(code as u16, reason), grace);
    }

    /// Fails the connection (protocol error, or a publisher the server gives up on): close
    /// frame, then shutdown once it is written.
    pub fn fail(self: &Rc<Self>, code: CloseCode, reason: &str) {
        self.update_close(CloseState::fail);
        self.close(code, reason);
        if self.close.get().is_done() {
            self.shutdown_socket();
        }
    }

    /// The client sent a (validated) close frame. Echo it if we have not sent ours; if we had,
    /// the handshake is complete.
    pub fn close_received(self: &Rc<Self>, payload: &[u8]) {
        self.update_close(CloseState::receive);
        if !self.is_closing() {
            self.close_with(encode_close_echo(payload), CLOSE_HANDSHAKE_DEADLINE);
        } else if self.close.get().is_done() {
            self.shutdown_socket();
        }
    }

    /// Queues `frame` as the last frame and sets the deadline (first close wins).
    fn close_with(self: &Rc<Self>, frame: bytes::Bytes, grace: Duration) {
        if !self.update_close(|close| close.start(Instant::now() + grace)) {
            return;
        }
        self.queue.borrow_mut().push_final(Rc::new(frame));
        self.core.ledger.charge_handles(1);
        self.request_flush();
    }

    /// Called when the queue is drained after the close frame went out. Shuts the socket down
    /// when the handshake is complete or the connection failed.
    fn close_frame_written(&self) {
        self.update_close(CloseState::write);
        if self.close.get().is_done() {
            self.shutdown_socket();
        }
    }

    /// Applies `change` to the close state.
    fn update_close<R>(&self, change: impl FnOnce(&mut CloseState) -> R) -> R {
        let mut close = self.close.get();
        let result = change(&mut close);
        self.close.set(close);
        result
    }

    /// Shuts the socket down both ways (once): a write in flight fails, and the core's reader
    /// is told to drop the connection. Nothing is written or read afterwards.
    pub fn shutdown_socket(&self) {
        if !self.update_close(|close| close.shut(Instant::now())) {
            return;
        }
        if let Some(socket) = self.socket() {
            // An error here means the socket is already disconnected, which is the goal.
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Some(key) = self.reader_key.get() {
            self.core.ended.push(key);
        }
    }

    /// True once the socket was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.close.get().is_shut()
    }

    /// True once a close frame is queued (no more frames will be accepted).
    pub fn is_closing(&self) -> bool {
        self.close.get().is_closing()
    }

    /// Deadline by which a closing connection must be gone.
    pub fn close_deadline(&self) -> Option<Instant> {
        self.close.get().deadline()
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

    /// Taken off the flush list by the output backend: describes the next write as iovecs and
    /// returns the socket to write to (-1 for a stub), or None when there is nothing to write (shut down,
    /// drained meanwhile, or a write already in flight).
    pub fn start_write(&self, iovecs: &mut Vec<libc::iovec>, now: Instant) -> Option<RawFd> {
        self.marked.set(false);
        if self.is_shut_down() {
            return None;
        }
        let fd = match self.endpoint.get()? {
            Endpoint::Socket(socket) => socket.fd(),
            Endpoint::Stub => -1,
        };
        if self.queue.borrow_mut().start_write(iovecs, MAX_IOV) == 0 {
            return None;
        }
        self.last_write_progress.set(now);
        Some(fd)
    }

    /// The write started by [`Subscriber::start_write`] completed with `result`: releases what
    /// the kernel took, finishes the close once the close frame is out, lists the connection
    /// again if frames are waiting. A failed or zero-byte write ends the connection.
    pub fn finish_write(self: &Rc<Self>, result: io::Result<usize>, now: Instant) -> WriteDone {
        let written = match result {
            Ok(written) if written > 0 => written,
            _ => {
                self.queue.borrow_mut().finish_write(0);
                self.shutdown_socket();
                return WriteDone {
                    bytes: 0,
                    frames: 0,
                };
            }
        };
        let frames = self.queue.borrow_mut().finish_write(written);
        self.core.ledger.release_handles(frames);
        self.last_write_progress.set(now);
        if self.queue.borrow().is_empty() && self.is_closing() {
            self.close_frame_written();
        } else {
            self.request_flush();
        }
        WriteDone {
            bytes: written,
            frames,
        }
    }

    /// Frames held now, queued or in flight (tests and benches look at them).
    pub fn held_frames(&self) -> usize {
        self.queue.borrow().held_frames()
    }

    /// Bytes charged to the budget: queued and in-flight frames with their handles.
    pub fn charged_bytes(&self) -> usize {
        self.queue.borrow().charged_bytes()
    }

    /// True when the connection holds output and neither a write start nor the kernel has
    /// made progress on it since `since`.
    pub fn write_stalled_since(&self, since: Instant) -> bool {
        self.queue.borrow().held_frames() > 0 && self.last_write_progress.get() < since
    }

    /// Attaches the socket after the handshake and lists the connection if frames wait. If the
    /// connection was already told to shut down meanwhile, the socket is shut down at once.
    pub fn attach_socket(self: &Rc<Self>, socket: ConnSocket) {
        self.attach(Endpoint::Socket(socket));
    }

    /// Makes a socket-less subscriber flushable like a connection: the flush list takes it,
    /// and the flush step's caller does the writes (benches and tests, IO stubbed).
    pub fn attach_stub(self: &Rc<Self>) {
        self.attach(Endpoint::Stub);
    }

    fn attach(self: &Rc<Self>, endpoint: Endpoint) {
        let shut_before = self.is_shut_down();
        if self.endpoint.set(endpoint).is_ok() && shut_before {
            self.update_close(CloseState::unshut);
            self.shutdown_socket();
            return;
        }
        self.request_flush();
    }

    /// The socket, once attached.
    pub fn socket(&self) -> Option<&ConnSocket> {
        match self.endpoint.get()? {
            Endpoint::Socket(socket) => Some(socket),
            Endpoint::Stub => None,
        }
    }

    /// Records the connection's entry in the core's reader (told when the socket is shut down).
    pub(crate) fn set_reader_key(&self, key: ReaderKey) {
        self.reader_key.set(Some(key));
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

/// Test support: the frame handles `subscriber` holds, in send order.
pub fn held_handles(subscriber: &Subscriber) -> Vec<LocalFrame> {
    subscriber.queue.borrow().frames().cloned().collect()
}

/// Test and bench support: writes everything queued for a socket-less subscriber "by hand",
/// as the output backend would; returns the bytes written (in order).
pub fn drain_detached(subscriber: &Rc<Subscriber>) -> Vec<u8> {
    let mut iovecs = Vec::new();
    let mut out = Vec::new();
    let now = Instant::now();
    loop {
        let described = subscriber
            .queue
            .borrow_mut()
            .start_write(&mut iovecs, MAX_IOV);
        if described == 0 {
            return out;
        }
        for iov in &iovecs {
            // SAFETY: the iovecs point into frames the queue keeps until finish_write below.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len)
            });
        }
        let written = iovecs.iter().map(|iov| iov.iov_len).sum();
        subscriber.finish_write(Ok(written), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::{encode_message, MessageKind};

    fn local(frame: bytes::Bytes) -> LocalFrame {
        Rc::new(frame)
    }

    #[test]
    fn slow_consumer_is_closed_with_1008_and_its_backlog_dropped() {
        let subscriber = Rc::new(Subscriber::detached(
            100 + crate::budget::FRAME_HANDLE_BYTES,
        ));
        let frame = local(encode_message(MessageKind::Binary, &[0u8; 60]));
        assert!(!subscriber.offer(&frame));
        assert!(subscriber.offer(&frame), "second frame exceeds the budget");
        assert!(subscriber.is_closing());
        let written = drain_detached(&subscriber);
        assert_eq!(
            &written[..4],
            &[0x88, 15, 0x03, 0xF0],
            "only the close frame remains"
        );
        assert!(
            !subscriber.offer(&frame),
            "nothing is queued after the close"
        );
        assert_eq!(subscriber.held_frames(), 0);
    }

    #[test]
    fn client_close_is_echoed_once() {
        let subscriber = Rc::new(Subscriber::detached(1000));
        subscriber.close_received(&1000u16.to_be_bytes());
        subscriber.close_received(&1000u16.to_be_bytes());
        assert_eq!(drain_detached(&subscriber), [0x88, 2, 0x03, 0xE8]);
        assert!(subscriber.is_closing());
        assert!(
            subscriber.is_shut_down(),
            "echo written: handshake complete"
        );
    }

    #[test]
    fn held_frames_are_counted_in_the_core_ledger_until_written_or_dropped() {
        let core = Rc::new(CoreOutput::standalone());
        let handle = crate::budget::FRAME_HANDLE_BYTES;
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::clone(&core),
            Instant::now(),
        ));
        let frame = local(encode_message(MessageKind::Binary, &[1u8; 10]));
        for _ in 0..3 {
            subscriber.offer(&frame);
        }
        assert_eq!(core.ledger.handle_bytes(), 3 * handle);
        let mut iovecs = Vec::new();
        subscriber
            .queue
            .borrow_mut()
            .start_write(&mut iovecs, MAX_IOV);
        assert_eq!(
            core.ledger.handle_bytes(),
            3 * handle,
            "in flight still counts"
        );
        subscriber.finish_write(Ok(frame.len() + 1), Instant::now());
        assert_eq!(core.ledger.handle_bytes(), 2 * handle);
        drop(subscriber);
        assert_eq!(
            core.ledger.handle_bytes(),
            0,
            "dropping the connection releases the rest"
        );
    }

    #[test]
    fn a_write_that_makes_no_progress_is_stalled() {
        let start = Instant::now();
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::new(CoreOutput::standalone()),
            start,
        ));
        assert!(!subscriber.write_stalled_since(start + Duration::from_secs(1)));
        subscriber.offer(&local(encode_message(MessageKind::Binary, b"x")));
        assert!(subscriber.write_stalled_since(start + Duration::from_secs(1)));
        subscriber.finish_write(Ok(1), start + Duration::from_secs(2));
        assert!(!subscriber.write_stalled_since(start + Duration::from_secs(1)));
    }
}
