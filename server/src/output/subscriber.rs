//! One WebSocket connection as the hub, the keepalive sweep and the write driver see it (the
//! write half; the read half is `input/connection.rs`): its outbound queue, its place in the
//! core's flush list, its keepalive and write-progress clocks, and its close handshake.
//!
//! Everything here is single-threaded (`Cell`/`RefCell` on one core), so delivering a frame is
//! a borrow, a non-atomic reference-count increment, a queue push, two counter updates and, for
//! a connection that had nothing to send, one push onto the flush list: no lock, atomic,
//! allocation, syscall or task wake-up. Every frame held (queued or in flight) is charged to
//! the connection's budget and counted in the core's [`CoreLedger`] until written or dropped.
//!
//! The flush list ([`FlushList`]) is intrusive: it holds the connections themselves, each at
//! most once (its `marked` flag), so it is kept here beside what it links.
//!
//! Closing (RFC 6455 7.1, state in `ws/close.rs`): whoever ends a connection queues exactly one
//! close frame (bypassing the budget) and sets a deadline. The socket is shut down
//! (`shutdown(Both)`, which also ends a stuck write) as soon as the close handshake is
//! complete, at once after a protocol error, or by the keepalive sweep when the deadline
//! passes; the shutdown lists the connection in [`EndedConnections`], from which the core's
//! reader drops it (leaving its room, releasing its slot).

use std::cell::{Cell, OnceCell, RefCell};
use std::io;
use std::net::Shutdown;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{OutboundQueue, MAX_IOV};
use super::replay::Replay;
use super::sealed::{SealBuffers, SealedOutput};
use super::wake::LocalWake;
use crate::backend::ConnSocket;
use crate::budget::{CoreLedger, LocalFrame};
use crate::clock::{deadline_after, Stamp};
use crate::state::ConnectionPermit;
use crate::tls::{Received, TlsError, TlsSession};
use crate::ws::{encode_close, encode_close_echo, CloseCode, CloseState};

/// Most frames a recovering connection's queue holds while it replays. A replayed frame is
/// shared with the room's kept copy, but each queued one has a core-local `Rc` box of its own
/// (~64 B) that `--max-backlog` does not see (it charges the length and the handle): queued a
/// chunk at a time, as writes drain it, 5,000 clients recovering 1,000 small messages each hold
/// 5,000 x 64 boxes, not 5 million.
const REPLAY_CHUNK: usize = 64;

/// How long a connection we close may take to answer our close frame (or, for a slow consumer,
/// to take it at all) before its socket is shut down.
pub const CLOSE_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

/// The core-wide parts a connection reports to: its handle count, its flush list, the
/// reader's list of connections whose socket was shut down, and the recovering connections
/// that sent all they were answered and must ask their room's home core again.
#[derive(Debug)]
pub struct CoreOutput {
    /// Frame handles held by this core's connections.
    pub ledger: CoreLedger,
    /// Connections with output waiting for the next flush step.
    pub flush: FlushList,
    /// Connections the core's reader is to drop (their socket was shut down).
    pub ended: EndedConnections,
    /// Recovering connections whose replay ran out before they caught up.
    pub catching_up: CatchingUp,
    /// TLS connections' sealing buffers.
    pub seal: SealBuffers,
}

impl CoreOutput {
    /// The output parts of a core counting into `ledger`.
    pub fn new(ledger: CoreLedger) -> Self {
        CoreOutput {
            ledger,
            flush: FlushList::default(),
            ended: EndedConnections::default(),
            catching_up: CatchingUp::default(),
            seal: SealBuffers::default(),
        }
    }
}

/// Recovering connections that queued their whole replay while they were still behind (the
/// room went on meanwhile): the hub asks the room's home core for what followed.
#[derive(Debug, Default)]
pub struct CatchingUp {
    /// Connections listed since the hub last looked.
    pending: RefCell<Vec<Rc<Subscriber>>>,
    /// Wakes the core's task that asks again.
    wake: LocalWake,
}

impl CatchingUp {
    /// Lists a connection.
    fn push(&self, subscriber: Rc<Subscriber>) {
        self.pending.borrow_mut().push(subscriber);
        self.wake.wake();
    }

