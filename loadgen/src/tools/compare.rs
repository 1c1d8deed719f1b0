//! `loadgen compare BASE NEW`: per metric, base and new values, change in %, and whether the
//! change is beyond the noise of repeated runs.
//!
//! Noise rule: with at least two runs per side, a change is real when the new mean lies outside
//! base mean +- 2 stddev AND the base mean lies outside new mean +- 2 stddev; otherwise "~".
//! With a single run on either side the noise is unknown ("?"); `--fail-if-worse` then treats
//! the change at face value.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::plan::format_ns;
use crate::plan::{is_time, METRICS};
use crate::plan::{CompareOpt, Format};
use crate::report::{metric, Report};

/// Metrics that describe the scenario's size rather than the server's quality: shown, never
/// judged as regressions.
const NOT_JUDGED: &[&str] = &["sent", "expected"];

/// Reports from a report.json path or from every report.json under a directory.
pub fn load_reports(path: &Path) -> anyhow::Result<Vec<Report>> {
    find_report_files(path)?
        .iter()
        .map(|file| Report::read(file))
        .collect()
}

/// The report.json path itself, or every report.json under a directory (sorted).
pub fn find_report_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    find_reports(path, &mut files).with_context(|| format!("searching {}", path.display()))?;
    files.sort();
    if files.is_empty() {
        bail!("no report.json under {}", path.display());
    }
    Ok(files)
}

/// The scenario name of a report found under `root`: the directory path from `root` to the
/// report, less a final `run-N` (scripts/bench.sh's DIR/<scenario>/run-<i>/report.json gives
/// `<scenario>`); empty when `root` is the scenario (or the report file itself).
pub fn scenario_name(root: &Path, file: &Path) -> String {
    let dir = file.parent().unwrap_or(file);
    let relative = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| is_run_dir(last)) {
        parts.pop();
    }
    parts.join("/")
}

