//! Report files: JSON round trip, the .hlog read back with hdrhistogram's interval-log reader,
//! `compare` on made-up reports (changes and exit codes) and `merge` adding histograms.

use std::process::Command;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use loadgen::new_histogram;
use loadgen::report::hlog::HlogBuffer;
use loadgen::report::Report;

use crate::util::{made_up_report, scratch_dir, with_nodes};

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
        report.results.latency_ns.p50.unwrap()
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
            &[(None, &first), (Some("send_lag"), &second)],
        )
        .unwrap();
    buffer
        .push(
            Duration::from_secs(1),
            Duration::from_secs(1),
            &[(None, &second)],
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
    assert_eq!(intervals[0].0.as_deref(), None);
    assert_eq!(intervals[0].2, 1);
    assert_eq!(intervals[1].0.as_deref(), Some("send_lag"));
    assert_eq!(intervals[1].2, 3);
    assert_eq!(intervals[2].1, Duration::from_secs(1));
    assert!(intervals[2].3 >= 4_000);
    // The header HdrHistogram's writers put first, and Interval_Max in ms (max / 1e6).
    let text = String::from_utf8_lossy(buffer.as_bytes());
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"#[Histogram log format version 1.3]"),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("#[StartTime: ")));
    assert!(lines.iter().any(|l| l.starts_with("#[BaseTime: ")));
    let legend = lines
        .iter()
        .position(|l| {
            *l == "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        })
        .expect("legend line");
    let first_interval = lines.iter().position(|l| !l.starts_with('#')).unwrap();
    assert_eq!(first_interval, legend, "the legend ends the header");
    let interval = lines[legend + 1];
    assert!(
        interval.starts_with("0.000,1.000,0.001,HISTFAAA"),
        "{interval}"
    );
    assert_eq!(
        text.matches("MaxValueDivisor").count(),
        1,
        "one divisor line: {text}"
    );
}

#[test]
fn report_histograms_are_compressed_v2() {
    let report = made_up_report(2_000_000, 5000.0);
    let encoded = &report.results.histograms["latency"];
    assert!(encoded.starts_with("HISTFAAA"), "{encoded}");
    assert_eq!(report.histogram("latency").unwrap().len(), 1000);
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
        merged.results.latency_ns.p50.unwrap() < 2_100_000,
        "{:?}",
        merged.results.latency_ns.p50
    );
    assert!(merged.results.latency_ns.max.unwrap() >= 199_000_000);
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

/// Writes `reports` as DIR/<scenario>/run-<i>/report.json, as scripts/bench.sh lays them out.
fn scenario_runs(name: &str, scenarios: &[(&str, Vec<Report>)]) -> std::path::PathBuf {
    let dir = scratch_dir(name);
    for (scenario, reports) in scenarios {
        for (i, report) in reports.iter().enumerate() {
            let run = dir.join(scenario).join(format!("run-{}", i + 1));
            std::fs::create_dir_all(&run).unwrap();
            report.write(&run).unwrap();
        }
    }
    dir
}

/// A made-up report of a scenario with `subscribers` subscribers.
fn sized(latency_ns: u64, subscribers: u64) -> Report {
    let mut report = made_up_report(latency_ns, 10_000.0);
    report.scenario.subscribers = subscribers;
    report
}

#[test]
fn compare_matches_scenarios_by_name_one_table_each() {
    let base = scenario_runs(
        "cmp-multi-base",
        &[
            ("chat", vec![sized(1_000_000, 10), sized(1_000_000, 10)]),
            ("fanout", vec![sized(50_000_000, 99), sized(50_000_000, 99)]),
        ],
    );
    let new = scenario_runs(
        "cmp-multi-new",
        &[
            ("chat", vec![sized(1_000_000, 10), sized(1_000_000, 10)]),
            (
                "fanout",
                vec![sized(100_000_000, 99), sized(100_000_000, 99)],
            ),
        ],
    );
    let output = loadgen()
        .arg("compare")
        .arg(&base)
        .arg(&new)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let chat = text.find("== chat ==").expect(&text);
    let fanout = text.find("== fanout ==").expect(&text);
    assert!(chat < fanout, "{text}");
    let p50_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("latency p50"))
        .collect();
    assert_eq!(p50_lines.len(), 2, "{text}");
    // Each table holds its own scenario's runs: chat unchanged, fanout twice as slow.
    assert!(p50_lines[0].contains("+0.0%"), "{}", p50_lines[0]);
    assert!(p50_lines[1].contains("+100.0%"), "{}", p50_lines[1]);

    let markdown = loadgen()
        .arg("compare")
        .arg(&base)
        .arg(&new)
        .args(["--format", "markdown", "--fail-if-worse", "10"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&markdown.stdout);
    assert_eq!(markdown.status.code(), Some(99), "{table}");
    assert!(
        table.contains("### chat\n\n| metric |") && table.contains("### fanout\n\n| metric |"),
        "{table}"
    );
    assert!(String::from_utf8_lossy(&markdown.stderr).contains("regression: fanout: p50"));
}

#[test]
fn compare_refuses_different_scenarios_unless_pooled() {
    let base = scenario_runs(
        "cmp-diff-base",
        &[
            ("chat", vec![sized(1_000_000, 10)]),
            ("large", vec![sized(2_000_000, 20)]),
        ],
    );
    let new = scenario_runs(
        "cmp-diff-new",
        &[
            ("chat", vec![sized(1_000_000, 10)]),
            ("storm", vec![sized(3_000_000, 30)]),
        ],
    );
    for format in ["text", "markdown"] {
        let refused = loadgen()
            .arg("compare")
            .arg(&base)
            .arg(&new)
            .args(["--format", format])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("only in BASE: large") && stderr.contains("only in NEW: storm"),
            "{stderr}"
        );
        assert!(refused.stdout.is_empty());
    }
    let pooled = loadgen()
        .arg("compare")
        .arg(&base)
        .arg(&new)
        .arg("--pool")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&pooled.stdout);
    assert_eq!(pooled.status.code(), Some(0), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("latency p50"))
            .count(),
        1
    );
    assert!(String::from_utf8_lossy(&pooled.stderr).contains("--pool"));

    // One scenario each, named alike by their directories but of different load: refused too.
    let small = runs("cmp-load-small", &[sized(1_000_000, 10)]);
    let big = runs("cmp-load-big", &[sized(1_000_000, 5000)]);
    let refused = loadgen()
        .arg("compare")
        .arg(&small)
        .arg(&big)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("subscribers=10 vs 5000"), "{stderr}");
}

