//! Re-derives the files of runs recorded by an older loadgen (before the HdrHistogram-format
//! fixes) in today's formats, from what those runs recorded:
//!
//! - report.json: histograms re-encoded as compressed V2; figures that are undefined (server
//!   CPU per delivery with nothing delivered, RSS per connection without connections, the
//!   percentiles, max and mean of an empty histogram) null;
//!   `loadgen_cpu.max_second_percent` re-derived from timeline.csv over the rows inside the
//!   window (a row and both its neighbours in the `measure` phase), no longer the connect
//!   phase's; thresholds re-evaluated;
//! - latency.hlog: version line, legend, `Interval_Max` in ms; the every-message `latency` tag
//!   renamed `latency_all`; the untagged (measured) series, which those runs did not record per
//!   second, is the report's measured histogram as one interval spanning the window;
//! - latency.hgrm: rendered again (5 ticks per half distance, SubBuckets 2048).
//!
//!     cargo run -p loadgen --example upgrade_results -- results/DIR...
//!
//! Only runs of that older loadgen are touched: a run whose latency.hlog has the version line
//! and whose report.json holds no uncompressed histogram is left alone, and so is a directory
//! without latency.hlog (not a loadgen run directory as bench.sh records them).

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use loadgen::compare::find_report_files;
use loadgen::merge::read_hlog;
use loadgen::report::hlog::{HlogBuffer, VERSION_LINE};
use loadgen::report::{encode_histogram, hgrm, recheck_thresholds, Report};

fn main() -> anyhow::Result<()> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!dirs.is_empty(), "usage: upgrade_results DIR...");
    for dir in dirs {
        for file in find_report_files(Path::new(&dir))? {
            let run = file.parent().context("report.json has a directory")?;
            if upgrade(run).with_context(|| format!("upgrading {}", run.display()))? {
                println!("upgraded {}", run.display());
            }
        }
    }
    Ok(())
}

/// Upgrades one run directory; false when it was already in today's format.
fn upgrade(run: &Path) -> anyhow::Result<bool> {
    let hlog_path = run.join("latency.hlog");
    let Ok(old_log) = std::fs::read_to_string(&hlog_path) else {
        return Ok(false);
    };
    let old_report = std::fs::read_to_string(run.join("report.json"))?;
    let log_is_current = old_log.lines().any(|l| l == VERSION_LINE);
    if log_is_current && !old_report.contains("HISTEwAA") {
        return Ok(false);
    }
    let mut report = Report::read(&run.join("report.json"))?;
    let timeline = loadgen::report::csv::parse(
        &std::fs::read_to_string(run.join("timeline.csv")).context("reading timeline.csv")?,
    )?;
    let r = &mut report.results;
    for summary in [
        &mut r.latency_ns,
        &mut r.latency_uncorrected_ns,
        &mut r.connect_ns,
        &mut r.send_lag_ns,
    ] {
        if summary.count == 0 {
            *summary = Default::default();
        }
    }
    for text in r.histograms.values_mut() {
        *text = encode_histogram(&loadgen::report::decode_histogram(text)?)?;
    }
    if let Some(server) = &mut r.server {
        if r.delivered == 0 {
            server.cpu_us_per_delivery = None;
            server.cpu_s_per_million_deliveries = None;
        }
        if r.connections.ok == 0 {
            server.rss_per_connection_bytes = None;
        }
    }
    let inside: Vec<f64> = timeline
        .windows(3)
        .filter(|w| w.iter().all(|row| row.phase == "measure"))
        .map(|w| w[1].loadgen_cpu_percent)
        .collect();
    r.loadgen_cpu.max_second_percent = if inside.is_empty() {
        r.loadgen_cpu.window_percent
    } else {
        Some(inside.iter().copied().fold(0.0, f64::max))
    };
    recheck_thresholds(&mut report)?;
    report.write(run)?;
    let report_changed = std::fs::read_to_string(run.join("report.json"))? != old_report;
    if log_is_current {
        return Ok(report_changed);
    }
    let latency = report.histogram("latency")?;
    std::fs::write(run.join("latency.hgrm"), hgrm::render(&latency))?;

    let log = read_hlog(&hlog_path)?;
    // The window: from the start of the first `measure` row's second, measured_seconds long.
    let window_start = timeline
        .iter()
        .find(|row| row.phase == "measure")
        .map_or(0, |row| row.second.saturating_sub(1));
    let mut buffer = HlogBuffer::with_comment(
        UNIX_EPOCH + log.start,
        "Re-derived by loadgen/examples/upgrade_results.rs from a run recorded before loadgen wrote the measured series per second: the untagged interval is report.json's latency histogram, one interval spanning the measured window",
    )?;
    let mut untagged_written = false;
    for (tag, offset, length, histogram) in &log.intervals {
        if !untagged_written && offset.as_secs() >= window_start {
            buffer.push(
                Duration::from_secs(window_start),
                Duration::from_secs_f64(report.results.measured_seconds),
                &[(None, &latency)],
            )?;
            untagged_written = true;
        }
        let tag = match tag.as_deref() {
            Some("latency") => Some("latency_all"),
            other => other,
        };
        buffer.push(*offset, *length, &[(tag, histogram)])?;
    }
    if !untagged_written {
        buffer.push(
            Duration::from_secs(window_start),
            Duration::from_secs_f64(report.results.measured_seconds),
            &[(None, &latency)],
        )?;
    }
    // Those runs left the last timeline row (the close, after the workers stopped) out of the
    // log; when nothing arrived in it, its intervals are known to be empty.
    let logged = log
        .intervals
        .iter()
        .filter(|(tag, ..)| tag.as_deref() == Some("latency"))
        .count();
    if let Some(last) = timeline
        .last()
        .filter(|row| row.delivered == 0 && row.sent == 0)
    {
        if timeline.len() == logged + 1 {
            let empty = loadgen::new_histogram();
            buffer.push(
                Duration::from_secs(last.second - 1),
                Duration::from_secs(1),
                &[
                    (Some("latency_all"), &empty),
                    (Some("latency_uncorrected"), &empty),
                    (Some("send_lag"), &empty),
                ],
            )?;
        }
    }
    buffer.save(&hlog_path)?;
    Ok(true)
}
