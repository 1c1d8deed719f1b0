//! CPU and memory of processes: the server's (same host, `--server-pid`) from /proc, and
//! loadgen's own from getrusage, so a report shows which side saturated.
use crate::report::{ProcessResults, ServerResults};

/// One reading of a server process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerSample {
    /// utime + stime, seconds.
    pub cpu_seconds: f64,
    /// utime alone (user space), seconds.
    pub user_seconds: f64,
    /// VmRSS, bytes.
    pub rss_bytes: u64,
    /// VmHWM (peak RSS), bytes.
    pub rss_peak_bytes: u64,
}

/// Reads /proc/PID/stat and /proc/PID/status; `None` when the process is gone.
pub fn sample_server(pid: u32) -> Option<ServerSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Some(ServerSample {
        cpu_seconds: (utime + stime) / ticks,
        user_seconds: utime / ticks,
        rss_bytes: kib("VmRSS:"),
        rss_peak_bytes: kib("VmHWM:"),
    })
}

/// The four readings of a run: before connecting, connected, window start, window end.
#[derive(Debug, Clone, Default)]
pub struct ServerReadings {
    /// Before the first connection.
    pub before_connect: Option<ServerSample>,
    /// After all connection attempts finished.
    pub connected: Option<ServerSample>,
    /// At the start of the measured window.
    pub window_start: Option<ServerSample>,
    /// At the end of the measured window.
    pub window_end: Option<ServerSample>,
}

/// Where in the run a reading is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the first connection.
    BeforeConnect,
    /// After all connection attempts finished.
    Connected,
    /// At the start of the measured window.
    WindowStart,
    /// At the end of the measured window.
    WindowEnd,
}

impl ServerReadings {
    /// The slot of `phase`.
    fn slot(&mut self, phase: Phase) -> &mut Option<ServerSample> {
        match phase {
            Phase::BeforeConnect => &mut self.before_connect,
            Phase::Connected => &mut self.connected,
            Phase::WindowStart => &mut self.window_start,
            Phase::WindowEnd => &mut self.window_end,
        }
    }

    /// This process's figures; `None` unless all four readings exist.
    pub fn process(&self, pid: u32) -> Option<ProcessResults> {
        let (before, connected, start, end) = (
            self.before_connect?,
            self.connected?,
            self.window_start?,
            self.window_end?,
        );
        Some(ProcessResults {
            pid,
            cpu_seconds: (end.cpu_seconds - start.cpu_seconds).max(0.0),
            cpu_user_seconds: (end.user_seconds - start.user_seconds).max(0.0),
            rss_before_connect_bytes: before.rss_bytes,
            rss_connected_bytes: connected.rss_bytes,
            rss_peak_bytes: end.rss_peak_bytes,
        })
    }
}

/// The readings of every `--server-pid`, in the order given.
#[derive(Debug, Clone, Default)]
pub struct ServerProbe {
    /// (pid, its readings).
    processes: Vec<(u32, ServerReadings)>,
}

impl ServerProbe {
    /// A probe of `pids` (none: sampling does nothing and there are no results).
    pub fn new(pids: &[u32]) -> Self {
        Self {
            processes: pids
                .iter()
                .map(|&pid| (pid, ServerReadings::default()))
                .collect(),
        }
    }

    /// Samples every process at `phase`, one after the other; a vanished process leaves its
    /// slot empty.
    pub fn sample(&mut self, phase: Phase) {
        for (pid, readings) in &mut self.processes {
            *readings.slot(phase) = sample_server(*pid);
        }
    }

    /// The summed figures; `None` without pids or unless every process has all four readings
    /// (as with one pid, a process that vanished mid-run leaves no server figures: a sum
    /// missing a process would understate the cost).
    pub fn results(&self, connections: u64, deliveries: u64) -> Option<ServerResults> {
        let processes = self
            .processes
            .iter()
            .map(|(pid, readings)| readings.process(*pid))
            .collect::<Option<Vec<_>>>()?;
        (!processes.is_empty()).then(|| summed(&processes, connections, deliveries))
    }
}

/// `results.server` from each process's figures (at least one): sums, and per delivery and
/// per connection from the sums; `pids` and `processes` only with more than one.
pub fn summed(processes: &[ProcessResults], connections: u64, deliveries: u64) -> ServerResults {
    let cpu_seconds: f64 = processes.iter().map(|p| p.cpu_seconds).sum();
    let user_seconds: f64 = processes.iter().map(|p| p.cpu_user_seconds).sum();
    let before: u64 = processes.iter().map(|p| p.rss_before_connect_bytes).sum();
    let connected: u64 = processes.iter().map(|p| p.rss_connected_bytes).sum();
    let per_delivery = |seconds: f64| (deliveries > 0).then(|| seconds * 1e6 / deliveries as f64);
    let several = processes.len() > 1;
    ServerResults {
        pid: processes.first().map_or(0, |p| p.pid),
        pids: if several {
            processes.iter().map(|p| p.pid).collect()
        } else {
            Vec::new()
        },
        processes: if several {
            processes.to_vec()
        } else {
            Vec::new()
        },
        cpu_seconds,
        cpu_us_per_delivery: per_delivery(cpu_seconds),
        cpu_s_per_million_deliveries: per_delivery(cpu_seconds),
        cpu_user_seconds: Some(user_seconds),
        user_us_per_delivery: per_delivery(user_seconds),
        rss_before_connect_bytes: before,
        rss_connected_bytes: connected,
        rss_peak_bytes: processes.iter().map(|p| p.rss_peak_bytes).sum(),
        rss_per_connection_bytes: (connections > 0)
            .then(|| connected.saturating_sub(before) as f64 / connections as f64),
    }
}

