#!/usr/bin/env python3
"""Print the markdown summary tables of a bench result directory.

    scripts/bench_summary.py results/0.1.0-2025-01-01-host

One row per scenario; each cell is the median over the scenario's valid runs with the range
(min-max) in brackets when there are several, so the noise is visible next to the value. Runs
loadgen flagged not valid (results.valid false: publishers fell behind, connections failed)
are left out of the medians and listed below the tables with loadgen's reasons; a scenario
without any valid run shows the median of all its runs, marked "(no valid run)".
bench.sh pastes this output into the result directory's README.md (never edited by hand).
"""

import argparse
import os
import sys

import benchresults as br


def cell(values, fmt):
    """Median (min-max) of the runs' values, formatted with fmt; '-' when none has it."""
    summary = br.spread(values)
    if summary is None:
        return "-"
    median, low, high = summary
    if fmt(low) == fmt(high):
        return fmt(median)
    return f"{fmt(median)} ({fmt(low)}-{fmt(high)})"


def fmt_rate(value):
    return f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.0f}"


def fmt_count(value):
    return f"{value:.0f}"


def fmt_cpu(value):
    return f"{value:.2f}"


def fmt_kib(value):
    return f"{value / 1024:.1f} KiB"


def fmt_mib(value):
    return f"{value / 1048576:.0f} MiB"


def fmt_percent(value):
    return f"{value:.0f}%"


def fmt_user_us(value):
    return f"{value:.3f}"


def fmt_share(value):
    return f"{100 * value:.0f}%"


LATENCY_COLUMNS = [
    ("delivered/s", "delivered_per_sec", fmt_rate),
    ("p50", "p50_ns", br.format_ns),
    ("p99", "p99_ns", br.format_ns),
    ("p99.9", "p999_ns", br.format_ns),
    ("max", "max_ns", br.format_ns),
    ("lost", "lost", fmt_count),
    ("server CPU-s / 1M deliveries", "server_cpu_s_per_million", fmt_cpu),
    ("server user us / delivery", "server_user_us_per_delivery", fmt_user_us),
    ("user share", "server_user_share", fmt_share),
    ("frames / write", "frames_per_write", fmt_cpu),
    ("loadgen CPU", "loadgen_cpu_percent", fmt_percent),
]

CONNECTION_COLUMNS = [
    ("connect p50", "connect_p50_ns", br.format_ns),
    ("connect p99", "connect_p99_ns", br.format_ns),
    ("connect max", "connect_max_ns", br.format_ns),
    ("server RSS / connection", "server_rss_per_conn_bytes", fmt_kib),
    ("server peak RSS", "server_rss_peak_bytes", fmt_mib),
    ("stalled clients closed by server", "stalled_closed", fmt_count),
]


def table(rows, columns):
    """A markdown table: scenario, runs (valid/total), then one cell per column, each over the
    valid runs only (all runs, marked, when none is valid)."""
    header = ["scenario", "valid runs"] + [title for title, _, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario, metrics, total in rows:
        valid_metrics = [m for m in metrics if m["valid"] is True]
        cells = [scenario, f"{len(valid_metrics)}/{total}"]
        if valid_metrics or not metrics:
            cells += [cell([m[key] for m in valid_metrics], fmt) for _, key, fmt in columns]
        else:
            cells[1] += " (no valid run)"
            cells += [cell([m[key] for m in metrics], fmt) for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a result directory written by scripts/bench.sh")
    args = parser.parse_args()

    rows = []
    missing = []
    invalid = []
    for scenario, run_dirs in br.scenarios(args.dir).items():
        metrics = []
        for run_dir in run_dirs:
            report = br.load_report(run_dir)
            if report is None:
                missing.append(run_dir)
            else:
                if report.get("results", {}).get("valid") is not True:
                    reasons = report.get("results", {}).get("invalid_reasons") or ["not valid"]
                    invalid.append((scenario, os.path.basename(run_dir), "; ".join(reasons)))
                metrics.append(dict(br.run_metrics(report),
                                    frames_per_write=br.frames_per_write(run_dir)))
        rows.append((scenario, metrics, len(run_dirs)))
    if not rows:
        print(f"no runs found under {args.dir}", file=sys.stderr)
        return 1

    print("Median over the valid runs, range (min-max) in brackets. Latency is measured from each")
    print("message's intended send time to its receipt (coordinated-omission safe).\n")
    print(table(rows, LATENCY_COLUMNS))
    print("\nConnections and memory (server RSS per connection = (RSS with all clients")
    print("connected - RSS before connecting) / connections):\n")
    print(table(rows, CONNECTION_COLUMNS))
    if invalid:
        print("\nRuns loadgen flagged not valid, left out of the medians above:")
        for scenario, run, reasons in invalid:
            print(f"- {scenario} {run}: {reasons}")
    if missing:
        print("\nRuns without a report.json (loadgen failed; see their loadgen.stderr):")
        for run_dir in missing:
            print(f"- `{run_dir}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