    /// The connections listed since the last call.
    pub fn take(&self) -> Vec<Rc<Subscriber>> {
        std::mem::take(&mut *self.pending.borrow_mut())
    }

    /// Waits until a connection is listed (at once if one was since the last wait).
    pub async fn listed(&self) {
        self.wake.wait().await;
    }
}

/// Where a recovering client stands: it asked `?since=` or `?history=`, and live messages are
/// not queued for it until the replay has caught up with them (the replay covers them).
#[derive(Debug)]
struct Recovery {
    /// The room (asked again if the replay runs out before the client caught up).
    room: Arc<str>,
    /// The room's epoch, once the first answer told it.
    epoch: Option<Arc<str>>,
    /// The offset of the last message queued for the client.
    offset: u64,
    /// Kept messages still to queue.
    replay: Replay,
}

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
    fn mark(&self, subscriber: Rc<Subscriber>) {
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

/// A connection's key on its core: its entry in the core's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionKey(pub u32);

impl ConnectionKey {
    /// The index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Connections whose socket was shut down, for the core's reader to drop; and its wake-up.
#[derive(Debug, Default)]
pub struct EndedConnections {
    /// Keys listed since the reader last looked.
    keys: RefCell<Vec<ConnectionKey>>,
    /// Wakes the reader task.
    wake: LocalWake,
}

impl EndedConnections {
    /// Lists a connection (once per connection: its subscriber shuts the socket down once).
    fn push(&self, key: ConnectionKey) {
        self.keys.borrow_mut().push(key);
        self.wake.wake();
    }

    /// The keys listed since the last call.
    pub fn take(&self) -> Vec<ConnectionKey> {
        std::mem::take(&mut *self.keys.borrow_mut())
    }

    /// Waits until a connection is listed (at once if one was since the last wait).
    pub async fn listed(&self) {
        self.wake.wait().await;
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
    /// A client's socket, and its TLS output if it is a TLS connection.
    Socket(ConnSocket, Option<Box<RefCell<SealedOutput>>>),
    /// No socket: listed and flushed like a connection, the writes done by whoever runs the
    /// flush step (benches and tests of the output path, with the IO stubbed).
    #[cfg(any(test, feature = "testing"))]
    Stub,
}

/// One connection's hub-facing state.
pub struct Subscriber {
    /// Frames waiting for a write or in one; bounded by --max-backlog.
    queue: RefCell<OutboundQueue>,
    /// The core's ledger, flush list and ended list.
    core_output: Rc<CoreOutput>,
    /// In the core's flush list now (so it is added once).
    marked: Cell<bool>,
    /// The close handshake: deadline, close received/written, failed, shut down.
    close: Cell<CloseState>,
    /// Last time (coarse clock of the core) the client sent anything (data, ping, pong).
    last_inbound: Cell<Stamp>,
    /// Last keepalive ping queued, if one was sent since the client last spoke.
    last_ping: Cell<Option<Stamp>>,
    /// Last time a write started or the kernel took bytes: a connection holding output with
    /// no progress for --write-timeout is stalled (closed with 1008).
    last_write_progress: Cell<Stamp>,
    /// The reader stopped reading because the fan-out budget is exhausted: the client is not
    /// silent, the server is not listening, so keepalive leaves it alone.
    reading_paused: Cell<bool>,
    /// Index of this subscriber in its room's list, for O(1) removal (a u32: past 4 billion
    /// members the room finds it by searching).
    room_slot: Cell<u32>,
    /// permessage-deflate: the largest window a compressed frame sent to this client may use
    /// (its agreed `server_max_window_bits`); 0 without the extension.
    deflate_window: u8,
    /// Where output goes: the socket, read by the core's reader and written by the write
    /// driver. Attached once the 101 response is flushed (the subscriber joins its room
    /// before that, so no message published after the handshake is missed); never set for
    /// detached subscribers.
    endpoint: OnceCell<Endpoint>,
    /// This connection's key in the core's reader, which drops it once the socket is shut
    /// down (none for a subscriber that is not read, or not yet).
    key: Cell<Option<ConnectionKey>>,
    /// While the client catches up after `?since=`/`?history=` (None for every other client).
    recovery: RefCell<Option<Box<Recovery>>>,
    /// The client was told where it stands (it asked `?since=`/`?history=`): it counts the
    /// room's offsets from there on.
    counts_offsets: Cell<bool>,
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
        self.core_output.ledger.release_handles(held);
    }
}

impl Subscriber {
    /// A subscriber counted under `permit`, reporting to `core_output`, its socket attached
    /// later.
    pub fn new(
        max_backlog: usize,
        permit: Option<ConnectionPermit>,
        core_output: Rc<CoreOutput>,
        now: Instant,
    ) -> Self {
        Subscriber {
            queue: RefCell::new(OutboundQueue::new(max_backlog)),
            core_output,
            marked: Cell::new(false),
            close: Cell::new(CloseState::default()),
            last_inbound: Cell::new(Stamp::of(now)),
            last_ping: Cell::new(None),
            last_write_progress: Cell::new(Stamp::of(now)),
            reading_paused: Cell::new(false),
            room_slot: Cell::new(0),
            deflate_window: 0,
            endpoint: OnceCell::new(),
            key: Cell::new(None),
            recovery: RefCell::new(None),
            counts_offsets: Cell::new(false),
            _permit: permit,
        }
    }

    /// This subscriber negotiated permessage-deflate with a window of `window_bits` (before it
    /// joins a room: the room counts its deflate members by window).
    pub fn deflating(mut self, window_bits: u8) -> Self {
        self.deflate_window = window_bits;
        self
    }

    /// The window of the compressed frames this client takes: 0 without permessage-deflate.
    pub fn deflate_window(&self) -> u8 {
        self.deflate_window
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
            self.core_output.ledger.charge_handles(1);
            self.request_flush();
            return false;
        }
        let dropped = queue.clear();
        drop(queue);
        self.core_output.ledger.release_handles(dropped);
        self.close(CloseCode::SlowConsumer, "slow consumer");
        true
    }

    /// Queues a frame of the room's live stream, unless the client is still catching up (its
    /// replay covers the frame). Returns true if this push made it a slow consumer.
    pub fn deliver(self: &Rc<Self>, frame: &LocalFrame) -> bool {
        if self.recovery.borrow().is_some() {
            return false;
        }
        self.offer(frame)
    }

    /// The client asked to recover in `room`: live frames wait for the answer.
    pub fn begin_recovery(&self, room: Arc<str>) {
        *self.recovery.borrow_mut() = Some(Box::new(Recovery {
            room,
            epoch: None,
            offset: 0,
            replay: Replay::default(),
        }));
    }

    /// Whether the client counts the room's offsets (it asked `?since=` or `?history=` and
    /// was told where it stands).
    pub fn counts_offsets(&self) -> bool {
        self.counts_offsets.get()
    }

    /// Where a recovering client stands: (room, epoch, offset of its last queued message).
    pub fn recovery_position(&self) -> Option<(Arc<str>, Option<Arc<str>>, u64)> {
        let recovery = self.recovery.borrow();
        let recovery = recovery.as_ref()?;
        Some((
            Arc::clone(&recovery.room),
            recovery.epoch.clone(),
            recovery.offset,
        ))
    }

    /// The room's home core answered: queues `first` (the message that tells the client where
    /// it stands, on the first answer), then as much of `replay` (messages `offset + 1`...) as
    /// half its backlog takes. If that was all, the client has caught up: live frames are
    /// queued from now on (the answer came after every message it covers and before every
    /// later one). Otherwise the rest is queued as writes drain the queue.
    pub fn recovery_answered(
        self: &Rc<Self>,
        first: Option<LocalFrame>,
        epoch: Arc<str>,
        offset: u64,
        replay: Replay,
    ) {
        {
            let mut recovery = self.recovery.borrow_mut();
            let Some(recovery) = recovery.as_mut() else {
                return;
            };
            self.counts_offsets.set(true);
            recovery.epoch = Some(epoch);
            recovery.offset = offset;
            recovery.replay = replay;
        }
        if let Some(first) = first {
            if self.offer(&first) {
                return;
            }
        }
        self.queue_replay();
        let caught_up = self
            .recovery
            .borrow()
            .as_ref()
            .is_some_and(|recovery| recovery.replay.is_empty());
        if caught_up {
            *self.recovery.borrow_mut() = None;
        }
    }

    /// Queues replayed frames while the queue holds less than half the backlog and fewer
    /// than [`REPLAY_CHUNK`] frames (at least one into an empty queue).
    fn queue_replay(self: &Rc<Self>) {
        loop {
            let frame = {
                let mut recovery = self.recovery.borrow_mut();
                let Some(recovery) = recovery.as_mut() else {
                    return;
                };
                let Some(next) = recovery.replay.peek() else {
                    return;
                };
                let queue = self.queue.borrow();
                let room = queue.max_backlog() / 2;
                let full = queue.charged_bytes() + next.len() > room
                    || queue.held_frames() >= REPLAY_CHUNK;
                if full && !queue.is_empty() {
                    return;
                }
                drop(queue);
                recovery.offset += 1;
                recovery.replay.pop()
            };
            let Some(frame) = frame else { return };
            if self.is_closing() || self.offer(&Rc::new(frame)) {
                return;
            }
        }
    }

    /// After a write: a recovering client gets more of its replay; one whose replay ran out
    /// while it is still behind is listed to ask its room's home core again.
    fn continue_recovery(self: &Rc<Self>) {
        let had_replay = match self.recovery.borrow().as_ref() {
            Some(recovery) => !recovery.replay.is_empty(),
            None => return,
        };
        if !had_replay {
            return;
        }
        self.queue_replay();
        let ran_out = self
            .recovery
            .borrow()
            .as_ref()
            .is_some_and(|recovery| recovery.replay.is_empty());
        if ran_out && !self.is_closing() {
            self.core_output.catching_up.push(Rc::clone(self));
        }
    }

    /// Puts the connection on the core's flush list if it has unsent frames, a socket, no
    /// write in flight and is not listed yet.
    fn request_flush(self: &Rc<Self>) {
        if self.marked.get() || self.is_shut_down() || self.endpoint.get().is_none() {
            return;
        }
        if !self.has_write() {
            return;
        }
        self.marked.set(true);
        self.core_output.flush.mark(Rc::clone(self));
    }

    /// True when a write may start now: nothing is with the kernel and something waits.
    fn has_write(&self) -> bool {
        let queue = self.queue.borrow();
        match self.sealed() {
            Some(sealed) => sealed.borrow().has_write(&queue),
            None => !queue.is_writing() && queue.has_unsent(),
        }
    }

    /// The TLS output, on a TLS connection.
    fn sealed(&self) -> Option<&RefCell<SealedOutput>> {
        match self.endpoint.get()? {
            Endpoint::Socket(_, sealed) => sealed.as_deref(),
            #[cfg(any(test, feature = "testing"))]
            Endpoint::Stub => None,
        }
    }

    /// True on a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.sealed().is_some()
    }

    /// Takes bytes read from a TLS connection's socket: appends the plaintext they complete to
    /// `plain`, and lists the connection if the session has records to send (a key-update
    /// reply). None on a plain connection.
    pub fn receive_tls(
        self: &Rc<Self>,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Option<Result<Received, TlsError>> {
        let sealed = self.sealed()?;
        let (received, outgoing) = {
            let mut sealed = sealed.borrow_mut();
            (sealed.receive(data, plain), sealed.has_outgoing())
        };
        if outgoing {
            self.request_flush();
        }
        Some(received)
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
        let deadline = deadline_after(Instant::now(), grace);
        if !self.update_close(|close| close.start(deadline)) {
            return;
        }
        self.queue.borrow_mut().push_final(Rc::new(frame));
        self.core_output.ledger.charge_handles(1);
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
        if let Some(key) = self.key.get() {
            self.core_output.ended.push(key);
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
        self.last_inbound.set(Stamp::of(now));
        self.last_ping.set(None);
    }

    /// Last inbound traffic.
    pub fn last_inbound(&self) -> Instant {
        self.last_inbound.get().instant()
    }

    /// When the last keepalive ping went out, if the client has not spoken since.
    pub fn last_ping(&self) -> Option<Instant> {
        self.last_ping.get().map(Stamp::instant)
    }

    /// Records a keepalive ping queued at `now`.
    pub fn pinged(&self, now: Instant) {
        self.last_ping.set(Some(Stamp::of(now)));
    }

    /// Marks the reader as paused (or resumed) by the fan-out budget.
    pub fn set_reading_paused(&self, paused: bool) {
        self.reading_paused.set(paused);
    }

    /// True while the reader is paused by the fan-out budget.
    pub fn is_reading_paused(&self) -> bool {
        self.reading_paused.get()
    }

    /// Taken off the flush list by the write driver: describes the next write as iovecs and
    /// returns the socket to write to (-1 for a stub), or None when there is nothing to write
    /// (shut down, drained meanwhile, or a write already in flight).
    pub fn start_write(&self, iovecs: &mut Vec<libc::iovec>, now: Instant) -> Option<RawFd> {
        self.marked.set(false);
        if self.is_shut_down() {
            return None;
        }
        let (fd, sealed) = match self.endpoint.get()? {
            Endpoint::Socket(socket, sealed) => (socket.fd(), sealed.as_deref()),
            #[cfg(any(test, feature = "testing"))]
            Endpoint::Stub => (-1, None),
        };
        let mut queue = self.queue.borrow_mut();
        if let Some(sealed) = sealed {
            let started = sealed
                .borrow_mut()
                .start_write(&mut queue, &self.core_output.seal);
            let write = match started {
                Ok(Some(write)) => write,
                Ok(None) => return None,
                Err(err) => {
                    tracing::debug!(%err, "cannot seal a TLS connection's output; closing it");
                    drop(queue);
                    self.shutdown_socket();
                    return None;
                }
            };
            iovecs.clear();
            iovecs.push(libc::iovec {
                iov_base: write.ptr.cast_mut().cast(),
                iov_len: write.len,
            });
        } else if queue.start_write(iovecs, MAX_IOV) == 0 {
            return None;
        }
        self.last_write_progress.set(Stamp::of(now));
        Some(fd)
    }

    /// The write started by [`Subscriber::start_write`] completed with `result`: releases what
    /// the kernel took, finishes the close once the close frame is out, lists the connection
    /// again if frames are waiting. A failed or zero-byte write ends the connection.
    pub fn finish_write(self: &Rc<Self>, result: io::Result<usize>, now: Instant) -> WriteDone {
        let written = match result {
            Ok(written) if written > 0 => written,
            _ => {
                if let Some(sealed) = self.sealed() {
                    sealed.borrow_mut().finish_write(0, &self.core_output.seal);
                }
                self.queue.borrow_mut().finish_write(0);
                self.shutdown_socket();
                return WriteDone {
                    bytes: 0,
                    frames: 0,
                };
            }
        };
        // On a TLS connection the queue's frames are released once every record carrying them
        // is sent; until then the rest of the records is written next.
        let released = match self.sealed() {
            Some(sealed) => sealed
                .borrow_mut()
                .finish_write(written, &self.core_output.seal),
            None => Some(written),
        };
        let Some(released) = released else {
            self.last_write_progress.set(Stamp::of(now));
            self.request_flush();
            return WriteDone {
                bytes: written,
                frames: 0,
            };
        };
        let frames = self.queue.borrow_mut().finish_write(released);
        self.core_output.ledger.release_handles(frames);
        self.last_write_progress.set(Stamp::of(now));
        self.continue_recovery();
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
    #[cfg(any(test, feature = "testing"))]
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
        self.queue.borrow().held_frames() > 0 && self.last_write_progress.get() < Stamp::of(since)
    }

    /// Attaches the socket after the handshake and lists the connection if frames wait. If the
    /// connection was already told to shut down meanwhile, the socket is shut down at once.
    /// `tls`: the session of a TLS connection, which seals its output from now on.
    pub fn attach_socket(self: &Rc<Self>, socket: ConnSocket, tls: Option<TlsSession>) {
        let sealed = tls.map(|session| Box::new(RefCell::new(SealedOutput::new(session))));
        self.attach(Endpoint::Socket(socket, sealed));
    }

    /// Sets where output goes (once), and lists the connection if frames wait.
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
            Endpoint::Socket(socket, _) => Some(socket),
            #[cfg(any(test, feature = "testing"))]
            Endpoint::Stub => None,
        }
    }

    /// Records the connection's key on its core (the reader is told it when the socket is
    /// shut down).
    pub fn set_key(&self, key: ConnectionKey) {
        self.key.set(Some(key));
    }

    /// Position in the room's subscriber list.
    pub fn room_slot(&self) -> usize {
        self.room_slot.get() as usize
    }

    /// Records the position in the room's subscriber list.
    pub fn set_room_slot(&self, slot: usize) {
        self.room_slot.set(u32::try_from(slot).unwrap_or(u32::MAX));
    }
}

