//! The core's WebSocket reader: one task per core reads every upgraded connection of the core.
//!
//! Why one task, not one per connection: a reader task per connection cost every idle
//! connection its task (~640 bytes) and its registration in tokio's reactor (~256 bytes), more
//! than the rest of its state together. Here every connection's socket is in one epoll set of
//! the core (level-triggered, `data` = the connection's key in a slab), and that set is
//! registered once with tokio's reactor, on both backends. The reader task takes the ready
//! sockets from it and reads each one once into the core's scratch buffer (`conn.rs` decodes,
//! publishes and keeps an incomplete frame's tail); what is left in a socket is reported again
//! by the next `epoll_wait`, so a flooding client gets one read per turn like every other.
//! Reads are the rare side of a broadcast server (publishers only), so the extra `epoll_wait`
//! per turn costs little against the writes.
//!
//! A connection that must not be read leaves the epoll set (level-triggered, it would be
//! reported again and again): one paused by the fan-out budget until it may publish again
//! (looked at every `BUDGET_POLL`, closed with 1013 after `--publish-timeout`), one done
//! reading (the client's close arrived, or it failed) for good. Whoever shuts a connection's
//! socket down (the output side, keepalive, a protocol error, graceful shutdown) lists it in
//! [`EndedConnections`]; the reader then drops it, which leaves the room.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::backend::socket::cvt;
use crate::budget::BUDGET_POLL;
use crate::core::CoreContext;
use crate::input::connection::{Connection, Step};
use crate::metrics::CoreMetrics;
use crate::output::wake::LocalWake;
use crate::ws::encode::CloseCode;

/// Most readiness events taken per `epoll_wait` (one turn of the reader).
const EVENTS_PER_TURN: usize = 256;

/// A connection's entry in its core's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderKey(u32);

impl ReaderKey {
    /// The index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Connections whose socket was shut down, for the reader to drop; and the reader's wake-up.
#[derive(Debug, Default)]
pub struct EndedConnections {
    /// Keys listed since the reader last looked.
    keys: RefCell<Vec<ReaderKey>>,
    /// Wakes the reader task.
    wake: LocalWake,
}

impl EndedConnections {
    /// Lists a connection (once per connection: its subscriber shuts the socket down once).
    pub fn push(&self, key: ReaderKey) {
        self.keys.borrow_mut().push(key);
        self.wake.wake();
    }
}

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
pub struct CoreReader {
    /// The epoll set of every connection being read, registered with tokio's reactor.
    poller: AsyncFd<OwnedFd>,
    /// Every upgraded connection of the core until its socket is shut down.
    entries: RefCell<Slab<Entry>>,
    /// Keys of the paused entries.
    paused: RefCell<Vec<ReaderKey>>,
    /// Buffer for `epoll_wait`.
    events: RefCell<Vec<libc::epoll_event>>,
}

impl std::fmt::Debug for CoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreReader")
            .field("connections", &self.entries.borrow().len())
            .finish_non_exhaustive()
    }
}

