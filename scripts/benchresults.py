"""Reading a bench result directory written by scripts/bench.sh.

Layout (see results/README.md):

    DIR/README.md                       provenance + summary table
    DIR/<scenario>/run-<i>/report.json  loadgen's report (schema ringcast-loadgen/report/v1)
    DIR/<scenario>/run-<i>/latency.hgrm percentile spectrum (wrk2 text format)
    DIR/<scenario>/run-<i>/timeline.csv per-second figures

Shared by scripts/bench_summary.py (the table) and scripts/plot.py (the picture) so both read
the layout and the report fields the same way. Python 3 standard library only.
"""

import csv
import json
import math
import os
import re
import statistics

RUN_DIR = re.compile(r"^run-(\d+)$")


def matrix_order(result_dir):
    """Scenario names in the order bench.sh ran them (its matrix.txt: 'name: options' lines)."""
    try:
        with open(os.path.join(result_dir, "matrix.txt"), encoding="utf-8") as handle:
            return [line.split(":", 1)[0].strip() for line in handle if ":" in line]
    except OSError:
        return []


def scenarios(result_dir):
    """Return {scenario: [run_dir, ...]} for every scenario dir holding at least one run, in
    the order of the run's matrix (then alphabetical for any other directory)."""
    found = {}
    order = matrix_order(result_dir)
    names = sorted(os.listdir(result_dir), key=lambda n: (order.index(n) if n in order else len(order), n))
    for name in names:
        scenario_dir = os.path.join(result_dir, name)
        if not os.path.isdir(scenario_dir):
            continue
        runs = []
        for run in os.listdir(scenario_dir):
            match = RUN_DIR.match(run)
            if match and os.path.isdir(os.path.join(scenario_dir, run)):
                runs.append((int(match.group(1)), os.path.join(scenario_dir, run)))
        if runs:
            found[name] = [path for _, path in sorted(runs)]
    return found


