//! What a worker's tasks share: the run-wide state every thread reads (`Shared`), the worker's
//! own (`WorkerContext`, one per thread, never locked), and the message that carries a
//! publisher's socket to the receiving worker that reads it (`ReadSide`).

use std::cell::{Cell, RefCell};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch, Notify};

use super::pacer::Pacer;
use super::window::Window;
use crate::client::{Stream, Target, Upgraded, Writer};
use crate::plan::{ConnectionSpec, Scenario};
use crate::stats::{IntervalStats, WorkerStats};

/// State shared by the main thread and every worker.
pub struct Shared {
    /// The scenario being run.
    pub scenario: Scenario,
    /// Resolved URLs.
    pub targets: Vec<Target>,
    /// Identifies this process's stamps.
    pub run_id: u32,
    /// Connections currently open (live line).
    pub open_connections: AtomicU64,
    /// Connection attempts finished, successfully or not.
    pub attempts_done: AtomicU64,
    /// Run timing, `None` until all attempts have finished.
    pub window: watch::Receiver<Option<Arc<Window>>>,
    /// Becomes true when connections must close (after the drain).
    pub stop: watch::Receiver<bool>,
    /// Becomes true when the run is abandoned (no connection succeeded): workers drop every
    /// task at once instead of waiting for attempts and closing handshakes.
    pub abort: watch::Receiver<bool>,
    /// Connections that completed the handshake so far (the early-abort check).
    pub connected: AtomicU64,
    /// Where workers add their per-second figures (one lock per worker per second).
    pub interval_sink: Mutex<IntervalStats>,
    /// Successful connections report (connection index) here, so the main thread can count
    /// the receivers of each room for `expected`.
    pub connected_tx: Mutex<mpsc::Sender<u64>>,
    /// Monotonic ns the run started at (second boundaries of the interval handoff).
    pub started_ns: u64,
    /// Wakes the publishers at their due times.
    pub pacer: Pacer,
}

/// Per-worker context handed to every connection task.
pub struct WorkerContext {
    /// Run-wide shared state.
    pub shared: Arc<Shared>,
    /// This worker's stats.
    pub stats: RefCell<WorkerStats>,
    /// Read buffer shared by all connections of this worker; borrowed only synchronously.
    pub read_buffer: RefCell<Vec<u8>>,
    /// The run's stop, relayed to this thread: set once `Shared::stop` turns true.
    pub stopping: Cell<bool>,
    /// Wakes this worker's receivers when `stopping` is set. Receivers wait on this
    /// thread-local signal, not on `Shared::stop`: a receiver re-polls its stop future at every
    /// socket wakeup, and polling the run-wide watch took its mutex, shared by every thread,
    /// once per wakeup, i.e. once per message at low rates.
    pub stop_signal: Notify,
    /// A publisher worker's way to the receiving workers (empty on a receiving worker). Held
    /// here so that each receiving worker's queue closes once every publisher worker is done.
    pub read_sides: Vec<UnboundedSender<ReadSide>>,
}

/// A connected publisher's socket on its way to the receiving worker that will read it.
pub struct ReadSide {
    /// The publisher's connection.
    pub spec: ConnectionSpec,
    /// The socket (and TLS session), deregistered from the publisher thread's reactor.
    pub stream: Stream<std::net::TcpStream>,
    /// How its upgrade went (the bytes read past the handshake are the first frames).
    pub upgraded: Upgraded,
    /// Where the receiving worker sends the connection's writer, registered with its reactor.
    pub writer: oneshot::Sender<Arc<Writer>>,
    /// Dropped when the read side ends: the connection is over.
    pub done: oneshot::Sender<()>,
}
