//! loadgen against a real ringcast server started in this process: counts must balance and
//! latency figures must be positive and ordered; a threshold that cannot hold exits 99.

mod util;

use std::process::Command;

use loadgen::report::Report;
use util::scratch_dir;

/// Starts ringcast on an OS-picked port, with `extra` options.
fn start_server(extra: &[&str]) -> ringcast::Server {
    let args = ["--listen", "127.0.0.1:0", "--cores", "2"];
    let config = ringcast::Config::from_args(args.iter().chain(extra)).expect("valid config");
    ringcast::Server::start(config).expect("server starts")
}

/// Runs `loadgen run --url URL ARGS... --quiet --max-send-lag 1s` (send lag is not what these
/// tests check, and test machines are busy), writing its files to `out`.
fn loadgen_run(url: &str, args: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--url", url, "--quiet", "--max-send-lag", "1s"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("loadgen runs")
}

#[test]
fn two_hundred_subscribers_two_publishers_lose_nothing() {
    let server = start_server(&[]);
    let url = format!("ws://{}/ws/bench", server.local_addr());
    let out = scratch_dir("ringcast");
    let output = loadgen_run(
        &url,
        &[
            "--subscribers",
            "200",
            "--publishers",
            "2",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--drain",
            "1s",
            "--threads",
            "2",
            "--threshold",
            "lost==0",
        ],
        &out,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    assert_eq!(r.connections.ok, 202);
    assert!(
        r.sent_measured >= 380,
        "two publishers x 100/s x 2 s, got {}",
        r.sent_measured
    );
    // Every receiver (publishers included) of the one room gets every measured message.
    assert_eq!(r.expected, r.sent_measured * 202);
    assert_eq!(r.delivered, r.expected);
    assert_eq!((r.lost, r.duplicated), (0, 0));
    let latency = &r.latency_ns;
    assert!(
        latency.p50 > Some(0) && latency.p50 <= latency.p99 && latency.p99 <= latency.max,
        "{latency:?}"
    );
    assert_eq!(latency.count, r.delivered);
    for file in ["latency.hlog", "latency.hgrm", "timeline.csv"] {
        assert!(
            std::fs::metadata(out.join(file))
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "{file} missing"
        );
    }
    // The log's untagged intervals add up to exactly report.json's latency; its latency_all
    // intervals are the timeline's rows.
    let log = loadgen::merge::read_hlog(&out.join("latency.hlog")).expect("log reads back");
    let mut untagged = loadgen::stats::new_histogram();
    let mut every = Vec::new();
    for (tag, _, _, histogram) in &log.intervals {
        match tag.as_deref() {
            None => untagged.add(histogram).unwrap(),
            Some("latency_all") => every.push(histogram.len()),
            _ => {}
        }
    }
    assert_eq!(untagged, report.histogram("latency").unwrap());
    let timeline =
        loadgen::report::csv::parse(&std::fs::read_to_string(out.join("timeline.csv")).unwrap())
            .unwrap();
    let delivered: Vec<u64> = timeline.iter().map(|row| row.delivered).collect();
    assert_eq!(every, delivered);

    let failing = loadgen_run(
        &url,
        &[
            "--subscribers",
            "5",
            "--publishers",
            "1",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--drain",
            "500ms",
            "--threshold",
            "p50<1ns",
        ],
        &scratch_dir("threshold"),
    );
    assert_eq!(
        failing.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&failing.stdout)
    );
    server.shutdown();
}

#[test]
fn stalled_subscribers_closed_by_the_server_are_reported() {
    // A subscriber that stops reading 60 KiB messages at 50/s (3 MB/s) is past the loopback
    // socket buffers (a few MB) and the 512 KiB outbound budget within a few seconds. The
    // budget leaves a healthy receiver room for a few messages while its socket buffers are
    // still small after connect (128 KiB, two messages, closed one now and then on a loaded
    // machine).
    let server = start_server(&["--max-backlog", "512KiB"]);
    let url = format!("ws://{}/ws/stall", server.local_addr());
    let out = scratch_dir("stalled");
    let output = loadgen_run(
        &url,
        &[
            "--subscribers",
            "8",
            "--stalled",
            "50",
            "--publishers",
            "1",
            "--rate",
            "50",
            "--size",
            "60KiB",
            "--duration",
            "5s",
            "--warmup",
            "1s",
            "--drain",
            "3s",
        ],
        &out,
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    assert_eq!(
        (r.stalled.connections, r.stalled.closed_by_server),
        (4, 4),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The other receivers (4 subscribers and the publisher) are not held back by the stalled ones.
    assert_eq!((r.lost, r.expected), (0, r.sent_measured * 5));
    server.shutdown();
}