/// What benches, fuzz targets and tests need of a subscriber's insides (`crate::testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use crate::budget::FanoutBudget;

    /// Makes a socket-less subscriber flushable like a connection: the flush list takes it,
    /// and the flush step's caller does the writes (IO stubbed).
    pub fn attach_stub(subscriber: &Rc<Subscriber>) {
        subscriber.attach(Endpoint::Stub);
    }

    /// Output lists of their own, under an unbounded budget.
    pub fn standalone_core_output() -> CoreOutput {
        CoreOutput::new(CoreLedger::new(0, FanoutBudget::new(1, usize::MAX)))
    }

    /// A subscriber without a socket, reporting to output lists of its own: frames only queue
    /// up.
    pub fn detached(max_backlog: usize) -> Rc<Subscriber> {
        Rc::new(Subscriber::new(
            max_backlog,
            None,
            Rc::new(standalone_core_output()),
            Instant::now(),
        ))
    }

    /// The frame handles `subscriber` holds, in send order.
    pub fn held_handles(subscriber: &Subscriber) -> Vec<LocalFrame> {
        subscriber.queue.borrow().frames().cloned().collect()
    }

    /// Writes everything queued for a socket-less subscriber "by hand", as the write driver
    /// would; returns the bytes written (in order).
    pub fn drain(subscriber: &Rc<Subscriber>) -> Vec<u8> {
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
}

