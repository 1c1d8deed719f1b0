//! The core's WebSocket reader: one task per core reads every upgraded connection of the core,
//! from its admission at the upgrade to its end.
//!
//! How it learns what to read depends on the backend. On io_uring each connection being read
//! has a multishot receive on the reader's ring, into buffers the core provides
//! (`recv_ring.rs`): the bytes arrive with the completion. On epoll every connection's socket
//! is in the core's epoll set (`epoll_set.rs`) and each ready one is read once per turn into
//! the core's scratch buffer. Either way `connection.rs` decodes, publishes and keeps an
//! incomplete frame's tail. (Why one task per core and not one per connection, and why
//! receives on the ring: docs/ARCHITECTURE.md, "Reads".)
//!
//! A connection that must not be read stops being read (its receive cancelled, or out of the
//! epoll set): one paused by the fan-out budget until it may publish again (looked at every
//! `BUDGET_POLL`, closed with 1013 after `--publish-timeout`), one done reading (the client's
//! close arrived, or it failed) for good. Whoever shuts a connection's socket down (the write
//! side, keepalive, a protocol error, graceful shutdown) lists it in the core's
//! `EndedConnections`; the reader then drops it, which leaves the room (on io_uring once its
//! receive's last completion is in: until then the kernel may still name its key).

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

use slab::Slab;
use tokio::io::unix::AsyncFdReadyGuard;
use tokio::sync::Notify;

use super::connection::{Connection, ReadContext, Step, UpgradeTicket};
use super::epoll_set::EpollSet;
use super::recv_ring::{Received, RecvRing};
use crate::backend::{Backend, UpgradedIo};
use crate::budget::BUDGET_POLL;
use crate::clock::deadline_after;
use crate::fanout::Since;
use crate::metrics::CoreMetrics;
use crate::output::{ConnectionKey, Subscriber};
use crate::state::ConnectionPermit;
use crate::tls::TlsSession;
use crate::ws::{CloseCode, DeflateAgreement};

/// Size of the core's read scratch buffer (epoll): the most one read takes.
const READ_SCRATCH: usize = 64 << 10;

/// Whether the reader reads a connection now.
#[derive(Debug)]
enum Reading {
    /// Being read.
    Active,
    /// Not read until the fan-out budget has room, or `deadline` (then closed with 1013).
    Paused {
        /// --publish-timeout after the pause began.
        deadline: Instant,
    },
    /// Not read any more; waits for its socket to be shut down.
    Done,
    /// Its socket is shut down, its receive still in the kernel (io_uring): dropped at the
    /// receive's last completion.
    Ending,
}

/// A connection and where its reading stands.
struct Entry {
    /// Its reading state.
    connection: Connection,
    /// Active, paused, done or ending.
    reading: Reading,
    /// A receive of it is in the kernel (io_uring): its key may not be reused until the last
    /// completion, and no second one may be armed.
    armed: bool,
}

/// How the reader learns what to read.
#[derive(Debug)]
enum Source {
    /// io_uring: a multishot receive per connection on the reader's ring.
    Ring(Box<RecvRing>),
    /// epoll: the core's epoll set, and the scratch buffer every read lands in.
    Epoll(EpollSet, RefCell<Box<[u8]>>),
}

