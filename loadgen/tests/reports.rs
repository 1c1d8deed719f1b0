//! Report files: JSON round trip, the .hlog read back with hdrhistogram's interval-log reader,
//! `compare` on made-up reports (changes and exit codes) and `merge` adding histograms.

mod util;

use std::process::Command;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use loadgen::report::hlog::HlogBuffer;
use loadgen::report::Report;
use loadgen::stats::new_histogram;
use util::{made_up_report, scratch_dir};

#[test]
fn report_json_round_trips() {
    let dir = scratch_dir("roundtrip");
    let report = made_up_report(2_000_000, 5000.0);
    report.write(&dir).unwrap();
    let back = Report::read(&dir.join("report.json")).unwrap();
    assert_eq!(back, report);
    let latency = back.histogram("latency").unwrap();
    assert_eq!(latency.len(), 1000);
    assert_eq!(
        latency.value_at_quantile(0.5),
        report.results.latency_ns.p50
    );
}

#[test]
fn hlog_reads_back_with_the_interval_log_iterator() {
    let mut buffer = HlogBuffer::new(SystemTime::now()).unwrap();
    let mut first = new_histogram();
    first.saturating_record(1_000);
    let mut second = new_histogram();
    for v in [2_000u64, 3_000, 4_000] {
        second.saturating_record(v);
    }
    buffer
        .push(
            Duration::from_secs(0),
            Duration::from_secs(1),
            &[("latency", &first), ("send_lag", &second)],
        )
        .unwrap();
    buffer
        .push(
            Duration::from_secs(1),
            Duration::from_secs(1),
            &[("latency", &second)],
        )
        .unwrap();
    let mut intervals = Vec::new();
    for entry in IntervalLogIterator::new(buffer.as_bytes()) {
        if let LogEntry::Interval(interval) = entry.expect("well-formed log") {
            let decoded = base64_decode(interval.encoded_histogram());
            let histogram: Histogram<u64> = Deserializer::new()
                .deserialize(&mut decoded.as_slice())
                .unwrap();
            intervals.push((
                interval.tag().map(|t| t.as_str().to_string()),
                interval.start_timestamp(),
                histogram.len(),
                histogram.max(),
            ));
        }
    }
    assert_eq!(intervals.len(), 3);
    assert_eq!(intervals[0].0.as_deref(), Some("latency"));
    assert_eq!(intervals[0].2, 1);
    assert_eq!(intervals[1].0.as_deref(), Some("send_lag"));
    assert_eq!(intervals[1].2, 3);
    assert_eq!(intervals[2].1, Duration::from_secs(1));
    assert!(intervals[2].3 >= 4_000);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

/// Writes `reports` as run directories under a new scratch dir.
fn runs(name: &str, reports: &[Report]) -> std::path::PathBuf {
    let dir = scratch_dir(name);
    for (i, report) in reports.iter().enumerate() {
        let run = dir.join(format!("run{i}"));
        std::fs::create_dir_all(&run).unwrap();
        report.write(&run).unwrap();
    }
    dir
}

#[test]
fn compare_reports_changes_and_fails_on_a_regression() {
    let base = runs(
        "cmp-base",
        &[
            made_up_report(1_000_000, 10_000.0),
            made_up_report(1_010_000, 10_100.0),
            made_up_report(990_000, 9_900.0),
        ],
    );
    let slower = runs(
        "cmp-slow",
        &[
            made_up_report(2_000_000, 10_000.0),
            made_up_report(2_020_000, 10_050.0),
            made_up_report(1_980_000, 9_950.0),
        ],
    );
    let output = loadgen()
        .args(["compare"])
        .arg(&base)
        .arg(&slower)
        .args(["--fail-if-worse", "10"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(99), "{text}");
    let p50_line = text
        .lines()
        .find(|l| l.starts_with("latency p50"))
        .expect(&text);
    assert!(
        p50_line.contains("+100.0%") && p50_line.contains("worse"),
        "{p50_line}"
    );
    // Times print in human units with 3 significant digits: p50 ~1.50 ms -> ~3.00 ms.
    assert!(
        p50_line.contains("1.50ms") && p50_line.contains("3.00ms"),
        "{p50_line}"
    );
    let rate_line = text
        .lines()
        .find(|l| l.starts_with("deliveries per second"))
        .expect(&text);
    assert!(rate_line.contains('~'), "{rate_line}");

    let same = loadgen()
        .args(["compare"])
        .arg(&base)
        .arg(&base)
        .args(["--fail-if-worse", "10"])
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(0));

    let single = runs("cmp-single", &[made_up_report(1_000_000, 10_000.0)]);
    let markdown = loadgen()
        .args(["compare"])
        .arg(single.join("run0/report.json"))
        .arg(&slower)
        .args(["--format", "markdown"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&markdown.stdout);
    assert_eq!(markdown.status.code(), Some(0));
    assert!(
        table.contains("| latency p50 | 1.50ms | 3.00ms |") && table.contains("| ? |"),
        "{table}"
    );
}

#[test]
fn merge_adds_histograms_and_counters() {
    let inputs = runs(
        "merge-in",
        &[
            made_up_report(1_000_000, 1000.0),
            made_up_report(100_000_000, 3000.0),
        ],
    );
    let out = scratch_dir("merge-out");
    let status = loadgen()
        .args(["merge", "--out"])
        .arg(&out)
        .arg(&inputs)
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let merged = Report::read(&out.join("report.json")).unwrap();
    assert_eq!(merged.results.latency_ns.count, 2000);
    assert_eq!(merged.results.delivered, 2000);
    assert_eq!(merged.results.delivered_per_sec, 4000.0);
    // The median of the union lies at the top of the fast half, not at an average of medians.
    assert!(
        merged.results.latency_ns.p50 < 2_100_000,
        "{}",
        merged.results.latency_ns.p50
    );
    assert!(merged.results.latency_ns.max >= 199_000_000);
    assert!(out.join("latency.hgrm").exists());
}

#[test]
fn bad_flags_are_usage_errors() {
    let small = loadgen()
        .args(["run", "--url", "ws://127.0.0.1:9/ws", "--size", "8"])
        .output()
        .unwrap();
    assert_eq!(small.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&small.stderr).contains("smaller than the 40-byte stamp"));
    let threshold = loadgen()
        .args([
            "run",
            "--url",
            "ws://127.0.0.1:9/ws",
            "--threshold",
            "p42<1ms",
        ])
        .output()
        .unwrap();
    assert_eq!(threshold.status.code(), Some(2));
    let unknown = loadgen().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let fds = loadgen()
        .args([
            "run",
            "--url",
            "ws://127.0.0.1:9/ws",
            "--subscribers",
            "10000000",
        ])
        .output()
        .unwrap();
    assert_eq!(fds.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fds.stderr).contains("file descriptors"));
}
