//! The validated run configuration: CLI values checked once, in one place, and recorded in
//! report.json `scenario` exactly as run.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context};
use clap::Parser;
use serde::{Deserialize, Serialize};

use super::cli::{Cli, Command, RunOpt};
use super::threshold::Threshold;
use crate::client::{client_config, parse_source_pool, Target, TLS_SCHEME};
use crate::client::{PayloadKind, MIN_JSON_SIZE, STAMP_LEN};

/// Every option of a run, in report units (seconds as f64, bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scenario {
    /// Server URLs as given.
    pub urls: Vec<String>,
    /// Receive-only connections.
    pub subscribers: u64,
    /// Sending connections.
    pub publishers: u64,
    /// Messages per second per publisher.
    pub rate: f64,
    /// Payload bytes per message.
    pub size: usize,
    /// `--payload`: what publishers send; absent (not written) for the default, `padded`.
    #[serde(default, skip_serializing_if = "PayloadKind::is_padded")]
    pub payload: PayloadKind,
    /// `--deflate`: permessage-deflate offered; absent (not written) without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deflate: bool,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Rooms clients are spread over.
    pub rooms: u64,
    /// Connection ramp, connections per second (0 = unlimited).
    pub connect_rate: f64,
    /// Per-connection connect + handshake deadline, seconds.
    pub connect_timeout_s: f64,
    /// Receiving worker threads (subscribers, and the read side of the publishers' sockets).
    pub threads: usize,
    /// Publisher worker threads (absent in reports written before it existed: 1).
    #[serde(default = "one_thread")]
    pub publisher_threads: usize,
    /// Source address pool (empty: kernel's choice).
    pub src: Vec<IpAddr>,
    /// Drain after the last send, seconds.
    pub drain_s: f64,
    /// Percent of subscribers that stop reading after the warm-up.
    pub stalled_percent: f64,
    /// Server process sampled from /proc, if any (with several: the first).
    pub server_pid: Option<u32>,
    /// With more than one `--server-pid` (a cluster on this host): every one, in order; their
    /// figures are summed. Absent (not written) with one or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_pids: Vec<u32>,
    /// Send-lag p99 above which the run is invalid, seconds.
    pub max_send_lag_s: f64,
    /// Threshold expressions as given.
    pub thresholds: Vec<String>,
    /// `--churn`: subscribers leave and come back; absent (not written) without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnScenario>,
    /// `--recover`: subscribers ask for their position and reconnect with `since=`; absent
    /// (not written) without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recover: bool,
    /// `--tls-ca`: the CA trusted for `wss://` URLs; absent (not written) without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// `--tls-insecure`: `wss://` servers' certificates not verified; absent (not written)
    /// without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure: bool,
}

/// `--churn EVERY:DOWNTIME` as recorded, in seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ChurnScenario {
    /// Period of each subscriber's departures.
    pub every_s: f64,
    /// Time away before reconnecting.
    pub downtime_s: f64,
}

/// Serde default of `Scenario::publisher_threads`.
fn one_thread() -> usize {
    1
}

/// A scenario plus the parsed forms the run needs.
pub struct Plan {
    /// The recorded scenario.
    pub scenario: Scenario,
    /// Parsed, resolved URLs.
    pub targets: Vec<Target>,
    /// Parsed thresholds.
    pub thresholds: Vec<Threshold>,
    /// Output directory (`--out`).
    pub out: Option<std::path::PathBuf>,
}

impl Scenario {
    /// Every server process to sample, in `--server-pid` order (empty: none).
    pub fn watched_pids(&self) -> Vec<u32> {
        if self.server_pids.is_empty() {
            self.server_pid.into_iter().collect()
        } else {
            self.server_pids.clone()
        }
    }

    /// Total connections the run opens.
    pub fn connections(&self) -> u64 {
        self.subscribers + self.publishers
    }

    /// Subscribers that stop reading after the warm-up (the first ones, spread over rooms).
    pub fn stalled_subscribers(&self) -> u64 {
        ((self.subscribers as f64) * self.stalled_percent / 100.0).round() as u64
    }

