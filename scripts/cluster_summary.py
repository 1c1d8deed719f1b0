#!/usr/bin/env python3
"""The summary table of scripts/bench-cluster.sh: medians and ranges over the runs of each
setup (single node, two-node cluster, and the cluster with the baseline build when
bench-cluster.sh was given --baseline) from their loadgen report.json files.

Usage: scripts/cluster_summary.py DIR   (DIR/{single,baseline,cluster}/run-*/report.json)
"""
import json
import pathlib
import statistics
import sys


def figures(report):
    results = report["results"]
    server = results.get("server") or {}
    row = {
        "delivered": results["delivered"],
        "lost": results["lost"],
        "cpu_us": server.get("cpu_us_per_delivery"),
        "user_us": server.get("user_us_per_delivery"),
        "p50": results["latency_ns"]["p50"],
        "p99": results["latency_ns"]["p99"],
    }
    nodes = results.get("nodes")
    for kind in ("same_node", "cross_node"):
        latency = (nodes or {}).get(kind, {}).get("latency_ns", {})
        row[kind + "_p50"] = latency.get("p50")
        row[kind + "_p99"] = latency.get("p99")
    return row


def cell(values, scale=1.0, digits=2):
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main():
    root = pathlib.Path(sys.argv[1])
    columns = [
        ("runs", None),
        ("lost", None),
        ("CPU µs/delivery (all server-side processes)", ("cpu_us", 1.0, 3)),
        ("user µs/delivery", ("user_us", 1.0, 3)),
        ("p50 ms", ("p50", 1e-6, 2)),
        ("p99 ms", ("p99", 1e-6, 2)),
        ("same-node p50 / p99 ms", (("same_node_p50", "same_node_p99"), 1e-6, 2)),
        ("cross-node p50 / p99 ms", (("cross_node_p50", "cross_node_p99"), 1e-6, 2)),
    ]
    print("| setup | " + " | ".join(name for name, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    labels = {
        "single": "1 node",
        "baseline": "2 nodes + Redis, baseline build",
        "cluster": "2 nodes + Redis",
    }
    for setup, label in labels.items():
        rows = [figures(json.loads(path.read_text()))
                for path in sorted(root.glob(f"{setup}/run-*/report.json"))]
        if not rows:
            continue
        cells = [str(len(rows)), str(sum(r["lost"] for r in rows))]
        for _, spec in columns[2:]:
            keys, scale, digits = spec
            if isinstance(keys, tuple):
                cells.append(" / ".join(cell([r[k] for r in rows], scale, digits) for k in keys))
            else:
                cells.append(cell([r[keys] for r in rows], scale, digits))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("Medians, with the range over the runs in brackets. The cluster's CPU is the sum of both")
    print("nodes and redis-server over the measured window, divided by all deliveries.")


if __name__ == "__main__":
    main()
