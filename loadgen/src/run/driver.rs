//! `loadgen run`: start the workers, walk the phases (connect, warm-up, measure, drain, close),
//! print the live line, sample CPU and memory, and assemble the report.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::watch;

use super::probe::{own_cpu_seconds, Phase, ServerProbe};
use crate::clock::{monotonic_ns, monotonic_to_system};
use crate::plan::Plan;
use crate::plan::{url_of_connection, ConnectionSpec};
use crate::report::csv::TimelineRow;
use crate::report::hlog::HlogBuffer;
use crate::report::{self, encode_histogram, HistogramSummary, Report, Results};
use crate::stats::{expected_by_class, ClassTotals};
use crate::stats::{IntervalStats, RunTotals};
use crate::worker::Pacer;
use crate::worker::{run_worker, Shared, Window, WorkerKind};

/// After a second boundary, how long the main thread waits for the workers' handoff.
const HANDOFF_GRACE_NS: u64 = 150_000_000;

/// Past the connect timeout, how long to wait for the first attempts' outcomes before
/// concluding that no connection will succeed.
const ABORT_GRACE_NS: u64 = 500_000_000;

/// What a finished run produced.
pub struct RunOutput {
    /// The report (also written to --out).
    pub report: Report,
    /// Per-second rows.
    pub timeline: Vec<TimelineRow>,
}

/// Timing and CPU bookkeeping of the main loop.
struct Phases {
    /// The run's window, once set.
    window: Option<Arc<Window>>,
    /// Own CPU seconds at the window's start and end.
    cpu_at_window: (Option<f64>, Option<f64>),
    /// Server readings (every --server-pid).
    server: ServerProbe,
    /// The thread waking the publishers, started with the window.
    pacer_thread: Option<std::thread::JoinHandle<()>>,
    /// The run was abandoned because no connection succeeded.
    aborted: bool,
}

impl Phases {
    /// Name of the phase at monotonic `ns`.
    fn name_at(&self, ns: u64, drain_ns: u64) -> &'static str {
        match &self.window {
            None => "connecting",
            Some(w) if ns < w.measure_start_ns => "warmup",
            Some(w) if ns < w.measure_end_ns => "measure",
            Some(w) if ns < w.measure_end_ns + drain_ns => "drain",
            Some(_) => "closing",
        }
    }
}

