#!/usr/bin/env python3
"""Check loadgen's run files with HdrHistogram implementations loadgen does not contain.

    scripts/hdr_check.py --jar /usr/share/java/hdrhistogram.jar RUN_DIR...

Run by scripts/check-hdr.sh (which installs Java's HdrHistogram and, in a venv, the PyPI
`hdrhistogram` package this imports). For each run directory (report.json, latency.hlog,
latency.hgrm, timeline.csv) it fails unless:

- Python's decoder reads every histogram of report.json (compressed V2) and finds the report's
  count, max, mean and percentiles (the value at rank ceil(q * n), loadgen's and Java's rule;
  Python's own get_value_at_percentile rounds q * n to nearest);
- the untagged intervals of latency.hlog (Python's HistogramLogReader) add up to exactly
  report.json's latency histogram, and the `latency_all` intervals match timeline.csv row by
  row (count = delivered, max = latency_max_ns);
- Java's HistogramLogProcessor run without `-tag` reads the log and writes, for the untagged
  series, the very latency.hgrm loadgen wrote (byte for byte, less its two heading comments),
  and its total count and percentiles are report.json's;
- HistogramLogProcessor with `-tag latency_all` gives timeline.csv's per-second counts and maxima;
- Python's output_percentile_distribution gives latency.hgrm's rows (values, percentiles,
  counts).
Prints one line per run; exit 1 when any check failed.
"""

import argparse
import base64
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

QUANTILES = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("p9999", 0.9999)]
RATIO = 1e6  # ns -> ms, the ratio of latency.hgrm and of the log's Interval_Max


class Failures:
    def __init__(self, run):
        self.run = run
        self.messages = []

    def check(self, ok, message):
        if not ok:
            self.messages.append(message)
        return ok


def value_at_quantile(histogram, quantile):
    """The value at a quantile by loadgen's (and Rust hdrhistogram's) rule: the highest
    equivalent value of the first bucket whose running count reaches max(1, ceil(q * n)).
    Python's get_value_at_percentile rounds q * n to nearest instead, which picks another
    bucket where values are sparse (a p99 of 52 connect times)."""
    rank = max(1, math.ceil(quantile * histogram.get_total_count()))
    running = 0
    for item in histogram.get_recorded_iterator():
        running += item.count_added_in_this_iter_step
        if running >= rank:
            return item.value_iterated_to
    return 0


def one_bucket(a, b):
    """Equal, or adjacent buckets of a 3-significant-digit histogram (width <= value/1024)."""
    return a == b or abs(a - b) <= max(abs(a), abs(b)) / 1000.0 + 1


def ms_close(java_ms, ns):
    """A value Java printed in ms with 3 decimals against ns, allowing one bucket."""
    return abs(java_ms - ns / RATIO) <= 0.0005 + 1e-9 or one_bucket(java_ms * RATIO, ns)


def decode(text):
    return HdrHistogram.decode(text)


def read_log(path):
    """[(tag or None, histogram)] of every interval, in file order."""
    reader = HistogramLogReader(path, HdrHistogram(1, 100_000_000_000, 3))
    intervals = []
    while True:
        histogram = reader.get_next_interval_histogram()
        if histogram is None:
            break
        intervals.append((histogram.get_tag(), histogram))
    reader.close()
    return intervals


def hgrm_rows(text):
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) in (3, 4) and not line.startswith("#") and fields[0] != "Value":
            rows.append((float(fields[0]), float(fields[1]), int(fields[2])))
    return rows


