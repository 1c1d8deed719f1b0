//! loadgen over `wss://`: against ringcast's own TLS (`--tls-cert`, `--tls-key`), with
//! the test CA trusted, with the wrong one, and with verification off; and the usage error of
//! TLS options on a plain URL.

use std::process::Output;

use loadgen::report::Report;

use crate::util::tls::{start_tls_ringcast, tls_files};
use crate::util::{loadgen_run, scratch_dir};

/// A short run of 20 subscribers and 2 publishers at 50/s that must lose nothing (its
/// `--duration` given with it).
const SHORT_RUN: &[&str] = &[
    "--subscribers",
    "20",
    "--publishers",
    "2",
    "--rate",
    "50",
    "--warmup",
    "500ms",
    "--drain",
    "500ms",
    "--threads",
    "2",
    "--connect-timeout",
    "5s",
    "--threshold",
    "lost==0",
];

/// `loadgen run` of `SHORT_RUN` plus `extra` against `url`; its output and report.
fn short_run(name: &str, url: &str, extra: &[&str]) -> (Output, Report) {
    let out = scratch_dir(name);
    let args: Vec<&str> = SHORT_RUN.iter().chain(extra).copied().collect();
    let output = loadgen_run(url, &args, &out);
    let report = Report::read(&out.join("report.json")).unwrap_or_else(|error| {
        panic!(
            "{error:#}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

/// Exit 0, every expected delivery delivered, every connection through its TLS handshake.
fn assert_delivered_over_tls(output: &Output, report: &Report) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let r = &report.results;
    assert_eq!(r.connections.ok, 22, "{stdout}");
    assert!(r.sent_measured > 0);
    assert_eq!((r.delivered, r.lost), (r.sent_measured * 22, 0));
    let steps = r.connect_steps.expect("connect steps reported");
    let tls = steps.tls_handshake_ns.expect("TLS handshake times");
    assert_eq!(tls.count, 22);
    assert!(tls.p50 > Some(0) && tls.p50 <= tls.max, "{tls:?}");
    assert_eq!((steps.tcp_ns.count, steps.upgrade_ns.count), (22, 22));
    assert!(stdout.contains("TLS handshake"), "{stdout}");
}

#[test]
fn wss_with_the_test_ca_delivers_everything() {
    let files = tls_files(&scratch_dir("tls-ca-files"));
    let ringcast = start_tls_ringcast(&files);
    // By name: the certificate is checked against the host of the URL.
    let url = format!("wss://localhost:{}/ws/tls", ringcast.local_addr().port());
    let ca = files.ca.to_str().unwrap();
    let (output, report) = short_run("tls-ca", &url, &["--tls-ca", ca, "--duration", "1s"]);
    assert_delivered_over_tls(&output, &report);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("WARNING"));
    assert_eq!(report.scenario.tls_ca.as_deref(), Some(files.ca.as_path()));
    // Subscribers reconnecting under --churn make a new handshake every time.
    let (output, report) = short_run(
        "tls-churn",
        &url,
        &["--tls-ca", ca, "--churn", "400ms:100ms", "--duration", "2s"],
    );
    let churn = report.results.churn.expect("churn section");
    assert!(
        churn.left > 0 && churn.reconnected == churn.left && churn.reconnect_failed == 0,
        "{churn:?}\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    ringcast.shutdown();
}

#[test]
fn a_certificate_from_another_ca_fails_every_connection_with_the_reason() {
    let files = tls_files(&scratch_dir("tls-wrong-files"));
    let other = tls_files(&scratch_dir("tls-wrong-other"));
    let ringcast = start_tls_ringcast(&files);
    let url = format!("wss://127.0.0.1:{}/ws/tls", ringcast.local_addr().port());
    let (output, report) = short_run(
        "tls-wrong",
        &url,
        &["--tls-ca", other.ca.to_str().unwrap(), "--duration", "1s"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    let connections = &report.results.connections;
    assert_eq!(
        (connections.ok, connections.failures.get("tls")),
        (0, Some(&22)),
        "{stdout}"
    );
    let reasons = report.results.invalid_reasons.join("; ");
    assert!(
        reasons.contains("tls (invalid peer certificate")
            && reasons.contains("only the one --tls-ca names"),
        "{reasons}"
    );
    ringcast.shutdown();
}

#[test]
fn tls_insecure_connects_to_any_certificate_and_says_so() {
    let files = tls_files(&scratch_dir("tls-insecure-files"));
    let ringcast = start_tls_ringcast(&files);
    // No CA trusted (no --tls-ca): only --tls-insecure lets the certificate through.
    let url = format!("wss://{}/ws/tls", ringcast.local_addr());
    let (output, report) = short_run(
        "tls-insecure",
        &url,
        &["--tls-insecure", "--duration", "1s"],
    );
    assert_delivered_over_tls(&output, &report);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("WARNING: --tls-insecure"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(report.scenario.tls_insecure);
    ringcast.shutdown();
}

#[test]
fn tls_options_on_a_plain_url_are_a_usage_error() {
    let output = loadgen_run(
        "ws://127.0.0.1:9/ws",
        &["--tls-ca", "/nonexistent/ca.pem"],
        &scratch_dir("tls-usage"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("wss://"), "{stderr}");
}
