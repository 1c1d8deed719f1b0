//! `loadgen merge`: one report from the reports of several loadgen processes of one run.
//! Histograms are added and percentiles recomputed from them (never averaged); counters and
//! rates are summed; the run is valid only if every part was. Each process's server figures
//! are kept (`results.servers`); the parts' latency.hlog and timeline.csv files (beside their
//! report.json) are merged with their intervals and rows aligned by wall-clock time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::Histogram;

use super::compare::find_report_files;
use crate::plan::MergeOpt;
use crate::report::csv::TimelineRow;
use crate::report::hlog::HlogBuffer;
use crate::report::{
    decode_histogram, encode_histogram, recheck_thresholds, ChurnResults, ConnectStepResults,
    HistogramSummary, NodeResults, Report, WireResults, CONNECT_STEP_HISTOGRAMS,
    FIRST_REPLAY_HISTOGRAM, NODE_HISTOGRAMS,
};
use crate::stats::{add_histogram, new_histogram};

/// Adds two optional figures; undefined when either is.
fn add_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

/// Merges `parts` into one report.
pub fn merge(parts: &[Report]) -> anyhow::Result<Report> {
    let Some(first) = parts.first() else {
        bail!("nothing to merge");
    };
    let mut merged = first.clone();
    for part in &parts[1..] {
        add_part(&mut merged, part);
    }
    let results = &mut merged.results;
    // Every process's own server figures, in input order (a merged input brings its list).
    results.servers = parts
        .iter()
        .flat_map(|part| {
            if part.results.servers.is_empty() {
                vec![part.results.server.clone()]
            } else {
                part.results.servers.clone()
            }
        })
        .collect();
    results.server = combined_server(parts, results.delivered);
    let mut histograms = BTreeMap::new();
    for name in first.results.histograms.keys() {
        if NODE_HISTOGRAMS.contains(&name.as_str()) || name == FIRST_REPLAY_HISTOGRAM {
            // Added by `merge_nodes` / `merge_churn`, only when every part has them.
            continue;
        }
        histograms.insert(name.clone(), sum_histogram(parts, name)?);
    }
    let summary = |name: &str| {
        histograms
            .get(name)
            .map(HistogramSummary::of)
            .unwrap_or_default()
    };
    results.latency_ns = summary("latency");
    results.latency_uncorrected_ns = summary("latency_uncorrected");
    results.connect_ns = summary("connect");
    results.connect_steps = merge_connect_steps(&histograms);
    results.send_lag_ns = summary("send_lag");
    results.nodes = merge_nodes(parts, &mut histograms)?;
    results.churn = merge_churn(parts, &mut histograms)?;
    results.wire = merge_wire(parts, results.delivered);
    results.delivery_rate =
        (results.expected > 0).then(|| results.delivered as f64 / results.expected as f64);
    results.histograms = histograms
        .iter()
        .map(|(name, h)| Ok((name.clone(), encode_histogram(h)?)))
        .collect::<anyhow::Result<_>>()?;
    recheck_thresholds(&mut merged)?;
    Ok(merged)
}

/// The connect steps from their summed histograms, when every part had them.
fn merge_connect_steps(
    histograms: &BTreeMap<String, Histogram<u64>>,
) -> Option<ConnectStepResults> {
    let [tcp, tls, upgrade] = CONNECT_STEP_HISTOGRAMS.map(|name| histograms.get(name));
    Some(ConnectStepResults::of([tcp?, tls?, upgrade?]))
}

