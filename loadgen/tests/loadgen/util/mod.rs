//! Shared helpers of the loadgen integration tests: made-up reports, scratch directories, a
//! ringcast to run against (over TLS: `tls`).

pub mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;

use loadgen::report::{
    self, encode_histogram, HistogramSummary, NodeClassResults, NodeResults, Report, Results,
    UrlConnections,
};
use loadgen::{new_histogram, Scenario};

/// A fresh scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Starts ringcast on an OS-picked port, with `extra` options.
pub fn start_ringcast(extra: &[&str]) -> ringcast::Server {
    let args = ["--listen", "127.0.0.1:0", "--cores", "2"];
    let config = ringcast::Config::from_args(args.iter().chain(extra)).expect("valid config");
    ringcast::Server::start(config).expect("server starts")
}

/// A plausible report whose latency values are spread around `latency_ns`.
pub fn made_up_report(latency_ns: u64, delivered_per_sec: f64) -> Report {
    let mut latency = new_histogram();
    for i in 0..1000u64 {
        latency.saturating_record(latency_ns + i * latency_ns / 1000);
    }
    let mut histograms = BTreeMap::new();
    histograms.insert(
        "latency".to_string(),
        encode_histogram(&latency).expect("encode"),
    );
    Report {
        schema: report::SCHEMA.to_string(),
        scenario: Scenario {
            urls: vec!["ws://127.0.0.1:1/ws".into()],
            subscribers: 10,
            publishers: 1,
            rate: 10.0,
            size: 64,
            payload: Default::default(),
            deflate: false,
            duration_s: 1.0,
            warmup_s: 0.0,
            rooms: 1,
            connect_rate: 0.0,
            connect_timeout_s: 1.0,
            threads: 1,
            publisher_threads: 1,
            src: Vec::new(),
            drain_s: 0.0,
            stalled_percent: 0.0,
            server_pid: None,
            server_pids: Vec::new(),
            max_send_lag_s: 0.005,
            thresholds: Vec::new(),
            churn: None,
            recover: false,
            tls_ca: None,
            tls_insecure: false,
        },
        environment: report::environment(),
        results: Results {
            valid: true,
            invalid_reasons: Vec::new(),
            connections: Default::default(),
            sent: 10,
            sent_measured: 10,
            expected: 1000,
            delivered: 1000,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            delivery_rate: Some(1.0),
            foreign: 0,
            delivered_per_sec,
            delivered_mb_per_sec: delivered_per_sec * 64.0 / 1e6,
            measured_seconds: 1.0,
            latency_ns: HistogramSummary::of(&latency),
            latency_uncorrected_ns: HistogramSummary::of(&latency),
            connect_ns: HistogramSummary::default(),
            connect_steps: None,
            send_lag_ns: HistogramSummary::default(),
            stalled: Default::default(),
            protocol_errors: 0,
            publishers_with_loss: Vec::new(),
            loadgen_cpu: Default::default(),
            server: None,
            servers: Vec::new(),
            nodes: None,
            churn: None,
            wire: None,
            thresholds: Vec::new(),
            histograms,
        },
    }
}

/// `report` as a two-URL run: `same` same-node deliveries at `same_ns`, `cross` cross-node ones
/// at `cross_ns`, `cross_expected` cross-node deliveries expected; the totals made to match.
pub fn with_nodes(
    mut report: Report,
    (same, same_ns): (u64, u64),
    (cross, cross_ns, cross_expected): (u64, u64, u64),
) -> Report {
    let histogram = |count: u64, ns: u64| {
        let mut h = new_histogram();
        h.saturating_record_n(ns, count);
        h
    };
    let (same_h, cross_h) = (histogram(same, same_ns), histogram(cross, cross_ns));
    let mut latency = same_h.clone();
    latency.add(&cross_h).expect("same bounds");
    let r = &mut report.results;
    report.scenario.urls = vec!["ws://127.0.0.1:1/ws".into(), "ws://127.0.0.1:2/ws".into()];
    r.delivered = same + cross;
    r.expected = same + cross_expected;
    r.lost = cross_expected - cross;
    r.latency_ns = HistogramSummary::of(&latency);
    let class =
        |expected: u64, delivered: u64, h: &hdrhistogram::Histogram<u64>| NodeClassResults {
            expected,
            delivered,
            lost: expected - delivered,
            latency_ns: HistogramSummary::of(h),
        };
    r.nodes = Some(NodeResults {
        urls: report
            .scenario
            .urls
            .iter()
            .map(|url| UrlConnections {
                url: url.clone(),
                target: 5,
                publishers: 1,
                ok: 5,
            })
            .collect(),
        same_node: class(same, same, &same_h),
        cross_node: class(cross_expected, cross, &cross_h),
    });
    for (name, h) in [
        ("latency", &latency),
        ("latency_same_node", &same_h),
        ("latency_cross_node", &cross_h),
    ] {
        r.histograms
            .insert(name.to_string(), encode_histogram(h).expect("encode"));
    }
    report
}

/// Runs `loadgen run --url URL ARGS... --quiet --max-send-lag 1s` (send lag is not what these
/// tests check, and test machines are busy), writing its files to `out`.
pub fn loadgen_run(url: &str, args: &[&str], out: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--url", url, "--quiet", "--max-send-lag", "1s"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("loadgen runs")
}
