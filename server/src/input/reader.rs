//! The core's WebSocket reader: one task per core reads every upgraded connection of the core,
//! from its admission at the upgrade to its end.
//!
//! Every connection's socket is in one epoll set of the core (level-triggered, `data` = the
//! connection's key in a slab), and that set is registered once with tokio's reactor, on both
//! backends. The reader task takes the ready sockets from it and reads each one once into the
//! core's scratch buffer (`connection.rs` decodes, publishes and keeps an incomplete frame's
//! tail); what is left in a socket is reported again by the next `epoll_wait`, so a flooding
//! client gets one read per turn like every other. (Why one task per core and not one per
//! connection: docs/ARCHITECTURE.md, "Reads".)
//!
//! A connection that must not be read leaves the epoll set (level-triggered, it would be
//! reported again and again): one paused by the fan-out budget until it may publish again
//! (looked at every `BUDGET_POLL`, closed with 1013 after `--publish-timeout`), one done
//! reading (the client's close arrived, or it failed) for good. Whoever shuts a connection's
//! socket down (the write side, keepalive, a protocol error, graceful shutdown) lists it in the
//! core's `EndedConnections`; the reader then drops it, which leaves the room.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::connection::{Connection, ReadContext, Step, UpgradeTicket};
use crate::backend::{cvt, UpgradedIo};
use crate::budget::BUDGET_POLL;
use crate::clock::deadline_after;
use crate::fanout::Since;
use crate::metrics::CoreMetrics;
use crate::output::{ConnectionKey, Subscriber};
use crate::state::ConnectionPermit;
use crate::tls::TlsSession;
use crate::ws::{CloseCode, DeflateAgreement};

/// Most readiness events taken per `epoll_wait` (one turn of the reader).
const EVENTS_PER_TURN: usize = 256;
/// Size of the core's read scratch buffer: the most one read takes.
const READ_SCRATCH: usize = 64 << 10;

/// Whether the reader reads a connection now.
#[derive(Debug)]
enum Reading {
    /// In the epoll set.
    Active,
    /// Out of it until the fan-out budget has room, or `deadline` (then closed with 1013).
    Paused {
        /// --publish-timeout after the pause began.
        deadline: Instant,
    },
    /// Out of it for good; waits for its socket to be shut down.
    Done,
}

/// A connection and where its reading stands.
struct Entry {
    /// Its reading state.
    connection: Connection,
    /// Active, paused or done.
    reading: Reading,
}