/// Adds one more part's connections, counters, rates and CPU into `merged`; validity holds
/// only if it holds for every part, and the reasons of each are kept.
fn add_part(merged: &mut Report, part: &Report) {
    let (scenario, results) = (&mut merged.scenario, &mut merged.results);
    let r = &part.results;
    scenario.subscribers += part.scenario.subscribers;
    scenario.publishers += part.scenario.publishers;
    merged.environment.processes += part.environment.processes;
    merged.environment.started_unix_s = merged
        .environment
        .started_unix_s
        .min(part.environment.started_unix_s);
    results.valid &= r.valid;
    results
        .invalid_reasons
        .extend(r.invalid_reasons.iter().cloned());
    results.connections.target += r.connections.target;
    results.connections.ok += r.connections.ok;
    results.connections.failed += r.connections.failed;
    results.connections.disconnected += r.connections.disconnected;
    for (key, count) in &r.connections.failures {
        *results.connections.failures.entry(key.clone()).or_default() += count;
    }
    results.sent += r.sent;
    results.sent_measured += r.sent_measured;
    results.expected += r.expected;
    results.delivered += r.delivered;
    results.lost += r.lost;
    results.duplicated += r.duplicated;
    results.reordered += r.reordered;
    results.foreign += r.foreign;
    results.delivered_per_sec += r.delivered_per_sec;
    results.delivered_mb_per_sec += r.delivered_mb_per_sec;
    results.stalled.connections += r.stalled.connections;
    results.stalled.closed_by_server += r.stalled.closed_by_server;
    results.protocol_errors += r.protocol_errors;
    results
        .publishers_with_loss
        .extend(r.publishers_with_loss.iter().cloned());
    results.loadgen_cpu.user_s += r.loadgen_cpu.user_s;
    results.loadgen_cpu.system_s += r.loadgen_cpu.system_s;
    results.loadgen_cpu.window_percent = add_option(
        results.loadgen_cpu.window_percent,
        r.loadgen_cpu.window_percent,
    );
    results.loadgen_cpu.max_second_percent = add_option(
        results.loadgen_cpu.max_second_percent,
        r.loadgen_cpu.max_second_percent,
    );
}

/// The sum of every part's histogram `name` (percentiles are recomputed from it, never
/// averaged).
fn sum_histogram(parts: &[Report], name: &str) -> anyhow::Result<Histogram<u64>> {
    let mut sum = new_histogram();
    for part in parts {
        add_histogram(&mut sum, &part.histogram(name)?);
    }
    Ok(sum)
}

/// The merged `nodes` section, when every part has one (each ran with several URLs): per-URL
/// connections added by URL (in order of first appearance), per-class counters summed and the
/// per-class histograms added into `histograms` (percentiles recomputed from them). When a part
/// has none (one URL), its deliveries cannot be split, so the merged report has no section.
fn merge_nodes(
    parts: &[Report],
    histograms: &mut BTreeMap<String, Histogram<u64>>,
) -> anyhow::Result<Option<NodeResults>> {
    let Some(sections) = parts
        .iter()
        .map(|part| part.results.nodes.as_ref())
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let mut merged = NodeResults::default();
    for section in &sections {
        for url in &section.urls {
            match merged.urls.iter_mut().find(|u| u.url == url.url) {
                Some(sum) => {
                    sum.target += url.target;
                    sum.publishers += url.publishers;
                    sum.ok += url.ok;
                }
                None => merged.urls.push(url.clone()),
            }
        }
        for (sum, class) in [
            (&mut merged.same_node, &section.same_node),
            (&mut merged.cross_node, &section.cross_node),
        ] {
            sum.expected += class.expected;
            sum.delivered += class.delivered;
            sum.lost += class.lost;
        }
    }
    for (name, class) in NODE_HISTOGRAMS
        .iter()
        .zip([&mut merged.same_node, &mut merged.cross_node])
    {
        let sum = sum_histogram(parts, name)?;
        class.latency_ns = HistogramSummary::of(&sum);
        histograms.insert(name.to_string(), sum);
    }
    Ok(Some(merged))
}

/// The merged `wire` section, when every part has one: counts summed, ratios recomputed.
fn merge_wire(parts: &[Report], delivered: u64) -> Option<WireResults> {
    let sections = parts
        .iter()
        .map(|part| part.results.wire.as_ref())
        .collect::<Option<Vec<_>>>()?;
    let sum = |field: fn(&WireResults) -> u64| sections.iter().map(|w| field(w)).sum::<u64>();
    Some(WireResults::of(
        sections.iter().any(|w| w.deflate_offered),
        sum(|w| w.deflate_connections),
        sum(|w| w.payload_bytes),
        sum(|w| w.wire_bytes),
        delivered,
    ))
}

