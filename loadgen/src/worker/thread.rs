//! One worker thread: its own tokio epoll runtime (current-thread), the connections assigned to
//! it, and its stats. Stats are thread-owned and recorded without locks; a work-stealing
//! runtime would need a lock or atomics per message.
//!
//! Two kinds of workers: receiving workers own the subscribers and read the publishers'
//! sockets; publisher workers connect the publishers and send on them. A publisher's socket is
//! handed, once connected, to a receiving worker (`ReadSide`), which registers it with its own
//! reactor and reads it from then on; the publisher thread keeps only the write half. So the
//! publishers' send schedule does not wait behind receive work (in the chat scenario every
//! publisher is also one of its room's receivers, 50 deliveries per message sent), and the
//! publisher thread's reactor is not even woken by arriving messages.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch, Notify, Semaphore};

use super::pacer::Pacer;
use super::publisher::publish;
use super::receive_loop::receive;
use super::receiver::Receiver;
use super::schedule::Schedule;
use crate::client::Writer;
use crate::client::{open_with_timeout, Target};
use crate::clock::{monotonic_ns, tokio_instant_at};
use crate::plan::Scenario;
use crate::stats::{url_of_connection, NodeTotals};
use crate::stats::{IntervalStats, RunTotals, WorkerStats};

/// Size of the read buffer a worker shares between all its connections (DESIGN 6).
const READ_BUFFER: usize = 64 * 1024;

/// Handshakes one worker runs at once: an unlimited burst overflows the server's accept
/// backlog and turns into SYN retransmits (1 s, 3 s ...) that look like server latency.
const CONCURRENT_HANDSHAKES: usize = 128;

/// The timing of the run, published once every connection attempt has finished.
#[derive(Debug, Clone)]
pub struct Window {
    /// Publishers' schedule origin: all connections up (monotonic ns).
    pub t0_ns: u64,
    /// Start of the measured window (t0 + warm-up).
    pub measure_start_ns: u64,
    /// End of the measured window; publishers send nothing due at or after it.
    pub measure_end_ns: u64,
}

impl Window {
    /// Whether a message intended at `ns` belongs to the measured window.
    pub fn measures(&self, ns: u64) -> bool {
        (self.measure_start_ns..self.measure_end_ns).contains(&ns)
    }

    /// The publishers' send schedule in this window.
    pub fn schedule(&self, scenario: &Scenario) -> Schedule {
        Schedule {
            t0_ns: self.t0_ns,
            end_ns: self.measure_end_ns,
            rate: scenario.rate,
            publishers: scenario.publishers,
        }
    }
}

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

/// What one connection is.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSpec {
    /// Global index: subscribers 0..N, then publishers N..N+P.
    pub index: u64,
    /// Room of this connection.
    pub room: u64,
    /// Publisher id when it sends.
    pub publisher: Option<u32>,
    /// Stops reading after the warm-up.
    pub stalled: bool,
}

impl ConnectionSpec {
    /// The role of connection `index` in `scenario` (see the module docs of `cli`).
    pub fn of(scenario: &Scenario, index: u64) -> ConnectionSpec {
        let rooms = scenario.rooms.max(1);
        if index < scenario.subscribers {
            ConnectionSpec {
                index,
                room: index % rooms,
                publisher: None,
                stalled: index < scenario.stalled_subscribers(),
            }
        } else {
            let publisher = index - scenario.subscribers;
            ConnectionSpec {
                index,
                room: publisher % rooms,
                publisher: Some(publisher as u32),
                stalled: false,
            }
        }
    }
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
    read_sides: Vec<UnboundedSender<ReadSide>>,
}

/// A connected publisher's socket on its way to the receiving worker that will read it.
pub struct ReadSide {
    /// The publisher's connection.
    spec: ConnectionSpec,
    /// The socket, deregistered from the publisher thread's reactor.
    stream: std::net::TcpStream,
    /// Bytes read past the handshake: the first frames.
    leftover: Vec<u8>,
    /// Where the receiving worker sends the connection's writer, registered with its reactor.
    writer: oneshot::Sender<Arc<Writer>>,
    /// Dropped when the read side ends: the connection is over.
    done: oneshot::Sender<()>,
}

/// What a worker does, and its end of the channels that pass publishers' sockets on.
pub enum WorkerKind {
    /// A receiving worker: owns subscribers and reads the publishers' sockets that arrive here.
    Receiving(UnboundedReceiver<ReadSide>),
    /// A publisher worker: connects publishers, hands publisher `p`'s socket to receiving
    /// worker `p % len` and sends on it.
    Publishing(Vec<UnboundedSender<ReadSide>>),
}

