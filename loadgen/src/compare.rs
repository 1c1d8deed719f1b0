//! `loadgen compare BASE NEW`: per metric, base and new values, change in %, and whether the
//! change is beyond the noise of repeated runs.
//!
//! Noise rule: with at least two runs per side, a change is real when the new mean lies outside
//! base mean +- 2 stddev AND the base mean lies outside new mean +- 2 stddev; otherwise "~".
//! With a single run on either side the noise is unknown ("?"); `--fail-if-worse` then treats
//! the change at face value.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::cli::{CompareOpt, Format};
use crate::report::Report;
use crate::threshold::{is_time, metric, METRICS};
use crate::units::format_ns;

/// Metrics that describe the scenario's size rather than the server's quality: shown, never
/// judged as regressions.
const NOT_JUDGED: &[&str] = &["sent", "expected"];

/// Reports from a report.json path or from every report.json under a directory.
pub fn load_reports(path: &Path) -> anyhow::Result<Vec<Report>> {
    if path.is_file() {
        return Ok(vec![Report::read(path)?]);
    }
    let mut files = Vec::new();
    find_reports(path, &mut files).with_context(|| format!("searching {}", path.display()))?;
    files.sort();
    if files.is_empty() {
        bail!("no report.json under {}", path.display());
    }
    files.iter().map(|file| Report::read(file)).collect()
}

/// Collects report.json files under `dir`, recursively.
fn find_reports(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            find_reports(&path, found)?;
        } else if path.file_name().is_some_and(|name| name == "report.json") {
            found.push(path);
        }
    }
    Ok(())
}

/// Mean and sample standard deviation.
fn mean_and_stddev(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, variance.sqrt())
}

/// How a metric changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Metric name.
    pub metric: &'static str,
    /// Mean over the base runs.
    pub base: f64,
    /// Mean over the new runs.
    pub new: f64,
    /// (new - base) / base in percent (NaN when base is 0 and new is not).
    pub percent: f64,
    /// Some(true) beyond noise, Some(false) within noise, None unknown.
    pub significant: Option<bool>,
    /// Whether the change is in the bad direction.
    pub worse: bool,
}

/// Compares every metric present on both sides.
pub fn changes(base: &[Report], new: &[Report]) -> Vec<Change> {
    let mut out = Vec::new();
    for &(name, _, lower_is_better) in METRICS {
        let base_values: Option<Vec<f64>> = base.iter().map(|r| metric(&r.results, name)).collect();
        let new_values: Option<Vec<f64>> = new.iter().map(|r| metric(&r.results, name)).collect();
        let (Some(base_values), Some(new_values)) = (base_values, new_values) else {
            continue;
        };
        let (base_mean, base_sd) = mean_and_stddev(&base_values);
        let (new_mean, new_sd) = mean_and_stddev(&new_values);
        let percent = if base_mean == new_mean {
            0.0
        } else if base_mean == 0.0 {
            f64::NAN
        } else {
            (new_mean - base_mean) / base_mean.abs() * 100.0
        };
        let significant = (base_values.len() >= 2 && new_values.len() >= 2).then(|| {
            (new_mean - base_mean).abs() > 2.0 * base_sd
                && (base_mean - new_mean).abs() > 2.0 * new_sd
        });
        let worse = if lower_is_better {
            new_mean > base_mean
        } else {
            new_mean < base_mean
        };
        out.push(Change {
            metric: name,
            base: base_mean,
            new: new_mean,
            percent,
            significant,
            worse,
        });
    }
    out
}

/// Whether `change` is a regression past `limit_percent` (unknown noise counts as beyond).
pub fn is_regression(change: &Change, limit_percent: f64) -> bool {
    change.worse
        && !NOT_JUDGED.contains(&change.metric)
        && change.significant != Some(false)
        && (change.percent.is_nan() || change.percent.abs() > limit_percent)
}