/// The merged `churn` section, when every part has one: counters summed, the first-replay
/// histograms added into `histograms`. A part without it ran without churn or recovery, so
/// the merged run has no single figure and no section.
fn merge_churn(
    parts: &[Report],
    histograms: &mut BTreeMap<String, Histogram<u64>>,
) -> anyhow::Result<Option<ChurnResults>> {
    let Some(sections) = parts
        .iter()
        .map(|part| part.results.churn.as_ref())
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let mut merged = ChurnResults::default();
    for section in sections {
        merged.left += section.left;
        merged.reconnected += section.reconnected;
        merged.reconnect_failed += section.reconnect_failed;
        for (key, count) in &section.reconnect_failures {
            *merged.reconnect_failures.entry(key.clone()).or_default() += count;
        }
        let (sum, first) = (&mut merged.first_messages, &section.first_messages);
        sum.position += first.position;
        sum.recovered += first.recovered;
        sum.reset += first.reset;
        sum.none += first.none;
        sum.malformed += first.malformed;
        if merged.malformed_example.is_none() {
            merged.malformed_example = section.malformed_example.clone();
        }
    }
    let sum = sum_histogram(parts, FIRST_REPLAY_HISTOGRAM)?;
    merged.first_replay_ns = HistogramSummary::of(&sum);
    histograms.insert(FIRST_REPLAY_HISTOGRAM.to_string(), sum);
    Ok(Some(merged))
}

/// The merged run's `server`: when every part watched the same processes (same host and
/// pids), one server (or one cluster) served all the deliveries, so its CPU per delivery is
/// taken over the merged count; otherwise there is no single server figure (each is in
/// `servers`).
fn combined_server(parts: &[Report], delivered: u64) -> Option<crate::report::ServerResults> {
    let watched: Vec<_> = parts
        .iter()
        .map(|p| Some((p.environment.hostname.as_str(), p.results.server.as_ref()?)))
        .collect::<Option<_>>()?;
    let (host, first) = *watched.first()?;
    if watched
        .iter()
        .any(|(h, s)| *h != host || s.pid != first.pid || s.pids != first.pids)
    {
        return None;
    }
    // The server's CPU over the longest window any part measured, and that part's user-space
    // share and per-process figures.
    let (_, longest) = *watched
        .iter()
        .max_by(|a, b| a.1.cpu_seconds.total_cmp(&b.1.cpu_seconds))?;
    let cpu_seconds = longest.cpu_seconds;
    let user_seconds = longest.cpu_user_seconds;
    let per_delivery = |seconds: f64| (delivered > 0).then(|| seconds * 1e6 / delivered as f64);
    let mut server = first.clone();
    server.processes = longest.processes.clone();
    server.cpu_seconds = cpu_seconds;
    server.cpu_us_per_delivery = per_delivery(cpu_seconds);
    server.cpu_s_per_million_deliveries = per_delivery(cpu_seconds);
    server.cpu_user_seconds = user_seconds;
    server.user_us_per_delivery = user_seconds.and_then(per_delivery);
    server.rss_peak_bytes = watched
        .iter()
        .map(|(_, s)| s.rss_peak_bytes)
        .max()
        .unwrap_or(0);
    Some(server)
}

/// One process's interval log: absolute start time and its intervals.
pub struct ParsedLog {
    /// StartTime (or BaseTime) of the log, since the Unix epoch.
    pub start: Duration,
    /// (tag, start offset, length, histogram).
    pub intervals: Vec<(Option<String>, Duration, Duration, Histogram<u64>)>,
}

