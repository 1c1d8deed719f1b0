//! A run in which no connection can succeed stops at once with exit 3 and the reasons, instead
//! of waiting out warm-up, duration and drain.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use loadgen::report::Report;

use crate::util::scratch_dir;

/// Runs loadgen against `url` with a long warm-up and duration, writing into `out`.
fn run_against(url: &str, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            "--url",
            url,
            "--subscribers",
            "20",
            "--publishers",
            "2",
        ])
        .args(["--warmup", "30s", "--duration", "30s", "--drain", "5s"])
        .args(["--connect-timeout", "1s", "--quiet", "--out"])
        .arg(out)
        .output()
        .expect("loadgen runs")
}

/// The run must end before its warm-up: no timeline row past the connecting phase.
fn assert_aborted(output: &Output, out: &Path, reason: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("aborted: no connection succeeded") && stdout.contains(reason),
        "{stdout}"
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_eq!(report.results.connections.ok, 0);
    assert!(!report.results.valid);
    let timeline = std::fs::read_to_string(out.join("timeline.csv")).expect("timeline");
    assert!(
        !timeline.contains("warmup") && !timeline.contains("measure"),
        "{timeline}"
    );
}

#[test]
fn refused_connections_abort_the_run() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = scratch_dir("abort-refused");
    let output = run_against(&format!("ws://127.0.0.1:{port}/ws"), &out);
    assert_aborted(&output, &out, "refused");
}

#[test]
fn handshakes_that_never_answer_abort_the_run() {
    // The kernel completes TCP handshakes into the backlog, but no upgrade is ever answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = silent.local_addr().expect("address");
    let out = scratch_dir("abort-timeout");
    let output = run_against(&format!("ws://{addr}/ws"), &out);
    assert_aborted(&output, &out, "timeout");
    drop(silent);
}