    /// The scenario report.json records, from options `from_opt` has checked.
    fn record(opt: &RunOpt, threads: usize, src: Vec<IpAddr>) -> Scenario {
        Scenario {
            urls: opt.urls.clone(),
            subscribers: opt.subscribers,
            publishers: opt.publishers,
            rate: opt.rate,
            size: opt.size,
            payload: opt.payload,
            deflate: opt.deflate,
            duration_s: opt.duration.as_secs_f64(),
            warmup_s: opt.warmup.as_secs_f64(),
            rooms: opt.rooms,
            connect_rate: opt.connect_rate,
            connect_timeout_s: opt.connect_timeout.as_secs_f64(),
            threads,
            publisher_threads: opt.publisher_threads,
            src,
            drain_s: opt.drain.as_secs_f64(),
            stalled_percent: opt.stalled,
            server_pid: opt.server_pid.first().copied(),
            server_pids: if opt.server_pid.len() > 1 {
                opt.server_pid.clone()
            } else {
                Vec::new()
            },
            max_send_lag_s: opt.max_send_lag.as_secs_f64(),
            thresholds: opt.thresholds.clone(),
            churn: opt.churn.map(|churn| ChurnScenario {
                every_s: churn.every.as_secs_f64(),
                downtime_s: churn.downtime.as_secs_f64(),
            }),
            recover: opt.recover,
            tls_ca: opt.tls_ca.clone(),
            tls_insecure: opt.tls_insecure,
        }
    }
}

impl Plan {
    /// The plan of a `loadgen run` command line given as its arguments after `run` (the
    /// benchmarks and tests build their scenarios this way, so they use the real defaults).
    pub fn from_run_args(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(["loadgen", "run"].iter().chain(args))?;
        let Command::Run(opt) = cli.command else {
            bail!("`loadgen run` parsed as another command");
        };
        Plan::from_opt(&opt)
    }