/// Reads an interval log written by loadgen (or any HdrHistogram writer).
pub fn read_hlog(path: &Path) -> anyhow::Result<ParsedLog> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut start, mut base) = (None, None);
    let mut intervals = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))? {
            LogEntry::StartTime(t) => start = Some(t),
            LogEntry::BaseTime(t) => base = Some(t),
            LogEntry::Interval(interval) => {
                let histogram = decode_histogram(interval.encoded_histogram())
                    .with_context(|| format!("{}: an interval", path.display()))?;
                intervals.push((
                    interval.tag().map(|t| t.as_str().to_string()),
                    interval.start_timestamp(),
                    interval.duration(),
                    histogram,
                ));
            }
        }
    }
    let start = base
        .or(start)
        .with_context(|| format!("{}: no StartTime or BaseTime", path.display()))?;
    Ok(ParsedLog { start, intervals })
}

/// Whole seconds from `origin` to `at`, rounded to the nearest (the processes' ticks are not
/// aligned to each other; each interval goes to the second it mostly covers).
fn second_index(origin: f64, at: f64) -> u64 {
    (at - origin).round().max(0.0) as u64
}

/// Merges interval logs: each interval goes to the 1-second slot (from the earliest log's
/// start) nearest its own start, and the histograms of one tag in one slot are added.
pub fn merge_hlogs(logs: &[ParsedLog]) -> anyhow::Result<HlogBuffer> {
    let origin = logs
        .iter()
        .map(|l| l.start)
        .min()
        .context("no interval log to merge")?;
    let origin_s = origin.as_secs_f64();
    // (slot, tag) -> sum; untagged (None) sorts first, as loadgen writes it.
    let mut slots: BTreeMap<(u64, Option<String>), Histogram<u64>> = BTreeMap::new();
    for log in logs {
        for (tag, offset, _, histogram) in &log.intervals {
            let slot = second_index(origin_s, (log.start + *offset).as_secs_f64());
            add_histogram(
                slots
                    .entry((slot, tag.clone()))
                    .or_insert_with(new_histogram),
                histogram,
            );
        }
    }
    let comment = format!(
        "Merged by loadgen merge from {} logs: intervals aligned by wall-clock time to 1 s slots from the earliest start",
        logs.len()
    );
    let mut buffer = HlogBuffer::with_comment(UNIX_EPOCH + origin, &comment)?;
    let mut current: Option<u64> = None;
    let mut batch: Vec<(Option<String>, Histogram<u64>)> = Vec::new();
    let flush = |buffer: &mut HlogBuffer,
                 slot: u64,
                 batch: &[(Option<String>, Histogram<u64>)]|
     -> anyhow::Result<()> {
        let series: Vec<_> = batch.iter().map(|(t, h)| (t.as_deref(), h)).collect();
        buffer.push(Duration::from_secs(slot), Duration::from_secs(1), &series)
    };
    for ((slot, tag), histogram) in slots {
        if current.is_some_and(|c| c != slot) {
            flush(&mut buffer, current.unwrap_or(0), &batch)?;
            batch.clear();
        }
        current = Some(slot);
        batch.push((tag, histogram));
    }
    if let Some(slot) = current {
        flush(&mut buffer, slot, &batch)?;
    }
    Ok(buffer)
}