#[cfg(test)]
mod tests {
    use super::testing::{detached, drain, standalone_core_output};
    use super::*;
    use crate::ws::{encode_message, MessageKind};

    fn local(frame: bytes::Bytes) -> LocalFrame {
        Rc::new(frame)
    }

    #[test]
    fn slow_consumer_is_closed_with_1008_and_its_backlog_dropped() {
        let subscriber = detached(100 + crate::budget::FRAME_HANDLE_BYTES);
        let frame = local(encode_message(MessageKind::Binary, &[0u8; 60]));
        assert!(!subscriber.offer(&frame));
        assert!(subscriber.offer(&frame), "second frame exceeds the budget");
        assert!(subscriber.is_closing());
        let written = drain(&subscriber);
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
        let subscriber = detached(1000);
        subscriber.close_received(&1000u16.to_be_bytes());
        subscriber.close_received(&1000u16.to_be_bytes());
        assert_eq!(drain(&subscriber), [0x88, 2, 0x03, 0xE8]);
        assert!(subscriber.is_closing());
        assert!(
            subscriber.is_shut_down(),
            "echo written: handshake complete"
        );
    }

    #[test]
    fn held_frames_are_counted_in_the_core_ledger_until_written_or_dropped() {
        let core = Rc::new(standalone_core_output());
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
    fn a_grace_longer_than_an_instant_holds_still_closes() {
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::new(standalone_core_output()),
            Instant::now(),
        ));
        // `Instant::now() + grace` panicked here, taking the core and its 1001s down.
        subscriber.close_within(CloseCode::GoingAway, "bye", Duration::MAX);
        assert!(subscriber.is_closing());
        assert!(subscriber
            .close_deadline()
            .is_some_and(|d| d > Instant::now()));
    }

    #[test]
    fn a_write_that_makes_no_progress_is_stalled() {
        let start = Instant::now();
        let subscriber = Rc::new(Subscriber::new(
            1 << 20,
            None,
            Rc::new(standalone_core_output()),
            start,
        ));
        assert!(!subscriber.write_stalled_since(start + Duration::from_secs(1)));
        subscriber.offer(&local(encode_message(MessageKind::Binary, b"x")));
        assert!(subscriber.write_stalled_since(start + Duration::from_secs(1)));
        subscriber.finish_write(Ok(1), start + Duration::from_secs(2));
        assert!(!subscriber.write_stalled_since(start + Duration::from_secs(1)));
    }
}