/// Differences in scenario and environment worth a warning.
pub fn warnings(base: &[Report], new: &[Report]) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(b), Some(n)) = (base.first(), new.first()) else {
        return out;
    };
    let b_scenario = serde_json::to_value(&b.scenario).unwrap_or_default();
    let n_scenario = serde_json::to_value(&n.scenario).unwrap_or_default();
    if let (Some(b_map), Some(n_map)) = (b_scenario.as_object(), n_scenario.as_object()) {
        for (key, b_value) in b_map {
            if ["urls", "thresholds", "server_pid"].contains(&key.as_str()) {
                continue;
            }
            if n_map.get(key) != Some(b_value) {
                out.push(format!(
                    "scenario differs: {key} {} -> {}",
                    b_value,
                    n_map.get(key).cloned().unwrap_or_default()
                ));
            }
        }
    }
    let (be, ne) = (&b.environment, &n.environment);
    for (what, bv, nv) in [
        ("kernel", be.kernel.clone(), ne.kernel.clone()),
        ("cpu_model", be.cpu_model.clone(), ne.cpu_model.clone()),
        ("cores", be.cores.to_string(), ne.cores.to_string()),
        (
            "loadgen_version",
            be.loadgen_version.clone(),
            ne.loadgen_version.clone(),
        ),
    ] {
        if bv != nv {
            out.push(format!("environment differs: {what} {bv} -> {nv}"));
        }
    }
    for (side, reports) in [("base", base), ("new", new)] {
        let invalid = reports.iter().filter(|r| !r.results.valid).count();
        if invalid > 0 {
            out.push(format!(
                "{side}: {invalid} of {} runs are not valid",
                reports.len()
            ));
        }
    }
    out
}

/// The human label of a metric (its name when it has none).
fn label_of(metric: &str) -> &str {
    METRICS
        .iter()
        .find(|m| m.0 == metric)
        .map_or(metric, |m| m.1)
}

/// A metric's value for tables: times in human units (exact ns stay in report.json).
fn format_value(metric: &str, value: f64) -> String {
    if is_time(metric) {
        format_ns(value)
    } else {
        format!("{value:.1}")
    }
}

/// Renders the comparison.
pub fn render(changes: &[Change], base_runs: usize, new_runs: usize, format: Format) -> String {
    let mut out = String::new();
    let verdict = |c: &Change| match c.significant {
        None => "?".to_string(),
        Some(false) => "~".to_string(),
        Some(true) if c.worse => "worse".to_string(),
        Some(true) => "better".to_string(),
    };
    let percent = |c: &Change| {
        if c.percent.is_nan() {
            "n/a".to_string()
        } else {
            format!("{:+.1}%", c.percent)
        }
    };
    match format {
        Format::Text => {
            let _ = writeln!(out, "base: {base_runs} run(s), new: {new_runs} run(s); ~ = within noise, ? = noise unknown (one run)");
            let _ = writeln!(
                out,
                "{:<34} {:>16} {:>16} {:>9}  significance",
                "metric", "base", "new", "change"
            );
            for c in changes {
                let label = label_of(c.metric);
                let _ = writeln!(
                    out,
                    "{:<34} {:>16} {:>16} {:>9}  {}",
                    label,
                    format_value(c.metric, c.base),
                    format_value(c.metric, c.new),
                    percent(c),
                    verdict(c)
                );
            }
        }
        Format::Markdown => {
            let _ = writeln!(out, "| metric | base ({base_runs} runs) | new ({new_runs} runs) | change | significance |");
            let _ = writeln!(out, "|---|---:|---:|---:|:---:|");
            for c in changes {
                let label = label_of(c.metric);
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {} | {} |",
                    format_value(c.metric, c.base),
                    format_value(c.metric, c.new),
                    percent(c),
                    verdict(c)
                );
            }
        }
    }
    out
}

/// Runs `loadgen compare`; returns true when `--fail-if-worse` found a regression.
pub fn compare_command(opt: &CompareOpt) -> anyhow::Result<bool> {
    let base = load_reports(&opt.base)?;
    let new = load_reports(&opt.new)?;
    for warning in warnings(&base, &new) {
        eprintln!("warning: {warning}");
    }
    let changes = changes(&base, &new);
    print!("{}", render(&changes, base.len(), new.len(), opt.format));
    let Some(limit) = opt.fail_if_worse else {
        return Ok(false);
    };
    let regressions: Vec<&Change> = changes.iter().filter(|c| is_regression(c, limit)).collect();
    for c in &regressions {
        eprintln!(
            "regression: {} {} -> {} ({:+.1}%, limit {limit}%)",
            c.metric,
            format_value(c.metric, c.base),
            format_value(c.metric, c.new),
            c.percent
        );
    }
    Ok(!regressions.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_rule_needs_both_means_outside_each_others_band() {
        let (mean, sd) = mean_and_stddev(&[1.0, 3.0]);
        assert_eq!(mean, 2.0);
        assert!((sd - std::f64::consts::SQRT_2).abs() < 1e-9);
        assert!(mean_and_stddev(&[5.0]).1.is_nan());
    }
}