/// Merges the processes' timelines (each with its process's start, Unix seconds): rows are
/// aligned by wall-clock second from the earliest start; counts, connections and CPU add up;
/// the latency columns come from the merged log's `latency_all` intervals when there is one
/// (percentiles of the union), else the largest of the rows'; phases that differ are joined
/// with `+`.
pub fn merge_timelines(
    timelines: &[(f64, Vec<TimelineRow>)],
    merged_log: Option<&ParsedLog>,
) -> Vec<TimelineRow> {
    let origin = timelines
        .iter()
        .map(|(start, _)| *start)
        .fold(f64::INFINITY, f64::min);
    let mut slots: BTreeMap<u64, TimelineRow> = BTreeMap::new();
    for (start, rows) in timelines {
        for row in rows {
            let slot = second_index(origin, start + row.second as f64);
            let merged = slots.entry(slot).or_insert_with(|| TimelineRow {
                second: slot,
                phase: row.phase.clone(),
                connections_open: 0,
                sent: 0,
                delivered: 0,
                delivered_bytes: 0,
                latency_p50_ns: 0,
                latency_p99_ns: 0,
                latency_max_ns: 0,
                send_lag_p99_ns: 0,
                errors: 0,
                loadgen_cpu_percent: 0.0,
            });
            if !merged.phase.split('+').any(|p| p == row.phase) {
                merged.phase = format!("{}+{}", merged.phase, row.phase);
            }
            merged.connections_open += row.connections_open;
            merged.sent += row.sent;
            merged.delivered += row.delivered;
            merged.delivered_bytes += row.delivered_bytes;
            merged.errors += row.errors;
            merged.loadgen_cpu_percent += row.loadgen_cpu_percent;
            merged.latency_p50_ns = merged.latency_p50_ns.max(row.latency_p50_ns);
            merged.latency_p99_ns = merged.latency_p99_ns.max(row.latency_p99_ns);
            merged.latency_max_ns = merged.latency_max_ns.max(row.latency_max_ns);
            merged.send_lag_p99_ns = merged.send_lag_p99_ns.max(row.send_lag_p99_ns);
        }
    }
    if let Some(log) = merged_log {
        // A timeline row `second` ends at that second; the log's interval starts one before.
        let offset = second_index(origin, log.start.as_secs_f64());
        for (tag, start, _, histogram) in &log.intervals {
            let slot = offset + start.as_secs() + 1;
            let (Some(row), Some(tag)) = (slots.get_mut(&slot), tag.as_deref()) else {
                continue;
            };
            let quantile = |q| {
                if histogram.is_empty() {
                    0
                } else {
                    histogram.value_at_quantile(q)
                }
            };
            match tag {
                "latency_all" => {
                    row.latency_p50_ns = quantile(0.5);
                    row.latency_p99_ns = quantile(0.99);
                    row.latency_max_ns = histogram.max();
                }
                "send_lag" => row.send_lag_p99_ns = quantile(0.99),
                _ => {}
            }
        }
    }
    slots.into_values().collect()
}

/// Runs `loadgen merge`: writes report.json, latency.hgrm and, from the parts' files beside
/// their report.json, latency.hlog and timeline.csv into --out, and prints a summary.
pub fn merge_command(opt: &MergeOpt) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = Vec::new();
    for input in &opt.inputs {
        files.extend(find_report_files(input)?);
    }
    let parts = files
        .iter()
        .map(|file| Report::read(file))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge(&parts)?;
    std::fs::create_dir_all(&opt.out).with_context(|| format!("creating {}", opt.out.display()))?;
    merged.write(&opt.out)?;
    let latency = merged.histogram("latency")?;
    std::fs::write(
        opt.out.join("latency.hgrm"),
        crate::report::hgrm::render(&latency),
    )
    .context("writing latency.hgrm")?;

    let dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    let merged_log = merge_log_files(&dirs, &opt.out)?;
    merge_timeline_files(&dirs, &parts, merged_log.as_ref(), &opt.out)?;
    print!("{}", crate::report::summary::render(&merged));
    Ok(())
}

/// Merges the latency.hlog beside each part's report.json (a missing one is left out, with a
/// warning) into `out`; returns the merged log as read back, `None` when no part had one.
fn merge_log_files(dirs: &[&Path], out: &Path) -> anyhow::Result<Option<ParsedLog>> {
    let mut logs = Vec::new();
    for dir in dirs {
        let path = dir.join("latency.hlog");
        if path.exists() {
            logs.push(read_hlog(&path)?);
        } else {
            eprintln!("warning: {} missing: not in the merged log", path.display());
        }
    }
    if logs.is_empty() {
        return Ok(None);
    }
    let buffer = merge_hlogs(&logs)?;
    buffer.save(&out.join("latency.hlog"))?;
    Ok(Some(read_hlog(&out.join("latency.hlog"))?))
}

