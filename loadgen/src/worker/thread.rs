//! One worker thread: its own tokio epoll runtime (current-thread), the connections assigned to
//! it, and its stats. Stats are thread-owned and recorded without locks; a work-stealing
//! runtime would need a lock or atomics per message.
//!
//! Two kinds of workers: receiving workers own the subscribers and read the publishers'
//! sockets; publisher workers connect the publishers and send on them (see `handover.rs`).

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{Notify, Semaphore};

use super::connection::run_connection;
use super::context::{ReadSide, Shared, WorkerContext};
use super::handover::read_publishers;
use crate::clock::{monotonic_ns, tokio_instant_at};
use crate::plan::ConnectionSpec;
use crate::stats::{IntervalStats, NodeTotals, RunTotals, WorkerStats};

/// Size of the read buffer a worker shares between all its connections: it is borrowed only
/// while one read is walked, so one per thread serves them all.
const READ_BUFFER: usize = 64 * 1024;

/// Handshakes one worker runs at once: an unlimited burst overflows the server's accept
/// backlog and turns into SYN retransmits (1 s, 3 s ...) that look like server latency.
const CONCURRENT_HANDSHAKES: usize = 128;

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
