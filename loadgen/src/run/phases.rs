//! The phases of a run as the main thread walks them: connecting until every attempt has
//! finished (or none can succeed), then the window (warm-up, measure), the drain and the close;
//! the CPU and server readings taken at the window's edges.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::probe::{own_cpu_seconds, Phase, ServerProbe};
use crate::clock::monotonic_ns;
use crate::plan::Scenario;
use crate::worker::{Shared, Window};

/// Past the connect timeout, how long to wait for the first attempts' outcomes before
/// concluding that no connection will succeed.
const ABORT_GRACE_NS: u64 = 500_000_000;

/// Timing and CPU bookkeeping of the main loop.
pub struct Phases {
    /// The run's window, once set.
    pub window: Option<Arc<Window>>,
    /// Own CPU seconds at the window's start and end.
    pub cpu_at_window: (Option<f64>, Option<f64>),
    /// Server readings (every --server-pid).
    pub server: ServerProbe,
    /// The thread waking the publishers, started with the window.
    pacer_thread: Option<std::thread::JoinHandle<()>>,
    /// The run was abandoned because no connection succeeded.
    pub aborted: bool,
    /// The drain after the measured window, ns.
    drain_ns: u64,
}

impl Phases {
    /// Before the first connection: the server's first reading is taken here.
    pub fn start(scenario: &Scenario) -> Phases {
        let mut phases = Phases {
            window: None,
            cpu_at_window: (None, None),
            server: ServerProbe::new(&scenario.watched_pids()),
            pacer_thread: None,
            aborted: false,
            drain_ns: (scenario.drain_s * 1e9) as u64,
        };
        phases.server.sample(Phase::BeforeConnect);
        phases
    }

    /// Name of the phase at monotonic `ns`.
    pub fn name_at(&self, ns: u64) -> &'static str {
        match &self.window {
            None => "connecting",
            Some(w) if ns < w.measure_start_ns => "warmup",
            Some(w) if ns < w.measure_end_ns => "measure",
            Some(w) if ns < w.measure_end_ns + self.drain_ns => "drain",
            Some(_) => "closing",
        }
    }

    /// Whether the drain after the window is over at monotonic `now`.
    pub fn drained(&self, now: u64) -> bool {
        self.window
            .as_ref()
            .is_some_and(|window| now >= window.measure_end_ns + self.drain_ns)
    }

    /// Sleeps until `until_ns`, handling the phase events that fall before it: setting the
    /// window once every connection attempt finished, and the server/CPU readings at the
    /// window edges.
    pub fn wait_until(
        &mut self,
        shared: &Arc<Shared>,
        window_tx: &watch::Sender<Option<Arc<Window>>>,
        until_ns: u64,
    ) -> anyhow::Result<()> {
        loop {
            let now = monotonic_ns();
            // One reading of the attempts for both decisions: read twice, the last attempt
            // could land between the reads, and a run where nothing connected would start its
            // window instead of being abandoned.
            let attempts_over =
                shared.attempts_done.load(Ordering::Relaxed) >= shared.scenario.connections();
            if self.window.is_none() && nothing_can_connect(shared, attempts_over, now) {
                self.aborted = true;
                return Ok(());
            }
            if self.window.is_none() && attempts_over {
                self.start_window(shared, window_tx, now)?;
            }
            let next = if self.window.is_some() {
                self.read_window_edges(now, until_ns)
            } else {
                // Poll the connection ramp every 10 ms so the window starts promptly.
                until_ns.min(now + 10_000_000)
            };
            if now >= until_ns {
                return Ok(());
            }
            std::thread::sleep(Duration::from_nanos(next.saturating_sub(now).max(1)));
        }
    }

    /// Every connection attempt has finished at `now`: the window starts, with the pacer
    /// thread when there are publishers, and the workers are told.
    fn start_window(
        &mut self,
        shared: &Arc<Shared>,
        window_tx: &watch::Sender<Option<Arc<Window>>>,
        now: u64,
    ) -> anyhow::Result<()> {
        self.server.sample(Phase::Connected);
        let measure_start_ns = now + (shared.scenario.warmup_s * 1e9) as u64;
        let window = Arc::new(Window {
            t0_ns: now,
            measure_start_ns,
            measure_end_ns: measure_start_ns + (shared.scenario.duration_s * 1e9) as u64,
        });
        if shared.scenario.publishers > 0 {
            let schedule = window.schedule(&shared.scenario);
            let pacer_shared = shared.clone();
            self.pacer_thread = Some(
                std::thread::Builder::new()
                    .name("loadgen-pacer".into())
                    .spawn(move || pacer_shared.pacer.run(schedule))
                    .context("spawning the pacer thread")?,
            );
        }
        self.window = Some(window.clone());
        let _ = window_tx.send(Some(window));
        Ok(())
    }

    /// Takes the CPU and server readings of the window edges reached by `now`; returns when to
    /// wake next: the next edge still ahead, or `until_ns`.
    fn read_window_edges(&mut self, now: u64, until_ns: u64) -> u64 {
        let mut next = until_ns;
        let Some(window) = self.window.clone() else {
            return next;
        };
        for (edge, slot_is_empty) in [
            (window.measure_start_ns, self.cpu_at_window.0.is_none()),
            (window.measure_end_ns, self.cpu_at_window.1.is_none()),
        ] {
            if !slot_is_empty {
                continue;
            }
            if now >= edge {
                let (user, system) = own_cpu_seconds();
                if edge == window.measure_start_ns {
                    self.cpu_at_window.0 = Some(user + system);
                    self.server.sample(Phase::WindowStart);
                } else {
                    self.cpu_at_window.1 = Some(user + system);
                    self.server.sample(Phase::WindowEnd);
                }
            } else {
                next = next.min(edge);
            }
        }
        next
    }

    /// Waits for the pacer thread, once the pacer was told to stop.
    pub fn join_pacer(&mut self) -> anyhow::Result<()> {
        if let Some(pacer) = self.pacer_thread.take() {
            pacer
                .join()
                .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
        }
        Ok(())
    }
}

/// Whether the run should stop now: no connection succeeded, and every attempt failed or the
/// first attempts have had their full connect timeout.
fn nothing_can_connect(shared: &Shared, attempts_over: bool, now_ns: u64) -> bool {
    let timeout_ns = (shared.scenario.connect_timeout_s * 1e9) as u64;
    let timed_out = now_ns >= shared.started_ns + timeout_ns + ABORT_GRACE_NS;
    shared.connected.load(Ordering::Relaxed) == 0 && (attempts_over || timed_out)
}
