//! `loadgen run` on the main thread: start the workers, walk the phases second by second
//! (connect, warm-up, measure, drain), stop the workers and collect their totals, assemble the
//! report and write its files.

use std::ops::Range;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::watch;

use super::live;
use super::per_second::PerSecond;
use super::phases::Phases;
use super::results::{count_connected, results_of};
use crate::clock::monotonic_ns;
use crate::plan::Plan;
use crate::report::csv::TimelineRow;
use crate::report::hlog::HlogBuffer;
use crate::report::{self, Report};
use crate::stats::{IntervalStats, RunTotals};
use crate::worker::{favour_this_thread, run_worker, Pacer, Shared, Window, WorkerKind};

/// After a second boundary, how long the main thread waits for the workers' handoff.
const HANDOFF_GRACE_NS: u64 = 150_000_000;

/// What a finished run produced.
pub struct RunOutput {
    /// The report (also written to --out).
    pub report: Report,
    /// Per-second rows.
    pub timeline: Vec<TimelineRow>,
}

/// The main thread's ends of the channels to the workers.
struct Controls {
    /// Publishes the window once every connection attempt has finished.
    window: watch::Sender<Option<Arc<Window>>>,
    /// Tells the workers to close their connections (after the drain).
    stop: watch::Sender<bool>,
    /// Tells the workers to drop everything at once (no connection succeeded).
    abort: watch::Sender<bool>,
    /// The index of every connection that completed its handshake.
    connected: mpsc::Receiver<u64>,
}

/// A worker thread, returning its totals.
type WorkerThread = JoinHandle<anyhow::Result<RunTotals>>;

/// Runs the scenario; `quiet` suppresses the live line.
pub fn run(plan: Plan, quiet: bool) -> anyhow::Result<RunOutput> {
    let started_ns = monotonic_ns();
    let environment = report::environment();
    let (shared, controls) = share(&plan, started_ns);
    let mut phases = Phases::start(&plan.scenario);
    let workers = start_workers(&shared)?;
    let mut per_second = PerSecond::new(started_ns)?;
    walk_phases(&shared, &controls, &mut phases, &mut per_second, quiet)?;
    let totals = stop_workers(&shared, &controls, &mut phases, workers)?;
    let final_interval = take_interval(&shared)?;
    per_second.record_close(monotonic_ns(), &shared, &final_interval)?;
    let connected = count_connected(&plan.scenario, &controls.connected);
    let results = results_of(
        &plan,
        &totals,
        &connected,
        &phases,
        per_second.busiest_window_second,
    )?;
    let report = Report {
        schema: report::SCHEMA.to_string(),
        scenario: plan.scenario.clone(),
        environment,
        results,
    };
    let output = RunOutput {
        report,
        timeline: per_second.timeline,
    };
    if let Some(dir) = &plan.out {
        write_outputs(dir, &output, &per_second.hlog)?;
    }
    Ok(output)
}

/// The state the main thread shares with the workers (this run's stamp id among it), and its
/// ends of the channels to them.
fn share(plan: &Plan, started_ns: u64) -> (Arc<Shared>, Controls) {
    let (window_tx, window_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    let (connected_tx, connected_rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        scenario: plan.scenario.clone(),
        targets: plan.targets.clone(),
        run_id: (started_ns as u32) ^ std::process::id().rotate_left(16),
        open_connections: Default::default(),
        attempts_done: Default::default(),
        window: window_rx,
        stop: stop_rx,
        abort: abort_rx,
        connected: Default::default(),
        interval_sink: Mutex::new(IntervalStats::new()),
        connected_tx: Mutex::new(connected_tx),
        started_ns,
        pacer: Pacer::new(plan.scenario.publishers as usize),
    });
    let controls = Controls {
        window: window_tx,
        stop: stop_tx,
        abort: abort_tx,
        connected: connected_rx,
    };
    (shared, controls)
}