/// Merges the timeline.csv beside each part's report.json (a missing one is left out, with a
/// warning) into `out`, the latency columns from `merged_log` when there is one.
fn merge_timeline_files(
    dirs: &[&Path],
    parts: &[Report],
    merged_log: Option<&ParsedLog>,
    out: &Path,
) -> anyhow::Result<()> {
    let mut timelines = Vec::new();
    for (dir, part) in dirs.iter().zip(parts) {
        let path = dir.join("timeline.csv");
        match std::fs::read_to_string(&path) {
            Ok(text) => timelines.push((
                part.environment.started_unix_s,
                crate::report::csv::parse(&text)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(_) => eprintln!(
                "warning: {} missing: not in the merged timeline",
                path.display()
            ),
        }
    }
    if !timelines.is_empty() {
        let rows = merge_timelines(&timelines, merged_log);
        std::fs::write(out.join("timeline.csv"), crate::report::csv::render(&rows))
            .context("writing timeline.csv")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(second: u64, phase: &str, delivered: u64) -> TimelineRow {
        TimelineRow {
            second,
            phase: phase.into(),
            connections_open: 10,
            sent: 1,
            delivered,
            delivered_bytes: delivered * 64,
            latency_p50_ns: 1000,
            latency_p99_ns: 2000,
            latency_max_ns: 3000,
            send_lag_p99_ns: 10,
            errors: 0,
            loadgen_cpu_percent: 5.0,
        }
    }

    #[test]
    fn timelines_align_by_wall_clock() {
        // The second process started 2 s after the first: its second 1 is the first's second 3.
        let a = (
            1000.0,
            vec![
                row(1, "connecting", 0),
                row(2, "warmup", 5),
                row(3, "measure", 7),
            ],
        );
        let b = (1002.0, vec![row(1, "warmup", 11), row(2, "measure", 13)]);
        let rows = merge_timelines(&[a, b], None);
        let seconds: Vec<u64> = rows.iter().map(|r| r.second).collect();
        assert_eq!(seconds, vec![1, 2, 3, 4]);
        assert_eq!(rows[2].delivered, 7 + 11);
        assert_eq!(rows[2].phase, "measure+warmup");
        assert_eq!(rows[2].connections_open, 20);
        assert_eq!(rows[2].loadgen_cpu_percent, 10.0);
        assert_eq!(rows[3].delivered, 13);
    }

    #[test]
    fn logs_align_by_wall_clock_and_add_up() {
        let histogram = |values: &[u64]| {
            let mut h = new_histogram();
            for v in values {
                h.saturating_record(*v);
            }
            h
        };
        let a = ParsedLog {
            start: Duration::from_secs(1000),
            intervals: vec![
                (
                    None,
                    Duration::ZERO,
                    Duration::from_secs(1),
                    histogram(&[1_000]),
                ),
                (
                    None,
                    Duration::from_secs(1),
                    Duration::from_secs(1),
                    histogram(&[2_000]),
                ),
            ],
        };
        // Started 1.2 s later: its first interval lands in slot 1 (1.2 rounds to 1).
        let b = ParsedLog {
            start: Duration::from_millis(1_001_200),
            intervals: vec![
                (
                    None,
                    Duration::ZERO,
                    Duration::from_secs(1),
                    histogram(&[3_000, 4_000]),
                ),
                (
                    Some("send_lag".into()),
                    Duration::ZERO,
                    Duration::from_secs(1),
                    histogram(&[5]),
                ),
            ],
        };
        let buffer = merge_hlogs(&[a, b]).unwrap();
        let dir = std::env::temp_dir().join(format!("loadgen-merge-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.hlog");
        buffer.save(&path).unwrap();
        let merged = read_hlog(&path).unwrap();
        assert_eq!(merged.start, Duration::from_secs(1000));
        let summary: Vec<(Option<&str>, u64, u64)> = merged
            .intervals
            .iter()
            .map(|(t, s, _, h)| (t.as_deref(), s.as_secs(), h.len()))
            .collect();
        assert_eq!(
            summary,
            vec![(None, 0, 1), (None, 1, 3), (Some("send_lag"), 1, 1)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