def java(jar, *args):
    return subprocess.run(
        ["java", "-cp", jar, "org.HdrHistogram.HistogramLogProcessor", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_run(run, jar):
    f = Failures(run)
    with open(os.path.join(run, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    results = report["results"]
    with open(os.path.join(run, "latency.hgrm"), encoding="utf-8") as handle:
        hgrm = handle.read()
    with open(os.path.join(run, "timeline.csv"), encoding="utf-8", newline="") as handle:
        timeline = list(csv.DictReader(handle))
    log_path = os.path.join(run, "latency.hlog")
    with open(log_path, encoding="utf-8") as handle:
        log_text = handle.read()
    f.check("#[Histogram log format version 1.3]" in log_text.splitlines(), "log: no version line")
    f.check(
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
        in log_text.splitlines(),
        "log: no legend line",
    )

    # 1. report.json's histograms, decoded by Python.
    histograms = {}
    for name, text in results["histograms"].items():
        f.check(base64.b64decode(text)[:4] == b"\x1c\x84\x93\x14", f"report: {name} is not compressed V2")
        histogram = decode(text)
        histograms[name] = histogram
        summary = results.get(f"{name}_ns")
        if summary is None:
            continue
        f.check(histogram.get_total_count() == summary["count"],
                f"report {name}: count {summary['count']} != python {histogram.get_total_count()}")
        if summary["count"] == 0:
            continue
        f.check(histogram.get_max_value() == summary["max"],
                f"report {name}: max {summary['max']} != python {histogram.get_max_value()}")
        f.check(abs(histogram.get_mean_value() - summary["mean"]) <= 1e-9 * max(1.0, summary["mean"]),
                f"report {name}: mean {summary['mean']} != python {histogram.get_mean_value()}")
        for key, quantile in QUANTILES:
            value = value_at_quantile(histogram, quantile)
            f.check(value == summary[key], f"report {name}: {key} {summary[key]} != python {value}")
    latency = histograms["latency"]

    # 2. The log, read by Python: untagged = report's latency; latency_all = timeline rows.
    intervals = read_log(log_path)
    untagged = HdrHistogram(1, 100_000_000_000, 3)
    for tag, histogram in intervals:
        if tag is None:
            untagged.add(histogram)
    f.check(untagged.get_total_count() == latency.get_total_count(),
            f"log: untagged count {untagged.get_total_count()} != report {latency.get_total_count()}")
    if latency.get_total_count():
        f.check(untagged.get_max_value() == latency.get_max_value(), "log: untagged max != report max")
        for key, quantile in QUANTILES:
            f.check(value_at_quantile(untagged, quantile) == results["latency_ns"][key],
                    f"log: untagged {key} != report's")
    every = [h for tag, h in intervals if tag == "latency_all"]
    f.check(len(every) == len(timeline), f"log: {len(every)} latency_all intervals, timeline {len(timeline)} rows")
    for row, histogram in zip(timeline, every):
        f.check(histogram.get_total_count() == int(row["delivered"]),
                f"log second {row['second']}: latency_all count {histogram.get_total_count()} != timeline {row['delivered']}")
        f.check(histogram.get_max_value() == int(row["latency_max_ns"]),
                f"log second {row['second']}: max {histogram.get_max_value()} != timeline {row['latency_max_ns']}")

    # 3. latency.hgrm's rows against Python's histogram: each row's count is the number of
    # values up to its value, and reaches its percentile (Python's own percentile iterator
    # steps differently from Java's and wrk2's, so its rows are not compared one to one).
    total = latency.get_total_count()
    if total:
        cumulative = []
        running = 0
        for item in latency.get_recorded_iterator():
            running += item.count_added_in_this_iter_step
            cumulative.append((item.value_iterated_to / RATIO, running))
        ours = hgrm_rows(hgrm)
        f.check(len(ours) > 0 and ours[-1][2] == total, "hgrm: last row's count is not the total")
        for value, percentile, count in ours:
            known = any(abs(v - value) <= 0.0005 + 1e-9 and c == count for v, c in cumulative)
            if not (known and 100.0 * count / total >= percentile * 100.0 - 1e-9):
                f.check(False, f"hgrm row {value} {percentile} {count}: not python's count up to that value")
                break
        match = re.search(r"SubBuckets\s+=\s+(\d+)", hgrm)
        f.check(match is not None and int(match.group(1)) == latency.sub_bucket_count,
                f"hgrm: SubBuckets {match and match.group(1)} != {latency.sub_bucket_count}")
        match = re.search(r"Total count\s+=\s+(\d+)", hgrm)
        f.check(match is not None and int(match.group(1)) == total, "hgrm: Total count differs")

    # 4. Java's HistogramLogProcessor, without -tag (the untagged series) and with -tag.
    java_p99 = "-"
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "untagged")
        java(jar, "-i", log_path, "-o", plain)
        with open(plain + ".hgrm", encoding="utf-8") as handle:
            java_hgrm = [l for l in handle.read().splitlines(True)
                         if not l.startswith(("#[Overall percentile distribution", "#[StartTime:"))]
        if latency.get_total_count():
            f.check("".join(java_hgrm) == hgrm, "hgrm: differs from HistogramLogProcessor's (diff them)")
            if "".join(java_hgrm) != hgrm:
                with open(os.path.join(tmp, "java.hgrm"), "w", encoding="utf-8") as out:
                    out.writelines(java_hgrm)
                print(subprocess.run(["diff", os.path.join(tmp, "java.hgrm"), os.path.join(run, "latency.hgrm")],
                                     capture_output=True, text=True).stdout[:2000], file=sys.stderr)
        with open(plain, encoding="utf-8") as handle:
            lines = [l for l in handle if l.startswith(tuple("0123456789"))]
        totals = re.search(r"T:(\d+) \(\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \)",
                           lines[-1] if lines else "")
        if f.check(totals is not None, "HistogramLogProcessor printed no interval"):
            count = int(totals.group(1))
            summary = results["latency_ns"]
            f.check(count == summary["count"], f"java: total count {count} != report {summary['count']}")
            if count:
                java_values = [float(totals.group(i)) for i in range(2, 8)]
                for (key, _), value in zip(QUANTILES + [("max", 100.0)], java_values):
                    f.check(abs(value - summary[key] / RATIO) <= 0.0005 + 1e-9,
                            f"java: {key} {value} ms != report {summary[key]} ns")
                java_p99 = f"{java_values[2]:.3f}ms"

        tagged = os.path.join(tmp, "all")
        java(jar, "-csv", "-tag", "latency_all", "-i", log_path, "-o", tagged)
        with open(tagged, encoding="utf-8") as handle:
            rows = [r for r in csv.reader(l for l in handle if not l.startswith("#"))][1:]
        f.check(len(rows) == len(timeline), f"java -tag latency_all: {len(rows)} intervals, timeline {len(timeline)}")
        for java_row, row in zip(rows, timeline):
            f.check(int(java_row[1]) == int(row["delivered"]),
                    f"java -tag second {row['second']}: count {java_row[1]} != timeline {row['delivered']}")
            f.check(ms_close(float(java_row[4]), int(row["latency_max_ns"])),
                    f"java -tag second {row['second']}: max {java_row[4]} != timeline {row['latency_max_ns']}")

    summary = results["latency_ns"]
    status = "ok  " if not f.messages else "FAIL"
    report_p99 = "-" if summary.get("p99") is None else f"{summary['p99'] / RATIO:.3f}ms"
    print(f"{status} {run}: n={summary['count']} p99 report={report_p99} "
          f"java={java_p99} python={value_at_quantile(latency, 0.99) / RATIO:.3f}ms; "
          f"{len(intervals)} intervals, {len(timeline)} timeline rows")
    for message in f.messages:
        print(f"     {message}")
    return not f.messages


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jar", required=True, help="HdrHistogram's jar (libhdrhistogram-java)")
    parser.add_argument("runs", nargs="+", help="run directories")
    args = parser.parse_args()
    failed = [run for run in args.runs if not check_run(run, args.jar)]
    print(f"hdr check: {len(args.runs) - len(failed)} of {len(args.runs)} runs agree with "
          f"HdrHistogram (Java HistogramLogProcessor, Python hdrhistogram)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
