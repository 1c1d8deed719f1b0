#!/usr/bin/env python3
"""Deliveries/s and server CPU per delivery against --cores, from a bench-scale.sh directory.

    scale_summary.py DIR CPUS N:SERVER_CPUS:LOADGEN_CPUS ...

Reads DIR/cores-N/SCENARIO/run-R/report.json (loadgen's reports; runs it flagged not valid are
left out) and writes DIR/scale.md (medians and ranges per scenario and core count) and
DIR/scale.html (one chart per scenario and measure, inline SVG). Standard library only.
"""
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from svgchart import line_chart  # noqa: E402

MEASURES = [
    ("deliveries/s", lambda r: r["delivered_per_sec"], "{:,.0f}"),
    ("server CPU µs / delivery", lambda r: r["server"]["cpu_us_per_delivery"], "{:.2f}"),
    ("p99 latency ms", lambda r: r["latency_ns"]["p99"] / 1e6, "{:.2f}"),
]


def runs(out_dir, cores, scenario):
    """The valid reports of one scenario at one core count."""
    reports = []
    for path in sorted(glob.glob(f"{out_dir}/cores-{cores}/{scenario}/run-*/report.json")):
        with open(path) as f:
            results = json.load(f)["results"]
        if results.get("valid"):
            reports.append(results)
    return reports


def value(results, measure):
    """A measure of one run, or None where the run has no such figure."""
    try:
        return measure(results)
    except (KeyError, TypeError):
        return None


def main():
    out_dir, cpus = sys.argv[1], int(sys.argv[2])
    pinning = [entry.split(":") for entry in sys.argv[3:]]
    scenarios = sorted({os.path.basename(os.path.dirname(p))
                        for p in glob.glob(f"{out_dir}/cores-*/*/run-*")})
    lines = [f"# Scaling across cores ({cpus} CPUs on this host)", "",
             "Medians over the valid runs, range (min-max) in brackets. The server runs"
             " `--cores N` pinned to SERVER CPUs, loadgen to LOADGEN CPUs with one thread each;"
             " \"shared\": no CPU was left for loadgen, so it ran on the server's.", ""]
    charts = []
    for scenario in scenarios:
        lines += [f"## {scenario}", "",
                  "| cores | server CPUs | loadgen CPUs | valid runs | "
                  + " | ".join(name for name, _, _ in MEASURES) + " |",
                  "|---" * (4 + len(MEASURES)) + "|"]
        points = {name: [] for name, _, _ in MEASURES}
        for cores, server_cpus, loadgen_cpus in pinning:
            reports = runs(out_dir, cores, scenario)
            cells = []
            for name, measure, fmt in MEASURES:
                values = [v for v in (value(r, measure) for r in reports) if v is not None]
                if not values:
                    cells.append("-")
                    continue
                median = statistics.median(values)
                points[name].append((int(cores), median))
                cells.append(f"{fmt.format(median)} ({fmt.format(min(values))}-{fmt.format(max(values))})")
            shared = " (shared)" if int(cores) >= cpus else ""
            total = len(glob.glob(f"{out_dir}/cores-{cores}/{scenario}/run-*/report.json"))
            lines.append(f"| {cores} | {server_cpus} | {loadgen_cpus}{shared} | {len(reports)}/{total} | "
                         + " | ".join(cells) + " |")
        lines.append("")
        ticks = [(int(cores), cores) for cores, _, _ in pinning]
        for name, _, _ in MEASURES:
            charts.append(line_chart(f"{scenario}: {name} against --cores",
                                     [(name, "#1f77b4", None, points[name])],
                                     ticks, "--cores", name))
    with open(os.path.join(out_dir, "scale.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "scale.html"), "w") as f:
        f.write("<!doctype html><meta charset=utf-8><title>ringcast scaling</title>\n"
                + "\n".join(charts) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