/// One core's reader: the epoll set and every WebSocket connection's reading state.
pub struct Reader {
    /// What reading uses of the core.
    cx: ReadContext,
    /// The epoll set of every connection being read, registered with tokio's reactor.
    poller: AsyncFd<OwnedFd>,
    /// Every upgraded connection of the core until its socket is shut down.
    entries: RefCell<Slab<Entry>>,
    /// Keys of the paused entries.
    paused: RefCell<Vec<ConnectionKey>>,
    /// Buffer for `epoll_wait`.
    events: RefCell<Vec<libc::epoll_event>>,
    /// Every read of a connection lands here first.
    scratch: RefCell<Box<[u8]>>,
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
    /// An empty reader using `cx`; must be created inside the core's runtime (it registers
    /// with tokio's reactor).
    pub fn new(cx: ReadContext) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before it is used as an fd.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as isize)?;
        // SAFETY: `fd` is a new epoll instance nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: the AsyncFd owns `epoll`, which stays open and the same until it is dropped.
        let poller = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Reader {
            cx,
            poller,
            entries: RefCell::new(Slab::new()),
            paused: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::with_capacity(EVENTS_PER_TURN)),
            scratch: RefCell::new(vec![0; READ_SCRATCH].into_boxed_slice()),
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
        });
        self.start_reading(key, entry);
    }

    /// (Re)starts reading an entry: puts its socket into the epoll set, then decodes what the
    /// connection already holds. A socket the epoll set refuses is shut down, which ends it.
    fn start_reading(&self, key: ConnectionKey, entry: &mut Entry) {
        if let Err(err) = self.watch(key, entry) {
            tracing::warn!(%err, "cannot watch a WebSocket connection; closing it");
            entry.connection.subscriber().shutdown_socket();
            return;
        }
        let step = entry.connection.decode_held(&self.cx);
        self.apply(key, entry, step);
    }

    /// Puts the entry's socket into the epoll set.
    fn watch(&self, key: ConnectionKey, entry: &mut Entry) -> io::Result<()> {
        let Some(socket) = entry.connection.subscriber().socket() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: u64::from(key.0),
        };
        // SAFETY: both fds are open; the event is read by the call only.
        cvt(unsafe {
            libc::epoll_ctl(
                self.poller.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                socket.fd(),
                &mut event,
            )
        } as isize)?;
        entry.reading = Reading::Active;
        Ok(())
    }

    /// Takes the entry's socket out of the epoll set (if it is in it).
    fn unwatch(&self, entry: &mut Entry) {
        if !matches!(entry.reading, Reading::Active) {
            return;
        }
        entry.reading = Reading::Done;
        if let Some(socket) = entry.connection.subscriber().socket() {
            // SAFETY: both fds are open. Failing means the fd is not in the set: the goal.
            unsafe {
                libc::epoll_ctl(
                    self.poller.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    socket.fd(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// Acts on what reading the entry led to.
    fn apply(&self, key: ConnectionKey, entry: &mut Entry, step: Step) {
        match step {
            Step::Wait => {}
            Step::Pause => {
                self.unwatch(entry);
                CoreMetrics::add(&self.cx.metrics.publish_pauses, 1);
                entry.connection.subscriber().set_reading_paused(true);
                entry.reading = Reading::Paused {
                    deadline: deadline_after(Instant::now(), self.cx.publish_timeout),
                };
                self.paused.borrow_mut().push(key);
            }
            Step::Done => self.unwatch(entry),
        }
    }

    /// Reads every connection `epoll_wait` reports ready, once each: returns how many there
    /// were (0: none is ready now).
    fn read_ready(&self) -> io::Result<usize> {
        let mut events = self.events.borrow_mut();
        events.clear();
        let ready = loop {
            // SAFETY: the buffer has room for EVENTS_PER_TURN events; the kernel initialises
            // the number it returns, which becomes the length.
            let ready = cvt(unsafe {
                libc::epoll_wait(
                    self.poller.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_PER_TURN as i32,
                    0,
                )
            } as isize);
            match ready {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                ready => break ready?,
            }
        };
        // SAFETY: see above.
        unsafe { events.set_len(ready) };
        let mut entries = self.entries.borrow_mut();
        let mut scratch = self.scratch.borrow_mut();
        for event in events.iter() {
            let key = ConnectionKey(event.u64 as u32);
            let Some(entry) = entries.get_mut(key.index()) else {
                continue;
            };
            // An entry paused or done by an earlier event of this turn is not read.
            if !matches!(entry.reading, Reading::Active) {
                continue;
            }
            let step = entry.connection.read_ready(&self.cx, &mut scratch);
            self.apply(key, entry, step);
        }
        Ok(ready)
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

    /// Drops the connections whose socket was shut down.
    fn drop_ended(&self) {
        for key in self.cx.core_output.ended.take() {
            let entry = self.entries.borrow_mut().try_remove(key.index());
            if let Some(mut entry) = entry {
                self.unwatch(&mut entry);
                self.finish(entry.connection);
            }
        }
    }

    /// True while a connection is paused (the reader looks at it every BUDGET_POLL).
    fn has_paused(&self) -> bool {
        !self.paused.borrow().is_empty()
    }
}

/// The core's reader task: reads ready connections, resumes paused ones, drops ended ones.
pub async fn read_loop(reader: Rc<Reader>) {
    let ended = &reader.cx.core_output.ended;
    loop {
        reader.drop_ended();
        reader.look_at_paused();
        let ready = tokio::select! {
            ready = reader.poller.readable() => ready,
            () = ended.listed() => continue,
            () = tokio::time::sleep(BUDGET_POLL), if reader.has_paused() => continue,
        };
        let mut ready = match ready {
            Ok(ready) => ready,
            Err(err) => {
                tracing::error!(%err, "the core's reader cannot wait for readiness");
                return;
            }
        };
        match reader.read_ready() {
            // Nothing left ready: wait for the next edge of the epoll set's readiness.
            Ok(0) => ready.clear_ready(),
            // Let the flush step and the other tasks of the core run between turns.
            Ok(_) => {
                drop(ready);
                tokio::task::yield_now().await;
            }
            Err(err) => {
                tracing::error!(%err, "the core's reader cannot take readiness events");
                return;
            }
        }
    }
}