/// `run-3`, `run3`, `run_3`: one repetition's directory.
fn is_run_dir(name: &str) -> bool {
    name.strip_prefix("run")
        .map(|rest| rest.trim_start_matches(['-', '_']))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Reports of one side grouped by scenario name (see `scenario_name`).
pub fn load_scenarios(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<Report>>> {
    let mut out: BTreeMap<String, Vec<Report>> = BTreeMap::new();
    for file in find_report_files(path)? {
        let name = if path.is_file() {
            String::new()
        } else {
            scenario_name(path, &file)
        };
        out.entry(name).or_default().push(Report::read(&file)?);
    }
    Ok(out)
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

/// `compare` would put different scenarios into one table: exit 2 (without `--pool`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Scenario fields that define the load: runs that differ in one of them are different
/// scenarios, whatever their directories are called.
const LOAD_FIELDS: &[&str] = &[
    "subscribers",
    "publishers",
    "rate",
    "size",
    "rooms",
    "stalled_percent",
];

/// The load-defining fields of a report's scenario, as `name=value` strings.
fn load_of(report: &Report) -> Vec<String> {
    let value = serde_json::to_value(&report.scenario).unwrap_or_default();
    LOAD_FIELDS
        .iter()
        .map(|field| format!("{field}={}", value.get(*field).cloned().unwrap_or_default()))
        .collect()
}

/// Why `base` and `new` cannot be compared table by table, if they cannot: different scenario
/// names on the two sides, or runs of different load under one name.
pub fn scenario_mismatch(
    base: &BTreeMap<String, Vec<Report>>,
    new: &BTreeMap<String, Vec<Report>>,
) -> Option<String> {
    let only = |a: &BTreeMap<String, Vec<Report>>, b: &BTreeMap<String, Vec<Report>>| {
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(|k| display_name(k).to_string())
            .collect::<Vec<_>>()
    };
    let (only_base, only_new) = (only(base, new), only(new, base));
    if !only_base.is_empty() || !only_new.is_empty() {
        let mut parts = Vec::new();
        if !only_base.is_empty() {
            parts.push(format!("only in BASE: {}", only_base.join(", ")));
        }
        if !only_new.is_empty() {
            parts.push(format!("only in NEW: {}", only_new.join(", ")));
        }
        return Some(format!(
            "the two sides hold different scenarios ({})",
            parts.join("; ")
        ));
    }
    for (name, base_runs) in base {
        let runs = base_runs.iter().chain(new.get(name).into_iter().flatten());
        let mut loads: Vec<Vec<String>> = Vec::new();
        for run in runs {
            let load = load_of(run);
            if !loads.contains(&load) {
                loads.push(load);
            }
        }
        if loads.len() > 1 {
            let first = &loads[0];
            let differing: Vec<String> = loads[1..]
                .iter()
                .flat_map(|other| {
                    first
                        .iter()
                        .zip(other)
                        .filter(|(a, b)| a != b)
                        .map(|(a, b)| format!("{a} vs {}", b.split_once('=').map_or("", |x| x.1)))
                })
                .collect();
            return Some(format!(
                "scenario {} holds runs of different load ({})",
                display_name(name),
                differing.join(", ")
            ));
        }
    }
    None
}

/// How a scenario name prints (the unnamed one: the directories given).
fn display_name(name: &str) -> &str {
    if name.is_empty() {
        "(the directory itself)"
    } else {
        name
    }
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
            if ["urls", "thresholds", "server_pid", "server_pids"].contains(&key.as_str()) {
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
    let urls = |r: &Report| r.results.nodes.as_ref().map_or(1, |n| n.urls.len());
    if b.results.nodes.is_some() != n.results.nodes.is_some() {
        out.push(format!(
            "nodes differ: {} URL(s) -> {} URL(s); same-node and cross-node metrics not compared",
            urls(b),
            urls(n)
        ));
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

/// Runs `loadgen compare`; returns true when `--fail-if-worse` found a regression. Runs are
/// matched by scenario name and compared in one table per scenario; sides with different
/// scenarios are refused (`Refusal`) unless `--pool` puts every run of a side into one table.
pub fn compare_command(opt: &CompareOpt) -> anyhow::Result<bool> {
    let mut base = load_scenarios(&opt.base)?;
    let mut new = load_scenarios(&opt.new)?;
    if opt.pool {
        let pooled = |sides: &mut BTreeMap<String, Vec<Report>>, which: &str| {
            if sides.len() > 1 {
                let names: Vec<&str> = sides.keys().map(|k| display_name(k)).collect();
                eprintln!(
                    "warning: --pool: {which}'s scenarios {} in one table",
                    names.join(", ")
                );
            }
            let all: Vec<Report> = std::mem::take(sides).into_values().flatten().collect();
            sides.insert(String::new(), all);
        };
        pooled(&mut base, "BASE");
        pooled(&mut new, "NEW");
    } else if let Some(why) = scenario_mismatch(&base, &new) {
        return Err(Refusal(format!(
            "{why}: not compared (compare matching directories, or --pool to put every run of a side into one table)"
        ))
        .into());
    }
    let mut regressions_found = false;
    let named = base.len() > 1 || base.keys().any(|k| !k.is_empty());
    for (index, (name, base_runs)) in base.iter().enumerate() {
        let new_runs = &new[name];
        if named {
            if index > 0 {
                println!();
            }
            match opt.format {
                Format::Text => println!("== {} ==", display_name(name)),
                Format::Markdown => println!("### {}\n", display_name(name)),
            }
        }
        for warning in warnings(base_runs, new_runs) {
            if named {
                eprintln!("warning: {}: {warning}", display_name(name));
            } else {
                eprintln!("warning: {warning}");
            }
        }
        let changes = changes(base_runs, new_runs);
        print!(
            "{}",
            render(&changes, base_runs.len(), new_runs.len(), opt.format)
        );
        let Some(limit) = opt.fail_if_worse else {
            continue;
        };
        for c in changes.iter().filter(|c| is_regression(c, limit)) {
            regressions_found = true;
            let prefix = if named {
                format!("{}: ", display_name(name))
            } else {
                String::new()
            };
            eprintln!(
                "regression: {prefix}{} {} -> {} ({:+.1}%, limit {limit}%)",
                c.metric,
                format_value(c.metric, c.base),
                format_value(c.metric, c.new),
                c.percent
            );
        }
    }
    Ok(regressions_found)
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

    #[test]
    fn scenario_names_come_from_the_directory_layout() {
        let root = Path::new("/r/base");
        let name = |p: &str| scenario_name(root, Path::new(p));
        assert_eq!(name("/r/base/fanout-1k/run-2/report.json"), "fanout-1k");
        assert_eq!(name("/r/base/fanout-1k/report.json"), "fanout-1k");
        assert_eq!(name("/r/base/run-1/report.json"), "");
        assert_eq!(name("/r/base/report.json"), "");
        assert_eq!(name("/r/base/a/b/run3/report.json"), "a/b");
        assert_eq!(name("/r/base/a/runner/report.json"), "a/runner");
    }
}