/// Starts the receiving workers (the subscribers, and the read side of every publisher's
/// socket) and the publisher workers.
fn start_workers(shared: &Arc<Shared>) -> anyhow::Result<Vec<WorkerThread>> {
    let scenario = &shared.scenario;
    let total = scenario.connections();
    // Receiving workers own the subscribers and read the publishers' sockets; they run whenever
    // anything is received, subscribers or not (chat: every publisher is a receiver).
    let (read_txs, read_rxs): (Vec<_>, Vec<_>) =
        (0..scenario.threads).map(|_| unbounded_channel()).unzip();
    let mut workers = Vec::new();
    if total > 0 {
        for (worker, arriving) in read_rxs.into_iter().enumerate() {
            workers.push(spawn_worker(
                shared,
                0..scenario.subscribers,
                (worker, scenario.threads),
                WorkerKind::Receiving(arriving),
            )?);
        }
    }
    if scenario.publishers > 0 {
        for worker in 0..scenario.publisher_threads {
            workers.push(spawn_worker(
                shared,
                scenario.subscribers..total,
                (worker, scenario.publisher_threads),
                WorkerKind::Publishing(read_txs.clone()),
            )?);
        }
    }
    // Only the publisher workers may hold senders: a receiving worker ends once they are done.
    drop(read_txs);
    Ok(workers)
}

/// Starts worker `worker` of `workers` for the connection indices `connections`.
fn spawn_worker(
    shared: &Arc<Shared>,
    connections: Range<u64>,
    (worker, workers): (usize, usize),
    kind: WorkerKind,
) -> anyhow::Result<WorkerThread> {
    let shared = shared.clone();
    let role = match kind {
        WorkerKind::Receiving(_) => "sub",
        WorkerKind::Publishing(_) => "pub",
    };
    std::thread::Builder::new()
        .name(format!("loadgen-{role}-{worker}"))
        .spawn(move || {
            if matches!(kind, WorkerKind::Publishing(_)) {
                favour_this_thread();
            }
            run_worker(shared, connections, worker, workers, kind)
        })
        .context("spawning worker threads")
}

/// The main loop: once a second (just after the workers' handoff), record the second and print
/// the live line, until the drain is over or the run is abandoned.
fn walk_phases(
    shared: &Arc<Shared>,
    controls: &Controls,
    phases: &mut Phases,
    per_second: &mut PerSecond,
    quiet: bool,
) -> anyhow::Result<()> {
    let total = shared.scenario.connections();
    loop {
        let tick_ns =
            shared.started_ns + per_second.next_second() * 1_000_000_000 + HANDOFF_GRACE_NS;
        phases.wait_until(shared, &controls.window, tick_ns)?;
        let now = monotonic_ns();
        let interval = take_interval(shared)?;
        let row = per_second.record_tick(
            now,
            phases.name_at(now - HANDOFF_GRACE_NS),
            phases.window.as_deref(),
            shared,
            &interval,
        )?;
        if !quiet {
            eprintln!("{}", live::line(row, total));
        }
        if phases.aborted {
            let _ = controls.abort.send(true);
            return Ok(());
        }
        if phases.drained(now) {
            return Ok(());
        }
    }
}

/// Tells the workers and the pacer to stop, waits for them and adds up the workers' totals.
fn stop_workers(
    shared: &Shared,
    controls: &Controls,
    phases: &mut Phases,
    workers: Vec<WorkerThread>,
) -> anyhow::Result<RunTotals> {
    let _ = controls.stop.send(true);
    shared.pacer.stop();
    phases.join_pacer()?;
    let mut totals = RunTotals::new(shared.scenario.publishers as usize);
    for worker in workers {
        let worker_totals = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        totals.merge(&worker_totals);
    }
    Ok(totals)
}

/// Takes the figures the workers have handed over since the last call.
fn take_interval(shared: &Shared) -> anyhow::Result<IntervalStats> {
    Ok(std::mem::take(
        &mut *shared
            .interval_sink
            .lock()
            .map_err(|_| anyhow::anyhow!("stats lock poisoned"))?,
    ))
}

/// Writes report.json, latency.hlog, latency.hgrm and timeline.csv into `dir`.
fn write_outputs(dir: &Path, output: &RunOutput, hlog: &HlogBuffer) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    output.report.write(dir)?;
    hlog.save(&dir.join("latency.hlog"))?;
    let latency = output.report.histogram("latency")?;
    std::fs::write(dir.join("latency.hgrm"), report::hgrm::render(&latency))
        .context("writing latency.hgrm")?;
    std::fs::write(
        dir.join("timeline.csv"),
        report::csv::render(&output.timeline),
    )
    .context("writing timeline.csv")?;
    Ok(())
}