def load_report(run_dir):
    """The run's report.json as a dict, or None when loadgen wrote none (failed run)."""
    path = os.path.join(run_dir, "report.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def dig(tree, *path):
    """tree[path[0]][path[1]]... or None when any step is missing."""
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def first_number(tree, *paths):
    """The first of several candidate field paths that holds a number (schema tolerance)."""
    for path in paths:
        value = dig(tree, *path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def run_metrics(report):
    """The figures the summary table and the plot page show, from one report.json.

    Values are None when the report lacks them (e.g. no --server-pid for a foreign target).
    """
    results = report.get("results", {})
    # A run without measured messages (idle connections, --publishers 0) has no latency or
    # CPU per delivery: None, never a misleading 0.
    if not first_number(results, ("latency_ns", "count")):
        results = dict(results, latency_ns={})
    if not first_number(results, ("delivered",)):
        results = dict(results, server={k: v for k, v in (results.get("server") or {}).items()
                                        if k not in ("cpu_s_per_million_deliveries", "cpu_us_per_delivery",
                                                     "user_us_per_delivery")})
    if not first_number(results, ("connect_ns", "count")):
        results = dict(results, connect_ns={})
    cpu_per_million = first_number(
        results,
        ("server", "cpu_s_per_million_deliveries"),
    )
    if cpu_per_million is None:
        per_delivery_us = first_number(results, ("server", "cpu_us_per_delivery"))
        if per_delivery_us is not None:
            cpu_per_million = per_delivery_us  # 1 us per delivery == 1 s per million
    return {
        "delivered_per_sec": first_number(results, ("delivered_per_sec",)),
        "p50_ns": first_number(results, ("latency_ns", "p50")),
        "p99_ns": first_number(results, ("latency_ns", "p99")),
        "p999_ns": first_number(results, ("latency_ns", "p999")),
        "max_ns": first_number(results, ("latency_ns", "max")),
        "connect_p50_ns": first_number(results, ("connect_ns", "p50")),
        "connect_p99_ns": first_number(results, ("connect_ns", "p99")),
        "connect_max_ns": first_number(results, ("connect_ns", "max")),
        "lost": first_number(results, ("lost",)),
        "expected": first_number(results, ("expected",)),
        "server_cpu_s_per_million": cpu_per_million,
        # Server user-space (utime) CPU per delivery, and its share of the server's CPU: the
        # part the server's own code spends (the rest is the kernel's send path).
        "server_user_us_per_delivery": first_number(results, ("server", "user_us_per_delivery")),
        "server_user_share": user_share(results.get("server") or {}),
        "server_rss_per_conn_bytes": first_number(
            results, ("server", "rss_per_connection_bytes")
        ),
        "server_rss_peak_bytes": first_number(results, ("server", "rss_peak_bytes")),
        "loadgen_cpu_percent": first_number(results, ("loadgen_cpu", "window_percent")),
        "stalled_closed": first_number(results, ("stalled", "closed_by_server")),
        "valid": dig(results, "valid"),
    }


def user_share(server):
    """utime / (utime + stime) of the measured window, or None when not recorded."""
    user, total = server.get("cpu_user_seconds"), server.get("cpu_seconds")
    if not isinstance(user, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
        return None
    return user / total


def frames_per_write(run_dir):
    """Frames per write(v) over the server's life, from ringcast's /metrics saved by bench.sh
    (server-metrics.txt), or None when there is none (a --target without /metrics)."""
    totals = {"ringcast_frames_written_total": 0.0, "ringcast_writev_calls_total": 0.0}
    try:
        with open(os.path.join(run_dir, "server-metrics.txt"), encoding="utf-8") as handle:
            for line in handle:
                name = line.partition("{")[0].split(" ")[0]
                if name in totals:
                    totals[name] += float(line.rsplit(" ", 1)[-1])
    except (OSError, ValueError):
        return None
    writes = totals["ringcast_writev_calls_total"]
    return totals["ringcast_frames_written_total"] / writes if writes else None


def spread(values):
    """(median, min, max) of the non-None values, or None when there are none."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    return statistics.median(present), min(present), max(present)


# Value, percentile, total count, then 1/(1-p), which the p = 1 row may leave out.
HGRM_ROW = re.compile(r"^\s*([0-9.eE+-]+)\s+([0-9.eE+-]+)\s+(\d+)(?:\s+([0-9.eE+-]+|inf|Infinity))?\s*$")


def parse_hgrm(path):
    """Percentile spectrum rows [(percentile 0..1, value)] of a wrk2-style .hgrm file.

    Values stay in the file's unit; hgrm_unit() says which one it is.
    """
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = HGRM_ROW.match(line)
            if match:
                rows.append((float(match.group(2)), float(match.group(1))))
    return rows


def hgrm_unit(path):
    """The value unit of an .hgrm file: stated in a header/comment line, else ms (wrk2's)."""
    with open(path, encoding="utf-8") as handle:
        head = handle.read(4096)
    match = re.search(r"\b(ns|us|µs|ms|s)\b\s*\)?\s*$", head.split("\n", 1)[0]) or re.search(
        r"(?:unit|Value)\s*[(=:\[]\s*(ns|us|µs|ms|s)\b", head
    )
    return match.group(1).replace("µs", "us") if match else "ms"


def read_timeline(path):
    """timeline.csv as {column: [float or None, ...]} keyed by the header names."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            for name in columns:
                try:
                    columns[name].append(float(row[name]))
                except (TypeError, ValueError):
                    columns[name].append(None)
    return columns


def pick_column(columns, *candidates):
    """Name of the first timeline column matching one of the candidate regexes, or None."""
    for pattern in candidates:
        for name in columns:
            if re.fullmatch(pattern, name):
                return name
    return None


UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def format_ns(value_ns):
    """A latency in ns as a short human string: 850us, 12.3ms, 1.20s."""
    if value_ns is None:
        return "-"
    if value_ns >= 1e9:
        return f"{value_ns / 1e9:.2f}s"
    if value_ns >= 1e6:
        return f"{value_ns / 1e6:.3g}ms"
    if value_ns >= 1e3:
        return f"{value_ns / 1e3:.3g}us"
    return f"{value_ns:.0f}ns"