/// loadgen's own user + system CPU seconds so far (all threads).
pub fn own_cpu_seconds() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid and writable; RUSAGE_SELF always exists.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let sample = sample_server(std::process::id()).expect("our own /proc entry exists");
        assert!(sample.rss_bytes > 0);
        assert!(sample.rss_peak_bytes >= sample.rss_bytes);
        assert!(sample_server(u32::MAX).is_none());
    }

    #[test]
    fn derives_per_delivery_and_per_connection_figures() {
        let at = |cpu: f64, rss: u64| {
            Some(ServerSample {
                cpu_seconds: cpu,
                user_seconds: cpu / 4.0,
                rss_bytes: rss,
                rss_peak_bytes: rss * 2,
            })
        };
        let readings = ServerReadings {
            before_connect: at(0.0, 1000),
            connected: at(1.0, 101_000),
            window_start: at(2.0, 0),
            window_end: at(4.0, 500),
        };
        // One process: the figures `results.server` gets from its readings.
        let results = summed(&[readings.process(1).unwrap()], 100, 1_000_000);
        assert_eq!(results.cpu_seconds, 2.0);
        assert_eq!(results.cpu_us_per_delivery, Some(2.0));
        assert_eq!(results.cpu_user_seconds, Some(0.5));
        assert_eq!(results.user_us_per_delivery, Some(0.5));
        assert_eq!(results.rss_per_connection_bytes, Some(1000.0));
        assert_eq!(results.rss_peak_bytes, 1000);
        // Nothing delivered, nothing connected: undefined, not 0.
        let idle = summed(&[readings.process(1).unwrap()], 0, 0);
        assert_eq!(idle.cpu_us_per_delivery, None);
        assert_eq!(idle.cpu_s_per_million_deliveries, None);
        assert_eq!(idle.user_us_per_delivery, None);
        assert_eq!(idle.rss_per_connection_bytes, None);
    }

    #[test]
    fn several_processes_are_summed_and_listed() {
        let process = |pid: u32, cpu: f64, before: u64, connected: u64| ProcessResults {
            pid,
            cpu_seconds: cpu,
            cpu_user_seconds: cpu / 2.0,
            rss_before_connect_bytes: before,
            rss_connected_bytes: connected,
            rss_peak_bytes: connected + 1,
        };
        let parts = [
            process(101, 1.0, 1000, 51_000),
            process(102, 2.0, 2000, 52_000),
            process(103, 1.0, 500, 400),
        ];
        let sum = summed(&parts, 100, 1_000_000);
        assert_eq!(sum.pid, 101);
        assert_eq!(sum.pids, vec![101, 102, 103]);
        assert_eq!(sum.processes, parts.to_vec());
        assert_eq!(sum.cpu_seconds, 4.0);
        assert_eq!(sum.cpu_us_per_delivery, Some(4.0));
        assert_eq!(sum.cpu_s_per_million_deliveries, Some(4.0));
        assert_eq!(sum.cpu_user_seconds, Some(2.0));
        assert_eq!(sum.user_us_per_delivery, Some(2.0));
        assert_eq!(sum.rss_before_connect_bytes, 3500);
        assert_eq!(sum.rss_connected_bytes, 103_400);
        assert_eq!(sum.rss_peak_bytes, 103_403);
        assert_eq!(sum.rss_per_connection_bytes, Some(999.0));
        // One process: the shape of a single-pid report, no `pids` or `processes` written.
        let one = summed(&parts[..1], 100, 1_000_000);
        assert!(one.pids.is_empty() && one.processes.is_empty());
        let json = serde_json::to_value(&one).unwrap();
        assert!(json.get("pids").is_none() && json.get("processes").is_none());
        assert!(serde_json::to_value(&sum)
            .unwrap()
            .get("processes")
            .is_some());
    }

    #[test]
    fn a_probe_samples_every_pid_and_a_vanished_one_leaves_no_figures() {
        let me = std::process::id();
        let mut probe = ServerProbe::new(&[me, me]);
        for phase in [
            Phase::BeforeConnect,
            Phase::Connected,
            Phase::WindowStart,
            Phase::WindowEnd,
        ] {
            probe.sample(phase);
        }
        let results = probe.results(1, 1).expect("both readings complete");
        assert_eq!(results.pids, vec![me, me]);
        assert_eq!(results.processes.len(), 2);
        // A pid without /proc entry: no server figures, as with one vanished pid.
        let mut gone = ServerProbe::new(&[me, u32::MAX]);
        for phase in [
            Phase::BeforeConnect,
            Phase::Connected,
            Phase::WindowStart,
            Phase::WindowEnd,
        ] {
            gone.sample(phase);
        }
        assert_eq!(gone.results(1, 1), None);
        assert_eq!(ServerProbe::new(&[]).results(1, 1), None);
    }
}