impl CoreReader {
    /// An empty reader; must be created inside the core's runtime (it registers with tokio's
    /// reactor).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before it is used as an fd.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as isize)?;
        // SAFETY: `fd` is a new epoll instance nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: the AsyncFd owns `epoll`, which stays open and the same until it is dropped.
        let poller = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(CoreReader {
            poller,
            entries: RefCell::new(Slab::new()),
            paused: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::with_capacity(EVENTS_PER_TURN)),
        })
    }

    /// Starts reading `connection` (its socket attached, not shut down).
    pub fn add(&self, core: &CoreContext, connection: Connection) {
        let mut entries = self.entries.borrow_mut();
        let slot = entries.vacant_entry();
        let Ok(key) = u32::try_from(slot.key()).map(ReaderKey) else {
            // Beyond 4 billion connections on one core: not reachable under the fd limit.
            connection.subscriber().shutdown_socket();
            drop(entries);
            connection.finish(core);
            return;
        };
        connection.subscriber().set_reader_key(key);
        let entry = slot.insert(Entry {
            connection,
            reading: Reading::Done,
        });
        self.start_reading(core, key, entry);
    }

    /// (Re)starts reading an entry: puts its socket into the epoll set, then decodes what the
    /// connection already holds. A socket the epoll set refuses is shut down, which ends it.
    fn start_reading(&self, core: &CoreContext, key: ReaderKey, entry: &mut Entry) {
        if let Err(err) = self.watch(key, entry) {
            tracing::warn!(%err, "cannot watch a WebSocket connection; closing it");
            entry.connection.subscriber().shutdown_socket();
            return;
        }
        let step = entry.connection.decode_held(core);
        self.apply(core, key, entry, step);
    }

    /// Puts the entry's socket into the epoll set.
    fn watch(&self, key: ReaderKey, entry: &mut Entry) -> io::Result<()> {
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
    fn apply(&self, core: &CoreContext, key: ReaderKey, entry: &mut Entry, step: Step) {
        match step {
            Step::Wait => {}
            Step::Pause => {
                self.unwatch(entry);
                CoreMetrics::add(&core.hub.metrics().publish_pauses, 1);
                entry.connection.subscriber().set_reading_paused(true);
                entry.reading = Reading::Paused {
                    deadline: Instant::now() + core.state.config.publish_timeout,
                };
                self.paused.borrow_mut().push(key);
            }
            Step::Done => self.unwatch(entry),
        }
    }

    /// Reads every connection `epoll_wait` reports ready, once each: returns how many there
    /// were (0: none is ready now).
    fn read_ready(&self, core: &CoreContext) -> io::Result<usize> {
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
        for event in events.iter() {
            let key = ReaderKey(event.u64 as u32);
            let Some(entry) = entries.get_mut(key.index()) else {
                continue;
            };
            // An entry paused or done by an earlier event of this turn is not read.
            if !matches!(entry.reading, Reading::Active) {
                continue;
            }
            let step = entry.connection.read_ready(core);
            self.apply(core, key, entry, step);
        }
        Ok(ready)
    }

    /// Resumes the paused connections whose publisher may go on, and closes with 1013 those
    /// that waited too long, or that are heavy while every publisher has to wait (the heavy
    /// one is what blocks the other rooms).
    fn look_at_paused(&self, core: &CoreContext) {
        let paused = std::mem::take(&mut *self.paused.borrow_mut());
        if paused.is_empty() {
            return;
        }
        let memory = core.hub.memory();
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
            let blocking_others = heavy && memory.must_pause(false);
            let resume = !blocking_others && !memory.must_pause(heavy);
            if !resume && !blocking_others && now < deadline {
                self.paused.borrow_mut().push(key);
                continue;
            }
            subscriber.set_reading_paused(false);
            // Waiting was the server's doing, not the client's silence.
            subscriber.touch(core.hub.now());
            entry.reading = Reading::Done;
            if !resume {
                CoreMetrics::add(&core.hub.metrics().overload_closes, 1);
                subscriber.fail(
                    CloseCode::TryAgainLater,
                    "server overloaded, try again later",
                );
                continue;
            }
            self.start_reading(core, key, entry);
        }
    }

    /// Drops the connections whose socket was shut down.
    fn drop_ended(&self, core: &CoreContext) {
        let ended = std::mem::take(&mut *core.hub.output().ended.keys.borrow_mut());
        for key in ended {
            let entry = self.entries.borrow_mut().try_remove(key.index());
            if let Some(mut entry) = entry {
                self.unwatch(&mut entry);
                entry.connection.finish(core);
            }
        }
    }

    /// True while a connection is paused (the reader looks at it every BUDGET_POLL).
    fn has_paused(&self) -> bool {
        !self.paused.borrow().is_empty()
    }
}

/// The core's reader task: reads ready connections, resumes paused ones, drops ended ones.
pub async fn read_loop(core: std::rc::Rc<CoreContext>) {
    let reader = &core.reader;
    let ended = &core.hub.output().ended;
    loop {
        reader.drop_ended(&core);
        reader.look_at_paused(&core);
        let ready = tokio::select! {
            ready = reader.poller.readable() => ready,
            () = ended.wake.wait() => continue,
            () = tokio::time::sleep(BUDGET_POLL), if reader.has_paused() => continue,
        };
        let mut ready = match ready {
            Ok(ready) => ready,
            Err(err) => {
                tracing::error!(%err, "the core's reader cannot wait for readiness");
                return;
            }
        };
        match reader.read_ready(&core) {
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
