//! report.json `results.server`: the server's CPU and memory over the run (`--server-pid`),
//! summed over the processes of a cluster on one host.

use serde::{Deserialize, Serialize};

/// Server figures reported in `results.server`. With several `--server-pid`s (a cluster: nodes
/// and broker on one host) every figure is the sum over the processes, so a cluster's cost per
/// delivery compares with a single server's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerResults {
    /// Process sampled (with several: the first given).
    pub pid: u32,
    /// Every process sampled, in `--server-pid` order; absent (not written) with one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// Each process's own figures, in `pids` order; absent (not written) with one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessResults>,
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
    /// Peak RSS (VmHWM) at the end of the window (several processes: the sum of their peaks).
    pub rss_peak_bytes: u64,
    /// (connected - before) / connections; null without connections.
    pub rss_per_connection_bytes: Option<f64>,
}

/// One process's share of a several-pid `results.server` (`processes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessResults {
    /// Process sampled.
    pub pid: u32,
    /// CPU seconds it used during the measured window.
    pub cpu_seconds: f64,
    /// Of `cpu_seconds`, the user-space part.
    pub cpu_user_seconds: f64,
    /// RSS before loadgen connected.
    pub rss_before_connect_bytes: u64,
    /// RSS once every connection was up.
    pub rss_connected_bytes: u64,
    /// Peak RSS (VmHWM) at the end of the window.
    pub rss_peak_bytes: u64,
}