#[test]
fn merge_writes_a_time_aligned_log_and_timeline_and_keeps_each_server() {
    use loadgen::report::csv::{self, TimelineRow};
    use loadgen::report::ServerResults;
    let inputs = scratch_dir("merge-files-in");
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for (part, (offset_s, pid, latency_ns)) in [(0u64, 11u32, 1_000u64), (2, 22, 9_000)]
        .into_iter()
        .enumerate()
    {
        let dir = inputs.join(format!("host-{part}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut report = made_up_report(1_000_000, 1000.0);
        report.environment.started_unix_s = 1_800_000_000.0 + offset_s as f64;
        report.results.server = Some(ServerResults {
            pid,
            pids: Vec::new(),
            processes: Vec::new(),
            cpu_seconds: 1.0,
            cpu_us_per_delivery: Some(1000.0),
            cpu_s_per_million_deliveries: Some(1000.0),
            cpu_user_seconds: Some(0.25),
            user_us_per_delivery: Some(250.0),
            rss_before_connect_bytes: 1,
            rss_connected_bytes: 2,
            rss_peak_bytes: 3,
            rss_per_connection_bytes: Some(0.1),
        });
        report.write(&dir).unwrap();
        let mut log = HlogBuffer::new(start + Duration::from_secs(offset_s)).unwrap();
        let mut rows = Vec::new();
        for second in 1..=3u64 {
            let mut h = new_histogram();
            h.saturating_record(latency_ns * second);
            log.push(
                Duration::from_secs(second - 1),
                Duration::from_secs(1),
                &[(None, &h), (Some("latency_all"), &h)],
            )
            .unwrap();
            rows.push(TimelineRow {
                second,
                phase: "measure".into(),
                connections_open: 5,
                sent: 1,
                delivered: 10 * second,
                delivered_bytes: 640 * second,
                latency_p50_ns: latency_ns * second,
                latency_p99_ns: latency_ns * second,
                latency_max_ns: latency_ns * second,
                send_lag_p99_ns: 0,
                errors: 0,
                loadgen_cpu_percent: 1.5,
            });
        }
        log.save(&dir.join("latency.hlog")).unwrap();
        std::fs::write(dir.join("timeline.csv"), csv::render(&rows)).unwrap();
    }
    let out = scratch_dir("merge-files-out");
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
    let pids: Vec<u32> = merged
        .results
        .servers
        .iter()
        .map(|s| s.as_ref().unwrap().pid)
        .collect();
    assert_eq!(pids, vec![11, 22], "each process's server figures kept");
    assert!(
        merged.results.server.is_none(),
        "two servers: no single figure"
    );

    // Log: host-1 started 2 s later, so its seconds 0..3 are slots 2..5.
    let text = std::fs::read(out.join("latency.hlog")).unwrap();
    assert!(String::from_utf8_lossy(&text).contains("#[Histogram log format version 1.3]"));
    let mut untagged = Vec::new();
    for entry in IntervalLogIterator::new(&text) {
        if let LogEntry::Interval(interval) = entry.unwrap() {
            if interval.tag().is_none() {
                let h = loadgen::report::decode_histogram(interval.encoded_histogram()).unwrap();
                untagged.push((interval.start_timestamp().as_secs(), h.len()));
            }
        }
    }
    assert_eq!(untagged, vec![(0, 1), (1, 1), (2, 2), (3, 1), (4, 1)]);

    let rows = csv::parse(&std::fs::read_to_string(out.join("timeline.csv")).unwrap()).unwrap();
    let delivered: Vec<(u64, u64)> = rows.iter().map(|r| (r.second, r.delivered)).collect();
    assert_eq!(
        delivered,
        vec![(1, 10), (2, 20), (3, 30 + 10), (4, 20), (5, 30)]
    );
    assert_eq!(rows[2].connections_open, 10);
    assert_eq!(rows[2].loadgen_cpu_percent, 3.0);
    // Second 3 holds host-0's 3 us and host-1's 9 us: the max of the union, from the log.
    assert!(rows[2].latency_max_ns >= 9_000 && rows[2].latency_max_ns < 9_100);
}

#[test]
fn undefined_figures_are_null_and_thresholds_on_them_fail_as_not_measured() {
    use loadgen::report::{check_threshold, ServerResults};
    use loadgen::Threshold;
    let mut report = made_up_report(1_000_000, 0.0);
    report.results.delivered = 0;
    report.results.server = Some(ServerResults {
        pid: 1,
        pids: Vec::new(),
        processes: Vec::new(),
        cpu_seconds: 0.5,
        cpu_us_per_delivery: None,
        cpu_s_per_million_deliveries: None,
        cpu_user_seconds: Some(0.1),
        user_us_per_delivery: None,
        rss_before_connect_bytes: 1,
        rss_connected_bytes: 2,
        rss_peak_bytes: 3,
        rss_per_connection_bytes: None,
    });
    let threshold = Threshold::parse("server_cpu_us_per_delivery<100").unwrap();
    let outcome = check_threshold(&threshold, &report.results);
    assert_eq!((outcome.actual, outcome.passed), (None, false));
    let dir = scratch_dir("nulls");
    report.write(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(text.contains("\"cpu_us_per_delivery\": null"), "{text}");
    assert_eq!(Report::read(&dir.join("report.json")).unwrap(), report);
    // Latency metrics of a run that measured no message are not measured either.
    report.results.latency_ns = loadgen::report::HistogramSummary::default();
    let p99 = Threshold::parse("p99<1s").unwrap();
    let outcome = check_threshold(&p99, &report.results);
    assert_eq!((outcome.actual, outcome.passed), (None, false));
}

#[test]
fn nodes_section_round_trips_merges_compares_and_prints() {
    // One URL: no `nodes` key at all, as before the section existed.
    let single = made_up_report(1_000_000, 1000.0);
    let text = serde_json::to_string(&single).unwrap();
    assert!(!text.contains("nodes") && !text.contains("_node"), "{text}");
    assert!(!loadgen::report::summary::render(&single).contains("same-node"));

    let a = with_nodes(
        made_up_report(1_000_000, 1000.0),
        (900, 1_000_000),
        (100, 9_000_000, 100),
    );
    let b = with_nodes(
        made_up_report(1_000_000, 1000.0),
        (800, 2_000_000),
        (150, 30_000_000, 200),
    );
    let dir = scratch_dir("nodes-roundtrip");
    a.write(&dir).unwrap();
    assert_eq!(Report::read(&dir.join("report.json")).unwrap(), a);

    let merged = loadgen::merge::merge(&[a.clone(), b.clone()]).unwrap();
    let nodes = merged
        .results
        .nodes
        .as_ref()
        .expect("both parts have nodes");
    let (same, cross) = (&nodes.same_node, &nodes.cross_node);
    assert_eq!((same.expected, same.delivered, same.lost), (1700, 1700, 0));
    assert_eq!(
        (cross.expected, cross.delivered, cross.lost),
        (300, 250, 50)
    );
    assert_eq!((same.latency_ns.count, cross.latency_ns.count), (1700, 250));
    // Percentiles of the added histograms: 150 of the 250 cross-node deliveries took 30 ms.
    assert!(cross.latency_ns.p50.unwrap() >= 29_000_000, "{cross:?}");
    assert_eq!(merged.histogram("latency_cross_node").unwrap().len(), 250);
    let urls: Vec<(u64, u64, u64)> = nodes
        .urls
        .iter()
        .map(|u| (u.target, u.publishers, u.ok))
        .collect();
    assert_eq!(urls, vec![(10, 2, 10), (10, 2, 10)]);

    // A part with one URL cannot be split: the merged report has no section.
    let mixed = loadgen::merge::merge(&[a.clone(), single.clone()]).unwrap();
    assert_eq!(mixed.results.nodes, None);
    assert!(!mixed.results.histograms.contains_key("latency_same_node"));
    assert_eq!(mixed.results.delivered, 2000);
    let mixed = loadgen::merge::merge(&[single.clone(), a.clone()]).unwrap();
    assert_eq!(mixed.results.nodes, None);

    // compare: node metrics when both sides have them, skipped with a warning otherwise.
    let metrics = |base: &Report, new: &Report| -> Vec<&'static str> {
        loadgen::compare::changes(std::slice::from_ref(base), std::slice::from_ref(new))
            .iter()
            .map(|c| c.metric)
            .collect()
    };
    let both = metrics(&a, &b);
    assert!(both.contains(&"cross_node_p99") && both.contains(&"same_node_lost"));
    let one = metrics(&single, &a);
    assert!(one.contains(&"p99") && !one.iter().any(|m| m.contains("_node")));
    let warnings =
        loadgen::compare::warnings(std::slice::from_ref(&single), std::slice::from_ref(&a));
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("nodes differ: 1 URL(s) -> 2 URL(s)")),
        "{warnings:?}"
    );

    let summary = loadgen::report::summary::render(&merged);
    assert!(
        summary.contains(
            "node 0                 ws://127.0.0.1:1/ws  connections ok 10/10 (publishers 2)"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("cross-node             delivered 250 of expected 300  lost 50"),
        "{summary}"
    );
    assert!(
        summary.contains("cross-node latency     p50 30.0ms"),
        "{summary}"
    );
    assert!(!summary.contains("none expected"), "{summary}");
    let no_cross = with_nodes(made_up_report(1_000_000, 1000.0), (10, 1_000), (0, 1, 0));
    let summary = loadgen::report::summary::render(&no_cross);
    assert!(
        summary.contains("cross-node             delivered 0 of expected 0  lost 0")
            && summary.contains("cross-node             none expected"),
        "{summary}"
    );
}

#[test]
fn wire_sections_merge_into_summed_bytes_and_recomputed_ratios() {
    use loadgen::report::WireResults;
    let with_wire = |deflate_connections, payload_bytes, wire_bytes| {
        let mut report = made_up_report(2_000_000, 1000.0);
        report.results.wire = Some(WireResults::of(
            true,
            deflate_connections,
            payload_bytes,
            wire_bytes,
            report.results.delivered,
        ));
        report
    };
    // 1,000 deliveries each: 1 KiB payloads, 500 and 300 wire bytes apiece.
    let a = with_wire(11, 1_024_000, 500_000);
    let b = with_wire(5, 1_024_000, 300_000);
    let merged = loadgen::merge::merge(&[a.clone(), b]).unwrap();
    let wire = merged.results.wire.expect("both parts have one");
    assert_eq!(wire.deflate_connections, 16);
    assert_eq!((wire.payload_bytes, wire.wire_bytes), (2_048_000, 800_000));
    assert_eq!(wire.wire_bytes_per_delivery, Some(400.0));
    assert_eq!(wire.compression_ratio, Some(2.56));
    // A part made before the section existed: the merge cannot tell, so it has none.
    let old = made_up_report(2_000_000, 1000.0);
    assert!(loadgen::merge::merge(&[a, old])
        .unwrap()
        .results
        .wire
        .is_none());
}
