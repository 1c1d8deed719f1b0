//! `loadgen merge`: one report from the reports of several loadgen processes of one run.
//! Histograms are added and percentiles recomputed from them (never averaged); counters and
//! rates are summed; the run is valid only if every part was.

use std::collections::BTreeMap;

use anyhow::{bail, Context};

use crate::cli::MergeOpt;
use crate::compare::load_reports;
use crate::report::{encode_histogram, HistogramSummary, Report, ThresholdOutcome};
use crate::stats::{add_histogram, new_histogram};
use crate::threshold::Threshold;

/// Merges `parts` into one report.
pub fn merge(parts: &[Report]) -> anyhow::Result<Report> {
    let Some(first) = parts.first() else {
        bail!("nothing to merge");
    };
    let mut merged = first.clone();
    let (scenario, results) = (&mut merged.scenario, &mut merged.results);
    for part in &parts[1..] {
        let r = &part.results;
        scenario.subscribers += part.scenario.subscribers;
        scenario.publishers += part.scenario.publishers;
        merged.environment.processes += part.environment.processes;
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
        results.loadgen_cpu.window_percent += r.loadgen_cpu.window_percent;
        results.loadgen_cpu.max_second_percent += r.loadgen_cpu.max_second_percent;
        if results.server.is_none() {
            results.server = r.server.clone();
        }
    }
    let mut histograms = BTreeMap::new();
    for name in first.results.histograms.keys() {
        let mut sum = new_histogram();
        for part in parts {
            add_histogram(&mut sum, &part.histogram(name)?);
        }
        histograms.insert(name.clone(), sum);
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
    results.send_lag_ns = summary("send_lag");
    results.histograms = histograms
        .iter()
        .map(|(name, h)| Ok((name.clone(), encode_histogram(h)?)))
        .collect::<anyhow::Result<_>>()?;
    let thresholds = scenario
        .thresholds
        .iter()
        .map(|text| Threshold::parse(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let snapshot = results.clone();
    results.thresholds = thresholds
        .iter()
        .map(|t| {
            let (actual, passed) = t.check(&snapshot);
            ThresholdOutcome {
                expression: t.expression.clone(),
                actual,
                passed,
            }
        })
        .collect();
    Ok(merged)
}

/// Runs `loadgen merge`: writes report.json and latency.hgrm into --out and prints a summary.
pub fn merge_command(opt: &MergeOpt) -> anyhow::Result<()> {
    let mut parts = Vec::new();
    for input in &opt.inputs {
        parts.extend(load_reports(input)?);
    }
    let merged = merge(&parts)?;
    std::fs::create_dir_all(&opt.out).with_context(|| format!("creating {}", opt.out.display()))?;
    merged.write(&opt.out)?;
    let latency = merged.histogram("latency")?;
    std::fs::write(
        opt.out.join("latency.hgrm"),
        crate::report::hgrm::render(&latency),
    )
    .context("writing latency.hgrm")?;
    print!("{}", crate::report::summary::render(&merged));
    Ok(())
}