    /// Validates the CLI values; every error here is a usage error (exit 2).
    pub fn from_opt(opt: &RunOpt) -> anyhow::Result<Plan> {
        check_load(opt)?;
        let threads = worker_threads(opt)?;
        check_server_pids(&opt.server_pid)?;
        if (opt.tls_ca.is_some() || opt.tls_insecure)
            && !opt.urls.iter().any(|url| url.starts_with(TLS_SCHEME))
        {
            bail!(
                "--tls-ca and --tls-insecure apply to {TLS_SCHEME} URLs only: write the --url \
                 as {TLS_SCHEME}host:port/path for a TLS server, or drop the option for a plain one"
            );
        }
        let tls = client_config(opt.tls_ca.as_deref(), opt.tls_insecure)?;
        let targets = opt
            .urls
            .iter()
            .map(|url| Target::parse(url, &tls))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let src = match &opt.src {
            Some(text) => parse_source_pool(text).context("--src")?,
            None => Vec::new(),
        };
        let thresholds = opt
            .thresholds
            .iter()
            .map(|text| Threshold::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        if opt.publishers == 0 && opt.rate > 0.0 && opt.subscribers == 0 {
            bail!("--publishers 0 with --subscribers 0 opens no connection");
        }
        Ok(Plan {
            scenario: Scenario::record(opt, threads, src),
            targets,
            thresholds,
            out: opt.out.clone(),
        })
    }
}

/// Checks the load options: payload size, rooms, something to do, rates, stalled share and
/// the durations.
fn check_load(opt: &RunOpt) -> anyhow::Result<()> {
    ensure!(
        opt.size >= STAMP_LEN,
        "--size {} is smaller than the {STAMP_LEN}-byte stamp (publisher, sequence, send times) every payload carries",
        opt.size
    );
    ensure!(
        opt.payload != PayloadKind::Json || opt.size >= MIN_JSON_SIZE,
        "--size {} is too small for --payload json: the stamp field and a chat line take {MIN_JSON_SIZE} bytes",
        opt.size
    );
    ensure!(
        opt.size <= 16 * 1024 * 1024,
        "--size above 16MiB is not supported"
    );
    ensure!(opt.rooms >= 1, "--rooms must be at least 1");
    ensure!(
        opt.subscribers + opt.publishers > 0,
        "nothing to do: 0 subscribers and 0 publishers"
    );
    if opt.publishers > 0 {
        ensure!(
            opt.rate.is_finite() && opt.rate > 0.0 && opt.rate <= 1e7,
            "--rate must be in (0, 1e7] messages/s per publisher"
        );
    }
    ensure!(
        opt.connect_rate.is_finite() && opt.connect_rate >= 0.0,
        "--connect-rate must be >= 0"
    );
    ensure!(
        (0.0..=100.0).contains(&opt.stalled),
        "--stalled is a percentage in [0, 100]"
    );
    ensure!(!opt.duration.is_zero(), "--duration must be positive");
    ensure!(
        opt.churn.is_none() || opt.subscribers > 0,
        "--churn disconnects subscribers, and there are none (--subscribers 0)"
    );
    ensure!(
        !opt.connect_timeout.is_zero(),
        "--connect-timeout must be positive"
    );
    Ok(())
}

/// The receiving worker threads (default: the available cores), once both thread counts are
/// checked.
fn worker_threads(opt: &RunOpt) -> anyhow::Result<usize> {
    let threads = opt
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    ensure!((1..=256).contains(&threads), "--threads must be in 1..=256");
    ensure!(
        (1..=256).contains(&opt.publisher_threads),
        "--publisher-threads must be in 1..=256"
    );
    Ok(threads)
}

/// Every `--server-pid` must be a process on this host, and none given twice.
fn check_server_pids(pids: &[u32]) -> anyhow::Result<()> {
    for (i, pid) in pids.iter().enumerate() {
        ensure!(
            std::path::Path::new(&format!("/proc/{pid}/stat")).exists(),
            "--server-pid {pid}: no such process on this host"
        );
        ensure!(
            !pids[..i].contains(pid),
            "--server-pid {pid} given twice (its CPU would be counted twice)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_pid_repeats_and_only_several_are_listed() {
        let me = std::process::id().to_string();
        let url = ["--url", "ws://127.0.0.1:9/ws"];
        let plan = |extra: &[&str]| Plan::from_run_args(&[&url[..], extra].concat());
        let one = plan(&["--server-pid", &me]).unwrap().scenario;
        assert_eq!(one.server_pid, Some(std::process::id()));
        assert!(one.server_pids.is_empty());
        assert_eq!(one.watched_pids(), vec![std::process::id()]);
        let json = serde_json::to_value(&one).unwrap();
        assert!(
            json.get("server_pids").is_none(),
            "single-pid shape unchanged"
        );
        let two = plan(&["--server-pid", &me, "--server-pid", "1"])
            .unwrap()
            .scenario;
        assert_eq!(two.server_pids, vec![std::process::id(), 1]);
        assert_eq!(two.watched_pids(), two.server_pids);
        let comma = plan(&["--server-pid", &format!("{me},1")])
            .unwrap()
            .scenario;
        assert_eq!(comma.server_pids, two.server_pids);
        assert!(plan(&["--server-pid", &me, "--server-pid", &me]).is_err());
        assert!(plan(&[]).unwrap().scenario.watched_pids().is_empty());
    }

    #[test]
    fn churn_and_recover_are_recorded_only_when_given() {
        let url = ["--url", "ws://127.0.0.1:9/ws"];
        let plan = |extra: &[&str]| Plan::from_run_args(&[&url[..], extra].concat());
        let plain = plan(&[]).unwrap().scenario;
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("churn").is_none() && json.get("recover").is_none());
        let churned = plan(&["--churn", "15s:2s", "--recover"]).unwrap().scenario;
        assert_eq!(
            churned.churn,
            Some(ChurnScenario {
                every_s: 15.0,
                downtime_s: 2.0
            })
        );
        assert!(churned.recover);
        let json = serde_json::to_string(&churned).unwrap();
        assert_eq!(serde_json::from_str::<Scenario>(&json).unwrap(), churned);
        assert!(plan(&["--churn", "2s:2s"]).is_err());
        assert!(plan(&["--churn", "1s:100ms", "--subscribers", "0"]).is_err());
    }

    #[test]
    fn payload_and_deflate_are_recorded_only_when_given() {
        let url = ["--url", "ws://127.0.0.1:9/ws"];
        let plan = |extra: &[&str]| Plan::from_run_args(&[&url[..], extra].concat());
        let json = serde_json::to_value(plan(&[]).unwrap().scenario).unwrap();
        assert!(json.get("payload").is_none() && json.get("deflate").is_none());
        let chat = plan(&["--payload", "json", "--size", "1KiB", "--deflate"])
            .unwrap()
            .scenario;
        assert_eq!((chat.payload, chat.deflate), (PayloadKind::Json, true));
        let json = serde_json::to_value(&chat).unwrap();
        assert_eq!(
            (&json["payload"], &json["deflate"]),
            (&"json".into(), &true.into())
        );
        let error = plan(&["--payload", "json"]).err().unwrap().to_string();
        assert!(
            error.contains("--size 64 is too small for --payload json"),
            "{error}"
        );
    }
}