/// Runs the scenario; `quiet` suppresses the live line.
pub fn run(plan: Plan, quiet: bool) -> anyhow::Result<RunOutput> {
    let scenario = plan.scenario.clone();
    let total = scenario.connections();
    let started_ns = monotonic_ns();
    let environment = report::environment();
    let (window_tx, window_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    let (connected_tx, connected_rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
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
        pacer: Pacer::new(scenario.publishers as usize),
    });
    let mut phases = Phases {
        window: None,
        cpu_at_window: (None, None),
        server: ServerProbe::new(&scenario.watched_pids()),
        pacer_thread: None,
        aborted: false,
    };
    phases.server.sample(Phase::BeforeConnect);

    // Receiving workers own the subscribers and read the publishers' sockets; they run whenever
    // anything is received, subscribers or not (chat: every publisher is a receiver).
    let (read_txs, read_rxs): (Vec<_>, Vec<_>) =
        (0..scenario.threads).map(|_| unbounded_channel()).unzip();
    let mut workers = Vec::new();
    if total > 0 {
        for (worker, arriving) in read_rxs.into_iter().enumerate() {
            workers.push(spawn_worker(
                &shared,
                0..scenario.subscribers,
                (worker, scenario.threads),
                "sub",
                WorkerKind::Receiving(arriving),
            )?);
        }
    }
    if scenario.publishers > 0 {
        for worker in 0..scenario.publisher_threads {
            workers.push(spawn_worker(
                &shared,
                scenario.subscribers..total,
                (worker, scenario.publisher_threads),
                "pub",
                WorkerKind::Publishing(read_txs.clone()),
            )?);
        }
    }
    // Only the publisher workers may hold senders: a receiving worker ends once they are done.
    drop(read_txs);

    let drain_ns = (scenario.drain_s * 1e9) as u64;
    let mut hlog = HlogBuffer::new(monotonic_to_system(started_ns))?;
    let mut timeline = Vec::new();
    let mut second = 1u64;
    let mut last_cpu = own_cpu_seconds();
    let mut last_tick_ns = started_ns;
    let mut busiest_window_second: Option<f64> = None;
    loop {
        let tick_ns = started_ns + second * 1_000_000_000 + HANDOFF_GRACE_NS;
        wait_until(&mut phases, &shared, &window_tx, tick_ns)?;
        let now = monotonic_ns();
        let interval = std::mem::take(
            &mut *shared
                .interval_sink
                .lock()
                .map_err(|_| anyhow::anyhow!("stats lock poisoned"))?,
        );
        let cpu = own_cpu_seconds();
        let cpu_percent =
            (cpu.0 + cpu.1 - last_cpu.0 - last_cpu.1) * 100.0 / ((now - last_tick_ns) as f64 / 1e9);
        last_cpu = cpu;
        let tick_start_ns = last_tick_ns;
        last_tick_ns = now;
        push_interval(&mut hlog, second, Duration::from_secs(1), &interval)?;
        if let Some(window) = &phases.window {
            // The busiest second is reported as part of the window: only ticks whose whole
            // second lies inside it count (the connect phase and the close are left out).
            if tick_start_ns >= window.measure_start_ns && now <= window.measure_end_ns {
                busiest_window_second =
                    Some(busiest_window_second.unwrap_or(0.0f64).max(cpu_percent));
            }
        }
        let row = timeline_row(
            second,
            phases.name_at(now - HANDOFF_GRACE_NS, drain_ns),
            &shared,
            &interval,
            cpu_percent,
        );
        if !quiet {
            eprintln!("{}", super::live::line(&row, total));
        }
        timeline.push(row);
        second += 1;
        if phases.aborted {
            let _ = abort_tx.send(true);
            break;
        }
        if let Some(window) = &phases.window {
            if now >= window.measure_end_ns + drain_ns {
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    shared.pacer.stop();
    if let Some(pacer) = phases.pacer_thread.take() {
        pacer
            .join()
            .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    }
    let mut totals = RunTotals::new(scenario.publishers as usize);
    for worker in workers {
        let worker_totals = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        totals.merge(&worker_totals);
    }
    let final_interval = std::mem::take(
        &mut *shared
            .interval_sink
            .lock()
            .map_err(|_| anyhow::anyhow!("stats lock poisoned"))?,
    );
    // The close takes CPU too (every connection's close handshake): the last row has it.
    let now = monotonic_ns();
    let cpu = own_cpu_seconds();
    let cpu_percent = (cpu.0 + cpu.1 - last_cpu.0 - last_cpu.1) * 100.0
        / ((now - last_tick_ns).max(1) as f64 / 1e9);
    push_interval(
        &mut hlog,
        second,
        Duration::from_nanos(now - last_tick_ns),
        &final_interval,
    )?;
    let row = timeline_row(second, "closing", &shared, &final_interval, cpu_percent);
    timeline.push(row);
    let connected = count_connected(&scenario, &connected_rx);
    let results = results_of(&plan, &totals, &connected, &phases, busiest_window_second)?;
    let report = Report {
        schema: report::SCHEMA.to_string(),
        scenario,
        environment,
        results,
    };
    let output = RunOutput { report, timeline };
    if let Some(dir) = &plan.out {
        write_outputs(dir, &output, &hlog)?;
    }
    Ok(output)
}

/// Starts worker `worker` of `workers` for the connection indices `connections`.
fn spawn_worker(
    shared: &Arc<Shared>,
    connections: std::ops::Range<u64>,
    (worker, workers): (usize, usize),
    role: &'static str,
    kind: WorkerKind,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<RunTotals>>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("loadgen-{role}-{worker}"))
        .spawn(move || {
            if matches!(kind, WorkerKind::Publishing(_)) {
                crate::worker::favour_this_thread();
            }
            run_worker(shared, connections, worker, workers, kind)
        })
        .context("spawning worker threads")
}

/// Appends the intervals of tick `second` (covering `length` from second - 1) to the log:
/// the measured latency untagged, then the tagged every-message series.
fn push_interval(
    hlog: &mut HlogBuffer,
    second: u64,
    length: Duration,
    interval: &IntervalStats,
) -> anyhow::Result<()> {
    hlog.push(
        Duration::from_secs(second - 1),
        length,
        &[
            (None, &interval.latency_measured),
            (Some("latency_all"), &interval.latency),
            (Some("latency_uncorrected"), &interval.latency_uncorrected),
            (Some("send_lag"), &interval.send_lag),
        ],
    )
}

/// Sleeps until `until_ns`, handling the phase events that fall before it: setting the window
/// once every connection attempt finished, and the server/CPU readings at the window edges.
fn wait_until(
    phases: &mut Phases,
    shared: &Arc<Shared>,
    window_tx: &watch::Sender<Option<Arc<Window>>>,
    until_ns: u64,
) -> anyhow::Result<()> {
    loop {
        let now = monotonic_ns();
        if phases.window.is_none() && nothing_can_connect(shared, now) {
            phases.aborted = true;
            return Ok(());
        }
        if phases.window.is_none()
            && shared.attempts_done.load(Ordering::Relaxed) >= shared.scenario.connections()
        {
            phases.server.sample(Phase::Connected);
            let measure_start_ns = now + (shared.scenario.warmup_s * 1e9) as u64;
            let window = Arc::new(Window {
                t0_ns: now,
                measure_start_ns,
                measure_end_ns: measure_start_ns + (shared.scenario.duration_s * 1e9) as u64,
            });
            if shared.scenario.publishers > 0 {
                let schedule = window.schedule(&shared.scenario);
                let pacer_shared = shared.clone();
                phases.pacer_thread = Some(
                    std::thread::Builder::new()
                        .name("loadgen-pacer".into())
                        .spawn(move || pacer_shared.pacer.run(schedule))
                        .context("spawning the pacer thread")?,
                );
            }
            phases.window = Some(window.clone());
            let _ = window_tx.send(Some(window));
        }
        let mut next = until_ns;
        if let Some(window) = phases.window.clone() {
            for (edge, slot_is_empty) in [
                (window.measure_start_ns, phases.cpu_at_window.0.is_none()),
                (window.measure_end_ns, phases.cpu_at_window.1.is_none()),
            ] {
                if !slot_is_empty {
                    continue;
                }
                if now >= edge {
                    let (user, system) = own_cpu_seconds();
                    if edge == window.measure_start_ns {
                        phases.cpu_at_window.0 = Some(user + system);
                        phases.server.sample(Phase::WindowStart);
                    } else {
                        phases.cpu_at_window.1 = Some(user + system);
                        phases.server.sample(Phase::WindowEnd);
                    }
                } else {
                    next = next.min(edge);
                }
            }
        } else {
            // Poll the connection ramp every 10 ms so the window starts promptly.
            next = next.min(now + 10_000_000);
        }
        if now >= until_ns {
            return Ok(());
        }
        std::thread::sleep(Duration::from_nanos(next.saturating_sub(now).max(1)));
    }
}

/// Whether the run should stop now: no connection succeeded, and every attempt failed or the
/// first attempts have had their full connect timeout.
fn nothing_can_connect(shared: &Shared, now_ns: u64) -> bool {
    let timeout_ns = (shared.scenario.connect_timeout_s * 1e9) as u64;
    let attempts_over =
        shared.attempts_done.load(Ordering::Relaxed) >= shared.scenario.connections();
    let timed_out = now_ns >= shared.started_ns + timeout_ns + ABORT_GRACE_NS;
    shared.connected.load(Ordering::Relaxed) == 0 && (attempts_over || timed_out)
}

/// Builds a timeline row from one second's figures.
fn timeline_row(
    second: u64,
    phase: &str,
    shared: &Shared,
    interval: &IntervalStats,
    cpu_percent: f64,
) -> TimelineRow {
    TimelineRow {
        second,
        phase: phase.to_string(),
        connections_open: shared.open_connections.load(Ordering::Relaxed),
        sent: interval.sent,
        delivered: interval.delivered,
        delivered_bytes: interval.delivered_bytes,
        latency_p50_ns: if interval.latency.is_empty() {
            0
        } else {
            interval.latency.value_at_quantile(0.5)
        },
        latency_p99_ns: if interval.latency.is_empty() {
            0
        } else {
            interval.latency.value_at_quantile(0.99)
        },
        latency_max_ns: interval.latency.max(),
        send_lag_p99_ns: if interval.send_lag.is_empty() {
            0
        } else {
            interval.send_lag.value_at_quantile(0.99)
        },
        errors: interval.errors,
        loadgen_cpu_percent: cpu_percent,
    }
}

/// Who connected, counted from the connections' indices.
struct ConnectedCounts {
    /// Non-stalled connected receivers per room (publishers receive too).
    per_room: Vec<u64>,
    /// The same per room and URL: `[room][url]`.
    per_room_url: Vec<Vec<u64>>,
    /// Connections (stalled ones included) per URL.
    per_url: Vec<u64>,
}

/// Counts the connections reported on `connected`.
fn count_connected(
    scenario: &crate::plan::Scenario,
    connected: &mpsc::Receiver<u64>,
) -> ConnectedCounts {
    let rooms = scenario.rooms.max(1) as usize;
    let urls = scenario.urls.len().max(1);
    let mut counts = ConnectedCounts {
        per_room: vec![0; rooms],
        per_room_url: vec![vec![0; urls]; rooms],
        per_url: vec![0; urls],
    };
    for index in connected.try_iter() {
        let spec = ConnectionSpec::of(scenario, index);
        let url = url_of_connection(index, urls);
        counts.per_url[url] += 1;
        if !spec.stalled {
            counts.per_room[spec.room as usize] += 1;
            counts.per_room_url[spec.room as usize][url] += 1;
        }
    }
    counts
}

/// The report's `nodes` section, or `None` with a single URL.
fn node_results(
    scenario: &crate::plan::Scenario,
    totals: &RunTotals,
    connected: &ConnectedCounts,
) -> Option<report::NodeResults> {
    let nodes = totals.nodes.as_ref()?;
    let urls = scenario.urls.len();
    let mut per_url: Vec<report::UrlConnections> = scenario
        .urls
        .iter()
        .enumerate()
        .map(|(url, text)| report::UrlConnections {
            url: text.clone(),
            target: 0,
            publishers: 0,
            ok: connected.per_url.get(url).copied().unwrap_or(0),
        })
        .collect();
    for index in 0..scenario.connections() {
        let entry = &mut per_url[url_of_connection(index, urls)];
        entry.target += 1;
        entry.publishers += u64::from(index >= scenario.subscribers);
    }
    let (same_expected, cross_expected) = expected_by_class(
        scenario,
        &totals.sent_measured_by_publisher,
        &connected.per_room_url,
    );
    let class = |expected: u64, totals: &ClassTotals| report::NodeClassResults {
        expected,
        delivered: totals.delivered,
        lost: expected.saturating_sub(totals.delivered),
        latency_ns: HistogramSummary::of(&totals.latency),
    };
    Some(report::NodeResults {
        urls: per_url,
        same_node: class(same_expected, &nodes.same),
        cross_node: class(cross_expected, &nodes.cross),
    })
}

/// Turns merged totals into the report's results, including validity and thresholds.
fn results_of(
    plan: &Plan,
    totals: &RunTotals,
    connected: &ConnectedCounts,
    phases: &Phases,
    busiest_window_second: Option<f64>,
) -> anyhow::Result<Results> {
    let scenario = &plan.scenario;
    let rooms = scenario.rooms.max(1);
    let per_room = &connected.per_room;
    let mut expected = 0u64;
    let mut delivered = 0u64;
    let mut publishers_with_loss = Vec::new();
    for (publisher, sent) in totals.sent_measured_by_publisher.iter().enumerate() {
        let publisher_expected = sent * per_room[(publisher as u64 % rooms) as usize];
        let publisher_delivered = totals
            .delivered_by_publisher
            .get(publisher)
            .copied()
            .unwrap_or(0);
        expected += publisher_expected;
        delivered += publisher_delivered;
        if publisher_delivered < publisher_expected {
            publishers_with_loss.push(report::PublisherLoss {
                publisher: publisher as u32,
                expected: publisher_expected,
                delivered: publisher_delivered,
            });
        }
    }
    let sent_measured: u64 = totals.sent_measured_by_publisher.iter().sum();
    let failed: u64 = totals.connect_failures.values().sum();
    let measured_seconds = scenario.duration_s;
    let (user_s, system_s) = own_cpu_seconds();
    let window_percent = match phases.cpu_at_window {
        (Some(start), Some(end)) if measured_seconds > 0.0 => {
            Some((end - start) * 100.0 / measured_seconds)
        }
        _ => None,
    };
    let send_lag = HistogramSummary::of(&totals.send_lag);
    let mut invalid_reasons = Vec::new();
    if phases.aborted {
        let reasons: Vec<String> = totals
            .connect_failure_examples
            .iter()
            .map(|(key, example)| {
                let count = totals.connect_failures.get(key).copied().unwrap_or(0);
                format!("{count} x {example}")
            })
            .collect();
        invalid_reasons.push(format!(
            "aborted: no connection succeeded within --connect-timeout {} ({})",
            crate::plan::format_ns(scenario.connect_timeout_s * 1e9),
            if reasons.is_empty() {
                "no attempt finished".to_string()
            } else {
                reasons.join(", ")
            }
        ));
    }
    if failed > 0 {
        invalid_reasons.push(format!(
            "{failed} of {} connections failed",
            scenario.connections()
        ));
    }
    if totals.disconnected > 0 {
        invalid_reasons.push(format!(
            "{} connections were closed during the run",
            totals.disconnected
        ));
    }
    if let Some(example) = &totals.protocol_error_example {
        invalid_reasons.push(format!(
            "{} protocol errors; the first: {example}",
            totals.protocol_errors
        ));
    }
    if let Some(p99) = send_lag
        .p99
        .filter(|p99| *p99 as f64 > scenario.max_send_lag_s * 1e9)
    {
        invalid_reasons.push(format!(
            "publishers fell behind: send lag p99 {} > --max-send-lag {}",
            crate::plan::format_ns(p99 as f64),
            crate::plan::format_ns(scenario.max_send_lag_s * 1e9)
        ));
    }
    if scenario.publishers > 0 && sent_measured == 0 {
        invalid_reasons.push("no message was sent in the measured window".to_string());
    }
    let mut histograms = std::collections::BTreeMap::new();
    for (name, histogram) in [
        ("latency", &totals.latency),
        ("latency_uncorrected", &totals.latency_uncorrected),
        ("connect", &totals.connect),
        ("send_lag", &totals.send_lag),
    ] {
        histograms.insert(name.to_string(), encode_histogram(histogram)?);
    }
    if let Some(nodes) = &totals.nodes {
        for (name, class) in report::NODE_HISTOGRAMS
            .iter()
            .zip([&nodes.same, &nodes.cross])
        {
            histograms.insert(name.to_string(), encode_histogram(&class.latency)?);
        }
    }
    let mut results = Results {
        valid: invalid_reasons.is_empty(),
        invalid_reasons,
        connections: report::ConnectionResults {
            target: scenario.connections(),
            ok: totals.connected,
            failed,
            failures: totals.connect_failures.clone(),
            disconnected: totals.disconnected,
        },
        sent: totals.sent,
        sent_measured,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicated: totals.duplicated,
        reordered: totals.reordered,
        foreign: totals.foreign,
        delivered_per_sec: delivered as f64 / measured_seconds,
        delivered_mb_per_sec: totals.delivered_bytes as f64 / 1e6 / measured_seconds,
        measured_seconds,
        latency_ns: HistogramSummary::of(&totals.latency),
        latency_uncorrected_ns: HistogramSummary::of(&totals.latency_uncorrected),
        connect_ns: HistogramSummary::of(&totals.connect),
        send_lag_ns: send_lag,
        stalled: report::StalledResults {
            connections: totals.stalled_connected,
            closed_by_server: totals.stalled_closed_by_server,
        },
        protocol_errors: totals.protocol_errors,
        publishers_with_loss,
        loadgen_cpu: report::LoadgenCpu {
            user_s,
            system_s,
            window_percent,
            // A window shorter than one whole second has no busiest second: its mean.
            max_second_percent: busiest_window_second.or(window_percent),
        },
        server: phases.server.results(totals.connected, delivered),
        servers: Vec::new(),
        nodes: node_results(scenario, totals, connected),
        thresholds: Vec::new(),
        histograms,
    };
    results.thresholds = report::check_thresholds(&plan.thresholds, &results);
    Ok(results)
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
