//! CPU and memory of processes: the server's (same host, `--server-pid`) from /proc, and
//! loadgen's own from getrusage, so a report shows which side saturated.

use serde::{Deserialize, Serialize};

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

/// Server figures reported in `results.server`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerResults {
    /// Process sampled.
    pub pid: u32,
    /// CPU seconds the server used during the measured window.
    pub cpu_seconds: f64,
    /// Server CPU microseconds per delivered message in the window; null when nothing was
    /// delivered (undefined, not 0).
    pub cpu_us_per_delivery: Option<f64>,
    /// Server CPU seconds per million deliveries; null when nothing was delivered.
    pub cpu_s_per_million_deliveries: Option<f64>,
    /// Of `cpu_seconds`, the user-space part (utime); the rest is kernel time. Null in reports
    /// of loadgen versions that did not record it.
    #[serde(default)]
    pub cpu_user_seconds: Option<f64>,
    /// Server user-space CPU microseconds per delivered message in the window; null when
    /// nothing was delivered or the split was not recorded.
    #[serde(default)]
    pub user_us_per_delivery: Option<f64>,
    /// RSS before loadgen connected.
    pub rss_before_connect_bytes: u64,
    /// RSS once every connection was up.
    pub rss_connected_bytes: u64,
    /// Peak RSS (VmHWM) at the end of the window.
    pub rss_peak_bytes: u64,
    /// (connected - before) / connections; null without connections.
    pub rss_per_connection_bytes: Option<f64>,
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

impl ServerReadings {
    /// Derives the reported figures; `None` unless all four readings exist.
    pub fn results(&self, pid: u32, connections: u64, deliveries: u64) -> Option<ServerResults> {
        let (before, connected, start, end) = (
            self.before_connect?,
            self.connected?,
            self.window_start?,
            self.window_end?,
        );
        let cpu_seconds = (end.cpu_seconds - start.cpu_seconds).max(0.0);
        let user_seconds = (end.user_seconds - start.user_seconds).max(0.0);
        let per_delivery =
            |seconds: f64| (deliveries > 0).then(|| seconds * 1e6 / deliveries as f64);
        Some(ServerResults {
            pid,
            cpu_seconds,
            cpu_us_per_delivery: per_delivery(cpu_seconds),
            cpu_s_per_million_deliveries: per_delivery(cpu_seconds),
            cpu_user_seconds: Some(user_seconds),
            user_us_per_delivery: per_delivery(user_seconds),
            rss_before_connect_bytes: before.rss_bytes,
            rss_connected_bytes: connected.rss_bytes,
            rss_peak_bytes: end.rss_peak_bytes,
            rss_per_connection_bytes: (connections > 0).then(|| {
                connected.rss_bytes.saturating_sub(before.rss_bytes) as f64 / connections as f64
            }),
        })
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
        let results = readings.results(1, 100, 1_000_000).unwrap();
        assert_eq!(results.cpu_seconds, 2.0);
        assert_eq!(results.cpu_us_per_delivery, Some(2.0));
        assert_eq!(results.cpu_user_seconds, Some(0.5));
        assert_eq!(results.user_us_per_delivery, Some(0.5));
        assert_eq!(results.rss_per_connection_bytes, Some(1000.0));
        assert_eq!(results.rss_peak_bytes, 1000);
        // Nothing delivered, nothing connected: undefined, not 0.
        let idle = readings.results(1, 0, 0).unwrap();
        assert_eq!(idle.cpu_us_per_delivery, None);
        assert_eq!(idle.cpu_s_per_million_deliveries, None);
        assert_eq!(idle.user_us_per_delivery, None);
        assert_eq!(idle.rss_per_connection_bytes, None);
    }
}