/// One core's reader: the source of reads and every WebSocket connection's reading state.
pub struct Reader {
    /// What reading uses of the core.
    cx: ReadContext,
    /// Receives or readiness.
    source: Source,
    /// Every upgraded connection of the core until its socket is shut down.
    entries: RefCell<Slab<Entry>>,
    /// Keys of the paused entries.
    paused: RefCell<Vec<ConnectionKey>>,
    /// Keys reported ready by one epoll turn, kept allocated between turns.
    ready: RefCell<Vec<ConnectionKey>>,
    /// Signalled whenever a connection of this core ends (the shutdown drain waits on it).
    ended: Notify,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("connections", &self.entries.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// An empty reader using `cx`, reading the way `backend` does; must be created inside the
    /// core's runtime (it registers with tokio's reactor).
    pub fn new(cx: ReadContext, backend: Backend) -> io::Result<Self> {
        let source = match backend {
            Backend::Uring => Source::Ring(Box::new(RecvRing::new()?)),
            Backend::Epoll => Source::Epoll(
                EpollSet::new()?,
                RefCell::new(vec![0; READ_SCRATCH].into_boxed_slice()),
            ),
        };
        Ok(Reader {
            cx,
            source,
            entries: RefCell::new(Slab::new()),
            paused: RefCell::new(Vec::new()),
            ready: RefCell::new(Vec::new()),
            ended: Notify::new(),
        })
    }

    /// Admits an upgrade to `room`, counted under `permit`: the new subscriber joins the room
    /// now, before the 101 goes out, and waits for its socket ([`Reader::start`]). With
    /// `since`, it asks where it stands first (its first message tells it).
    pub fn admit(
        &self,
        room: &str,
        permit: Option<ConnectionPermit>,
        since: Option<Since>,
        deflate: Option<DeflateAgreement>,
    ) -> UpgradeTicket {
        let cx = &self.cx;
        let subscriber = Subscriber::new(
            cx.max_backlog,
            permit,
            Rc::clone(&cx.core_output),
            cx.clock.now(),
        );
        let subscriber = Rc::new(match deflate {
            Some(agreement) => subscriber.deflating(agreement.window_bits()),
            None => subscriber,
        });
        let room = cx.hub.join(room, Rc::clone(&subscriber));
        if let Some(since) = since {
            cx.hub.recover(&room, &subscriber, since);
        }
        UpgradeTicket {
            room,
            subscriber,
            deflate: deflate.is_some(),
        }
    }

    /// An admitted upgrade whose 101 never completed: leaves the room (which drops the
    /// permit too).
    pub fn cancel(&self, ticket: UpgradeTicket) {
        self.cx.hub.leave(&ticket.room, &ticket.subscriber);
    }

    /// Starts the WebSocket phase of an admitted upgrade: attaches the socket and starts
    /// reading it. `early` holds bytes hyper read past the request; `tls` is the session of a
    /// TLS connection (`io.buffered` is then plaintext already).
    pub fn start(
        &self,
        ticket: UpgradeTicket,
        io: UpgradedIo,
        early: &[u8],
        tls: Option<TlsSession>,
    ) {
        ticket.subscriber.attach_socket(io.socket, tls);
        CoreMetrics::add(&self.cx.metrics.connections, 1);
        let mut held = Vec::new();
        if !early.is_empty() || !io.buffered.is_empty() {
            held.reserve_exact(early.len() + io.buffered.len());
            held.extend_from_slice(early);
            held.extend_from_slice(&io.buffered);
        }
        let connection = Connection::new(ticket, held, &self.cx);
        if connection.subscriber().is_shut_down() {
            // Told to close during the handshake (graceful shutdown): nothing to read.
            self.finish(connection);
            return;
        }
        self.add(connection);
    }

    /// Waits until a connection of this core ends (at once if one ended since the last wait).
    pub async fn connection_ended(&self) {
        self.ended.notified().await;
    }

    /// A connection has ended: it leaves its room and releases its slot.
    fn finish(&self, connection: Connection) {
        connection.finish(&self.cx);
        self.ended.notify_one();
    }

    /// Starts reading `connection` (its socket attached, not shut down).
    fn add(&self, connection: Connection) {
        let mut entries = self.entries.borrow_mut();
        let slot = entries.vacant_entry();
        let Ok(key) = u32::try_from(slot.key()).map(ConnectionKey) else {
            // Beyond 4 billion connections on one core: not reachable under the fd limit.
            connection.subscriber().shutdown_socket();
            drop(entries);
            self.finish(connection);
            return;
        };
        connection.subscriber().set_key(key);
        let entry = slot.insert(Entry {
            connection,
            reading: Reading::Done,
            armed: false,
        });
        self.start_reading(key, entry);
        drop(entries);
        if let Source::Ring(ring) = &self.source {
            // The reader task may sleep until this connection's first bytes: submit its
            // receive now (one `io_uring_enter`, as epoll's `epoll_ctl`).
            if let Err(err) = ring.submit() {
                tracing::warn!(%err, "cannot submit a receive; closing the connection");
                if let Some(entry) = self.entries.borrow_mut().get_mut(key.index()) {
                    entry.reading = Reading::Done;
                    entry.connection.subscriber().shutdown_socket();
                }
            }
        }
    }

    /// (Re)starts reading an entry: decodes what the connection already holds, then, if that
    /// left it waiting for more, arms its receive or puts its socket into the epoll set. (In
    /// this order: a receive armed before a pause would take what the socket holds.) A socket
    /// that cannot be watched is shut down, which ends it.
    fn start_reading(&self, key: ConnectionKey, entry: &mut Entry) {
        entry.reading = Reading::Active;
        let step = entry.connection.decode_held(&self.cx);
        if step != Step::Wait {
            self.apply(key, entry, step);
            return;
        }
        if let Err(err) = self.watch(key, entry) {
            tracing::warn!(%err, "cannot read a WebSocket connection; closing it");
            entry.reading = Reading::Done;
            entry.connection.subscriber().shutdown_socket();
        }
    }

    /// Has the kernel report the entry's bytes: arms its receive (unless one is still in the
    /// kernel: a cancel not completed yet; its last completion arms the next) or puts its
    /// socket into the epoll set.
    fn watch(&self, key: ConnectionKey, entry: &mut Entry) -> io::Result<()> {
        let Some(socket) = entry.connection.subscriber().socket() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        match &self.source {
            Source::Ring(_) if entry.armed => Ok(()),
            Source::Ring(ring) => {
                ring.arm(socket.fd(), key)?;
                entry.armed = true;
                Ok(())
            }
            Source::Epoll(set, _) => set.watch(socket.fd(), key),
        }
    }

    /// Stops reading an active entry: cancels its receive or takes its socket out of the
    /// epoll set.
    fn unwatch(&self, key: ConnectionKey, entry: &mut Entry) {
        if !matches!(entry.reading, Reading::Active) {
            return;
        }
        entry.reading = Reading::Done;
        match &self.source {
            Source::Ring(ring) if entry.armed => {
                if let Err(err) = ring.cancel(key) {
                    // The ring is broken: the connection cannot be read any more.
                    tracing::warn!(%err, "cannot cancel a receive; closing the connection");
                    entry.connection.subscriber().shutdown_socket();
                }
            }
            Source::Ring(_) => {}
            Source::Epoll(set, _) => {
                if let Some(socket) = entry.connection.subscriber().socket() {
                    set.unwatch(socket.fd());
                }
            }
        }
    }

    /// Acts on what reading the entry led to.
    fn apply(&self, key: ConnectionKey, entry: &mut Entry, step: Step) {
        match step {
            Step::Wait => {}
            Step::Pause => {
                self.unwatch(key, entry);
                CoreMetrics::add(&self.cx.metrics.publish_pauses, 1);
                entry.connection.subscriber().set_reading_paused(true);
                entry.reading = Reading::Paused {
                    deadline: deadline_after(Instant::now(), self.cx.publish_timeout),
                };
                self.paused.borrow_mut().push(key);
            }
            Step::Done => self.unwatch(key, entry),
        }
    }

    /// One turn of reading: returns how many connections were read (0: none had anything).
    fn read_turn(&self) -> io::Result<usize> {
        match &self.source {
            Source::Ring(ring) => self.take_received(ring),
            Source::Epoll(set, scratch) => self.read_ready(set, &mut scratch.borrow_mut()),
        }
    }

    /// Reads every connection the epoll set reports ready, once each.
    fn read_ready(&self, set: &EpollSet, scratch: &mut [u8]) -> io::Result<usize> {
        let mut ready = self.ready.borrow_mut();
        ready.clear();
        set.ready(&mut ready)?;
        let mut entries = self.entries.borrow_mut();
        for &key in ready.iter() {
            let Some(entry) = entries.get_mut(key.index()) else {
                continue;
            };
            // An entry paused or done by an earlier event of this turn is not read.
            if !matches!(entry.reading, Reading::Active) {
                continue;
            }
            let step = entry.connection.read_ready(&self.cx, scratch);
            self.apply(key, entry, step);
        }
        Ok(ready.len())
    }

    /// Handles every completion of the connections' receives: decodes the bytes of the active
    /// ones, keeps those of the paused ones (a receive being cancelled may still deliver what
    /// the socket held), ends the connections at end of stream or on an error, arms again
    /// the receives the kernel ended while their connection is still read, and drops the
    /// connections whose last completion was awaited.
    fn take_received(&self, ring: &RecvRing) -> io::Result<usize> {
        let received = ring.reap();
        let count = received.len();
        let mut finished = Vec::new();
        {
            let mut entries = self.entries.borrow_mut();
            for &completion in &received {
                let Some(entry) = entries.get_mut(completion.key.index()) else {
                    if let Some(buffer) = completion.buffer {
                        ring.discard(buffer);
                    }
                    continue;
                };
                self.take_completion(ring, entry, completion);
                if entry.armed {
                    continue;
                }
                if matches!(entry.reading, Reading::Ending) {
                    finished.push(entries.remove(completion.key.index()).connection);
                } else if matches!(entry.reading, Reading::Active) {
                    // The kernel ended the receive (buffers ran out, or it stops multishot
                    // receives now and then): arm it again.
                    if let Err(err) = self.watch(completion.key, entry) {
                        tracing::warn!(%err, "cannot rearm a receive; closing the connection");
                        entry.reading = Reading::Done;
                        entry.connection.subscriber().shutdown_socket();
                    }
                }
            }
        }
        ring.done(received);
        ring.submit()?;
        for connection in finished {
            self.finish(connection);
        }
        Ok(count)
    }

    /// Handles one completion of `entry`'s receive.
    fn take_completion(&self, ring: &RecvRing, entry: &mut Entry, completion: Received) {
        let cx = &self.cx;
        if !completion.more {
            entry.armed = false;
        }
        let key = completion.key;
        let Ok(len) = usize::try_from(completion.result) else {
            match -completion.result {
                libc::ENOBUFS => CoreMetrics::add(&cx.metrics.recv_buffers_exhausted, 1),
                libc::ECANCELED => {}
                _ => self.client_gone(entry),
            }
            return;
        };
        let Some(buffer) = completion.buffer else {
            // End of stream.
            self.client_gone(entry);
            return;
        };
        if len == 0 {
            ring.discard(buffer);
            self.client_gone(entry);
            return;
        }
        match entry.reading {
            Reading::Active => {
                entry.connection.subscriber().touch(cx.clock.now());
                let step = ring.with_bytes(buffer, len, |data| {
                    entry.connection.received(cx, data, true)
                });
                self.apply(key, entry, step);
            }
            Reading::Paused { .. } => {
                let step = ring.with_bytes(buffer, len, |data| {
                    entry.connection.received(cx, data, false)
                });
                if step == Step::Done {
                    entry.reading = Reading::Done;
                }
            }
            // Bytes after the client's close, or after the connection failed: not read.
            Reading::Done | Reading::Ending => ring.discard(buffer),
        }
    }

    /// The client's stream ended or failed: its socket is shut down and reading it is done.
    fn client_gone(&self, entry: &mut Entry) {
        if matches!(entry.reading, Reading::Active | Reading::Paused { .. }) {
            entry.connection.subscriber().shutdown_socket();
            entry.reading = Reading::Done;
        }
    }

    /// Resumes the paused connections whose publisher may go on, and closes with 1013 those
    /// that waited too long, or that are heavy while every publisher has to wait (the heavy
    /// one is what blocks the other rooms).
    fn look_at_paused(&self) {
        let paused = std::mem::take(&mut *self.paused.borrow_mut());
        if paused.is_empty() {
            return;
        }
        let budget = &self.cx.budget;
        let now = Instant::now();
        let mut entries = self.entries.borrow_mut();
        for key in paused {
            let Some(entry) = entries.get_mut(key.index()) else {
                continue;
            };
            let Reading::Paused { deadline } = entry.reading else {
                continue;
            };
            let subscriber = entry.connection.subscriber();
            if subscriber.is_shut_down() {
                entry.reading = Reading::Done;
                continue;
            }
            let heavy = entry.connection.is_heavy_publisher();
            let blocking_others = heavy && budget.must_pause(false);
            let resume = !blocking_others && !budget.must_pause(heavy);
            if !resume && !blocking_others && now < deadline {
                self.paused.borrow_mut().push(key);
                continue;
            }
            subscriber.set_reading_paused(false);
            // Waiting was the server's doing, not the client's silence.
            subscriber.touch(self.cx.clock.now());
            entry.reading = Reading::Done;
            if !resume {
                CoreMetrics::add(&self.cx.metrics.overload_closes, 1);
                subscriber.fail(
                    CloseCode::TryAgainLater,
                    "server overloaded, try again later",
                );
                continue;
            }
            self.start_reading(key, entry);
        }
    }

    /// Drops the connections whose socket was shut down (on io_uring, one whose receive is
    /// still in the kernel at its last completion).
    fn drop_ended(&self) {
        for key in self.cx.core_output.ended.take() {
            let mut entries = self.entries.borrow_mut();
            let Some(entry) = entries.get_mut(key.index()) else {
                continue;
            };
            self.unwatch(key, entry);
            if entry.armed {
                entry.reading = Reading::Ending;
                continue;
            }
            let entry = entries.remove(key.index());
            drop(entries);
            self.finish(entry.connection);
        }
    }

    /// True while a connection is paused (the reader looks at it every BUDGET_POLL).
    fn has_paused(&self) -> bool {
        !self.paused.borrow().is_empty()
    }
}

/// The core's reader task: reads what the kernel reports, resumes paused connections, drops
/// ended ones.
pub async fn read_loop(reader: Rc<Reader>) {
    let ended = &reader.cx.core_output.ended;
    loop {
        reader.drop_ended();
        reader.look_at_paused();
        if let Source::Ring(ring) = &reader.source {
            // Arms of resumed connections and cancels of ended ones.
            if let Err(err) = ring.submit() {
                tracing::error!(%err, "the core's reader cannot submit to its ring");
                return;
            }
        }
        let woke = tokio::select! {
            woke = reader.source.woken() => woke,
            () = ended.listed() => continue,
            () = tokio::time::sleep(BUDGET_POLL), if reader.has_paused() => continue,
        };
        let outcome = woke.and_then(|woke| Ok((woke, reader.read_turn()?)));
        match outcome {
            // Nothing left ready: wait for the next edge of the epoll set's readiness.
            Ok((Woken::Epoll(mut ready), 0)) => ready.clear_ready(),
            Ok((_, 0)) => {}
            // Let the flush step and the other tasks of the core run between turns.
            Ok(_) => tokio::task::yield_now().await,
            Err(err) => {
                tracing::error!(%err, "the core's reader cannot take what the kernel reports");
                return;
            }
        }
    }
}

/// What woke the reader.
enum Woken<'a> {
    /// The ring's completions were signalled.
    Ring,
    /// The epoll set is readable (the guard's readiness is cleared once a turn finds nothing).
    Epoll(AsyncFdReadyGuard<'a, OwnedFd>),
}

impl Source {
    /// Waits until the kernel has something for the reader.
    async fn woken(&self) -> io::Result<Woken<'_>> {
        match self {
            Source::Ring(ring) => ring.signalled().await.map(|()| Woken::Ring),
            Source::Epoll(set, _) => set.readable().await.map(Woken::Epoll),
        }
    }
}
