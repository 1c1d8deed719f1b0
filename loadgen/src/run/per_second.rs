//! The run second by second: one timeline row and one interval of latency.hlog per tick, with
//! loadgen's own CPU over the tick, and the busiest whole second of the measured window.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::probe::own_cpu_seconds;
use crate::clock::monotonic_to_system;
use crate::report::csv::TimelineRow;
use crate::report::hlog::HlogBuffer;
use crate::stats::IntervalStats;
use crate::worker::{Shared, Window};

/// What the run has recorded per second so far.
pub struct PerSecond {
    /// latency.hlog, one interval per tick.
    pub hlog: HlogBuffer,
    /// timeline.csv, one row per tick.
    pub timeline: Vec<TimelineRow>,
    /// The tick recorded next (1: the first second).
    second: u64,
    /// Own CPU (user, system) seconds at the last tick.
    last_cpu: (f64, f64),
    /// Monotonic ns of the last tick.
    last_tick_ns: u64,
    /// loadgen's CPU percent in the busiest tick that lay wholly inside the measured window.
    pub busiest_window_second: Option<f64>,
}

impl PerSecond {
    /// Nothing recorded yet; the run started at monotonic `started_ns`.
    pub fn new(started_ns: u64) -> anyhow::Result<PerSecond> {
        Ok(PerSecond {
            hlog: HlogBuffer::new(monotonic_to_system(started_ns))?,
            timeline: Vec::new(),
            second: 1,
            last_cpu: own_cpu_seconds(),
            last_tick_ns: started_ns,
            busiest_window_second: None,
        })
    }

    /// The number of the tick recorded next (seconds since the start).
    pub fn next_second(&self) -> u64 {
        self.second
    }

    /// Records the second that ended at monotonic `now` in phase `phase` with the figures
    /// `interval`; returns its row (the live line prints it).
    pub fn record_tick(
        &mut self,
        now: u64,
        phase: &str,
        window: Option<&Window>,
        shared: &Shared,
        interval: &IntervalStats,
    ) -> anyhow::Result<&TimelineRow> {
        let cpu_percent = self.cpu_percent_since_last_tick(now);
        let tick_start_ns = std::mem::replace(&mut self.last_tick_ns, now);
        push_interval(
            &mut self.hlog,
            self.second,
            Duration::from_secs(1),
            interval,
        )?;
        if let Some(window) = window {
            // The busiest second is reported as part of the window: only ticks whose whole
            // second lies inside it count (the connect phase and the close are left out).
            if tick_start_ns >= window.measure_start_ns && now <= window.measure_end_ns {
                self.busiest_window_second = Some(
                    self.busiest_window_second
                        .unwrap_or(0.0f64)
                        .max(cpu_percent),
                );
            }
        }
        self.timeline.push(timeline_row(
            self.second,
            phase,
            shared,
            interval,
            cpu_percent,
        ));
        self.second += 1;
        Ok(&self.timeline[self.timeline.len() - 1])
    }

    /// Records the last, shorter tick, after the workers stopped (monotonic `now`): the close
    /// takes CPU too (every connection's close handshake), so the last row has it.
    pub fn record_close(
        &mut self,
        now: u64,
        shared: &Shared,
        interval: &IntervalStats,
    ) -> anyhow::Result<()> {
        let cpu_percent = self.cpu_percent_since_last_tick(now);
        push_interval(
            &mut self.hlog,
            self.second,
            Duration::from_nanos(now - self.last_tick_ns),
            interval,
        )?;
        self.timeline.push(timeline_row(
            self.second,
            "closing",
            shared,
            interval,
            cpu_percent,
        ));
        Ok(())
    }

    /// loadgen's CPU use from the last tick to `now`, percent of one core.
    fn cpu_percent_since_last_tick(&mut self, now: u64) -> f64 {
        let cpu = own_cpu_seconds();
        let used = cpu.0 + cpu.1 - self.last_cpu.0 - self.last_cpu.1;
        self.last_cpu = cpu;
        used * 100.0 / ((now - self.last_tick_ns).max(1) as f64 / 1e9)
    }
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