/// Runs worker `worker` of a set of `workers` that shares the connection indices `connections`
/// (subscribers and publishers have separate sets, and publishers' sockets are read by the
/// receiving workers, so publishers never wait behind receive load) to completion and returns
/// its totals.
pub fn run_worker(
    shared: Arc<Shared>,
    connections: Range<u64>,
    worker: usize,
    workers: usize,
    kind: WorkerKind,
) -> anyhow::Result<RunTotals> {
    let (read_sides, arriving) = match kind {
        WorkerKind::Receiving(arriving) => (Vec::new(), Some(arriving)),
        WorkerKind::Publishing(read_sides) => (read_sides, None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let context = Rc::new(WorkerContext {
        stats: RefCell::new(WorkerStats {
            interval: IntervalStats::new(),
            totals: RunTotals {
                // One histogram per class per receiving worker; none with a single URL.
                nodes: (arriving.is_some() && shared.targets.len() > 1).then(NodeTotals::new),
                ..RunTotals::new(shared.scenario.publishers as usize)
            },
        }),
        read_buffer: RefCell::new(vec![0; READ_BUFFER]),
        stopping: Cell::new(false),
        stop_signal: Notify::new(),
        read_sides,
        shared,
    });
    let local = tokio::task::LocalSet::new();
    let mine = (connections.start + worker as u64..connections.end).step_by(workers);
    local.block_on(&runtime, drive(context.clone(), mine, arriving));
    let totals = context.stats.borrow().totals.clone();
    Ok(totals)
}

/// Spawns this worker's connections and the once-a-second handoff, reads the publishers'
/// sockets that `arriving` brings, waits for the stop.
async fn drive(
    context: Rc<WorkerContext>,
    indices: impl Iterator<Item = u64>,
    arriving: Option<UnboundedReceiver<ReadSide>>,
) {
    let shared = context.shared.clone();
    let handshakes = Rc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    let mut tasks = Vec::new();
    for index in indices {
        let spec = ConnectionSpec::of(&shared.scenario, index);
        tasks.push(tokio::task::spawn_local(run_connection(
            context.clone(),
            spec,
            handshakes.clone(),
        )));
    }
    let handoff = tokio::task::spawn_local(hand_over_every_second(context.clone()));
    let relay = tokio::task::spawn_local(relay_stop(context.clone()));
    let all_done = async {
        if let Some(arriving) = arriving {
            read_publishers(context.clone(), arriving).await;
        }
        for task in tasks {
            // A panicking connection task would be a bug; the others still finish.
            let _ = task.await;
        }
    };
    let mut abort = shared.abort.clone();
    tokio::select! {
        _ = all_done => {}
        // Returning drops the LocalSet, and with it every pending attempt.
        _ = abort.wait_for(|aborted| *aborted) => {}
    }
    handoff.abort();
    relay.abort();
    let mut stats = context.stats.borrow_mut();
    let sink = shared.interval_sink.lock();
    if let Ok(mut sink) = sink {
        sink.drain_from(&mut stats.interval);
    }
}

/// Waits for the run's stop and passes it on to this worker's receivers.
async fn relay_stop(context: Rc<WorkerContext>) {
    let mut stop = context.shared.stop.clone();
    // An error means the run is gone: stop as well.
    let _ = stop.wait_for(|stop| *stop).await;
    context.stopping.set(true);
    context.stop_signal.notify_waiters();
}

/// Adds this worker's interval figures to the shared sink just after each second boundary.
async fn hand_over_every_second(context: Rc<WorkerContext>) {
    let started = context.shared.started_ns;
    let mut second = 1u64;
    loop {
        tokio::time::sleep_until(tokio_instant_at(started + second * 1_000_000_000)).await;
        second = (monotonic_ns().saturating_sub(started)) / 1_000_000_000 + 1;
        let mut stats = context.stats.borrow_mut();
        if let Ok(mut sink) = context.shared.interval_sink.lock() {
            sink.drain_from(&mut stats.interval);
        }
    }
}

/// One connection: wait for its ramp slot, connect, then receive (and publish) until stopped.
async fn run_connection(
    context: Rc<WorkerContext>,
    spec: ConnectionSpec,
    handshakes: Rc<Semaphore>,
) {
    let shared = context.shared.clone();
    let scenario = &shared.scenario;
    if scenario.connect_rate > 0.0 {
        let offset = Duration::from_secs_f64(spec.index as f64 / scenario.connect_rate);
        tokio::time::sleep_until(tokio_instant_at(shared.started_ns) + offset).await;
    }
    let Ok(_permit) = handshakes.acquire().await else {
        return;
    };
    let target = &shared.targets[url_of_connection(spec.index, shared.targets.len())];
    let path = target.path_for_room(spec.room as usize, scenario.rooms as usize);
    let source: Option<IpAddr> = (!scenario.src.is_empty())
        .then(|| scenario.src[(spec.index % scenario.src.len() as u64) as usize]);
    let key_seed = key_seed(spec.index);
    let begun = monotonic_ns();
    let timeout = Duration::from_secs_f64(scenario.connect_timeout_s);
    let outcome = open_with_timeout(target, &path, source, key_seed, timeout).await;
    drop(_permit);
    let (stream, leftover) = match outcome {
        Ok(opened) => opened,
        Err(failure) => {
            let mut stats = context.stats.borrow_mut();
            *stats
                .totals
                .connect_failures
                .entry(failure.key())
                .or_default() += 1;
            stats
                .totals
                .connect_failure_examples
                .entry(failure.key())
                .or_insert_with(|| failure.to_string());
            stats.interval.errors += 1;
            shared.attempts_done.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    {
        let mut stats = context.stats.borrow_mut();
        stats
            .totals
            .connect
            .saturating_record(monotonic_ns().saturating_sub(begun).max(1));
        stats.totals.connected += 1;
        stats.totals.stalled_connected += u64::from(spec.stalled);
    }
    shared.open_connections.fetch_add(1, Ordering::Relaxed);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if let Ok(sender) = shared.connected_tx.lock() {
        let _ = sender.send(spec.index);
    }
    shared.attempts_done.fetch_add(1, Ordering::Relaxed);

    match spec.publisher {
        None => {
            let (read_half, write_half) = stream.into_split();
            let writer = Arc::new(Writer::new(write_half));
            let receiver = Receiver::new(spec, scenario, leftover);
            receive(context.clone(), receiver, read_half, writer).await;
        }
        Some(id) => match hand_over(&context, spec, stream, leftover).await {
            Some((writer, done)) => {
                let publisher = tokio::task::spawn_local(publish(context.clone(), id, writer));
                // The receiving worker drops `done` once the connection is over.
                let _ = done.await;
                publisher.abort();
            }
            None => {
                // The receiving worker is gone (the run was aborted): nobody can read it.
                let mut stats = context.stats.borrow_mut();
                stats.totals.disconnected += 1;
                stats.interval.errors += 1;
            }
        },
    }
    shared.open_connections.fetch_sub(1, Ordering::Relaxed);
}

/// Hands a connected publisher's socket to its receiving worker; returns the connection's
/// writer and the signal that the connection is over, or `None` if that worker is gone.
async fn hand_over(
    context: &WorkerContext,
    spec: ConnectionSpec,
    stream: TcpStream,
    leftover: Vec<u8>,
) -> Option<(Arc<Writer>, oneshot::Receiver<()>)> {
    let publisher = spec.publisher? as usize;
    let target = context
        .read_sides
        .get(publisher % context.read_sides.len().max(1))?;
    // Off this thread's reactor: only the receiving worker's polls the socket, so arriving
    // messages wake that thread alone; writes from here go straight to the socket and wait on
    // that reactor only when the socket's buffer is full.
    let stream = stream.into_std().ok()?;
    let (writer_tx, writer_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let side = ReadSide {
        spec,
        stream,
        leftover,
        writer: writer_tx,
        done: done_tx,
    };
    target.send(side).ok()?;
    let writer = writer_rx.await.ok()?;
    Some((writer, done_rx))
}

/// Reads every publisher socket that arrives until the publisher workers are done.
async fn read_publishers(context: Rc<WorkerContext>, mut arriving: UnboundedReceiver<ReadSide>) {
    let mut tasks = Vec::new();
    while let Some(side) = arriving.recv().await {
        tasks.push(tokio::task::spawn_local(read_publisher(
            context.clone(),
            side,
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Registers a publisher's socket with this worker's reactor, sends its writer back and
/// receives on it until the run stops or the server goes away.
async fn read_publisher(context: Rc<WorkerContext>, side: ReadSide) {
    let ReadSide {
        spec,
        stream,
        leftover,
        writer,
        done,
    } = side;
    // A failed registration drops `writer`: the publisher sees it and counts the connection.
    let Ok(stream) = TcpStream::from_std(stream) else {
        return;
    };
    let (read_half, write_half) = stream.into_split();
    let shared_writer = Arc::new(Writer::new(write_half));
    if writer.send(shared_writer.clone()).is_err() {
        return;
    }
    let receiver = Receiver::new(spec, &context.shared.scenario, leftover);
    receive(context.clone(), receiver, read_half, shared_writer).await;
    drop(done);
}

/// A distinct 16-byte Sec-WebSocket-Key seed per connection (the key need not be secret).
fn key_seed(index: u64) -> [u8; 16] {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&index.to_le_bytes());
    seed[8..].copy_from_slice(&monotonic_ns().to_le_bytes());
    seed
}
