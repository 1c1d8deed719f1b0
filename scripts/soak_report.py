#!/usr/bin/env python3
"""Figures, checks, summary.md and soak.svg for one scripts/soak.sh directory (stdlib only).

    python3 scripts/soak_report.py DIR

Reads DIR/samples.csv, events.csv, meta.txt, commands.txt, healthy/report.json, healthy.exit,
churn.csv and flood.csv; computes
  - the RSS slope after warm-up: least squares over the samples between warm-up end (the first
    warmup_percent of the drivers' time) and the drivers' end, in KiB per minute;
  - fds and connections after the settle period against the baseline (samples before the
    drivers started);
  - loss at the healthy clients (the long run and every churn run);
writes DIR/summary.md and DIR/soak.svg, prints the verdict and exits 1 when a check failed.
"""

import csv
import html
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgchart  # noqa: E402

# The summary calls RSS after warm-up flat when the fitted line moves less than this share of
# the window's mean RSS from warm-up end to the drivers' end.
FLAT_PERCENT = 5.0


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                meta[key] = value
    return meta


def read_samples(path):
    rows = []
    with open(path) as f:
        for row in csv.DictReader(f):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value) if value not in ("", None) else None
                except ValueError:
                    parsed[key] = None
            if parsed.get("t_s") is not None:
                rows.append(parsed)
    return rows


def read_events(path):
    events = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            events[row["event"]] = float(row["unix_s"])
    origin = events.get("server_start", 0.0)
    return {name: t - origin for name, t in events.items()}


def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def server_counters(path):
    """{metric: value summed over cores} from a /metrics scrape, or {}."""
    totals = {}
    if not os.path.exists(path):
        return totals
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            try:
                totals[name] = totals.get(name, 0) + int(float(line.rsplit(" ", 1)[1]))
            except (IndexError, ValueError):
                continue
    return totals


def least_squares(points):
    """(slope, intercept) of y over x, or None with fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx
    return slope, my - slope * mx


def as_int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if ns >= scale:
            return f"{ns / scale:.3g}{unit}"
    return f"{ns:.0f}ns"


def time_ticks(t_max):
    step = svgchart.nice_step(t_max, 8)
    if t_max > 240:
        step = max(60.0, 60.0 * round(step / 60.0))
    ticks, t = [], 0.0
    while t <= t_max + 1e-9:
        ticks.append((t, f"{t / 60:g} min" if step >= 60 else f"{t:g}s"))
        t += step
    return ticks


def plot(path, samples, events, warm_end, fit):
    ds, de = events.get("drivers_start"), events.get("drivers_end")
    t_max = max(s["t_s"] for s in samples)
    ticks = time_ticks(t_max)

    def series(key, scale=1.0):
        return [(s["t_s"], None if s.get(key) is None else s[key] * scale) for s in samples]

    def markers(y_top):
        out = []
        for name, t, colour in (("drivers start / end", ds, "#888"), ("warm-up end", warm_end, "#d62728")):
            pts = []
            for x in (t, de) if name.startswith("drivers") else (t,):
                if x is not None:
                    pts += [(x, 0.0), (x, y_top), (x, None)]
            if pts:
                out.append((name, colour, "3,3", pts))
        return out

    rss = series("rss_kib", 1 / 1024)
    rss_top = max((y for _, y in rss if y is not None), default=1)
    rss_series = [("RSS (MiB)", "#1f77b4", "", rss)]
    if fit and de is not None:
        slope, intercept = fit
        rss_series.append((
            f"fit after warm-up: {slope * 60:+.0f} KiB/min", "#ff7f0e", "6,3",
            [(t, (slope * t + intercept) / 1024) for t in (warm_end, de)],
        ))
    charts = [
        svgchart.line_chart("Server RSS", rss_series + markers(rss_top), ticks, "time since server start",
                            "MiB", (0, t_max)),
    ]
    fds = series("fds")
    conns = series("connections")
    top = max((y for _, y in fds + conns if y is not None), default=1)
    charts.append(svgchart.line_chart(
        "Server file descriptors and WebSocket connections",
        [("fds", "#2ca02c", "", fds), ("connections (/metrics)", "#9467bd", "", conns)] + markers(top),
        ticks, "time since server start", "count", (0, t_max)))
    queued = series("queued_bytes", 1 / 1048576)
    rate = []
    for prev, cur in zip(samples, samples[1:]):
        if prev.get("messages_in") is not None and cur.get("messages_in") is not None:
            dt = cur["t_s"] - prev["t_s"]
            rate.append((cur["t_s"], max(0.0, cur["messages_in"] - prev["messages_in"]) / dt / 1000 if dt > 0 else None))
        else:
            rate.append((cur["t_s"], None))
    charts.append(svgchart.line_chart(
        "Messages received by the server (k/s, all rooms)",
        [("messages in (k/s)", "#8c564b", "", rate)] + markers(max((y for _, y in rate if y is not None), default=1)),
        ticks, "time since server start", "k msg/s", (0, t_max)))
    charts.append(svgchart.line_chart(
        "Bytes queued for clients (keepalive sweep)",
        [("queued (MiB)", "#e377c2", "", queued)] + markers(max((y for _, y in queued if y is not None), default=1)),
        ticks, "time since server start", "MiB", (0, t_max)))

    # Stack the charts in one standalone SVG with svgchart's style.
    parts, y = [], 0
    for chart in charts:
        height = int(chart.split('height="', 1)[1].split('"', 1)[0]) if chart.startswith("<svg") else 30
        if chart.startswith("<svg"):
            parts.append(chart.replace("<svg ", f'<svg x="0" y="{y}" ', 1))
        else:
            parts.append(f'<text x="10" y="{y + 20}">{html.escape(chart)}</text>')
        y += height + 8
    width = svgchart.WIDTH + 10
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}">\n')
        f.write(f"<style>{svgchart.STYLE}</style>\n")
        f.write(f'<rect width="{width}" height="{y}" fill="#fff"/>\n')
        f.write("\n".join(parts))
        f.write("\n</svg>\n")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = sys.argv[1]
    meta = read_meta(os.path.join(d, "meta.txt"))
    samples = read_samples(os.path.join(d, "samples.csv"))
    events = read_events(os.path.join(d, "events.csv"))
    if not samples:
        print("soak_report: no samples", file=sys.stderr)
        return 1
    ds = events.get("drivers_start", samples[0]["t_s"])
    de = events.get("drivers_end", samples[-1]["t_s"])
    se = events.get("settle_end", samples[-1]["t_s"])
    warmup_percent = float(meta.get("warmup_percent", 20))
    warm_end = ds + (de - ds) * warmup_percent / 100
    fd_tolerance = int(meta.get("fd_tolerance", 2))
    max_slope = float(meta["max_rss_slope"]) if meta.get("max_rss_slope") else None

    failures, notes = [], []

    # Baseline: before the drivers started.
    base = [s for s in samples if s["t_s"] < ds]
    base_fds = [s["fds"] for s in base if s.get("fds") is not None]
    base_rss = [s["rss_kib"] for s in base if s.get("rss_kib") is not None]
    fds_baseline = int(max(base_fds)) if base_fds else None
    rss_baseline = base_rss[-1] if base_rss else None

    # After the settle period: the last sample taken at or before settle_end + 1 s.
    after = [s for s in samples if de < s["t_s"] <= se + 1.0]
    end = after[-1] if after else {}
    if "server_exited_early" in events:
        failures.append(f"the server exited during the soak (last sample at t = {samples[-1]['t_s']:.0f} s; "
                        "see server.log)")
    if not after:
        failures.append("no sample after the drivers stopped (was the server still running?)")
    fds_end = as_int(end.get("fds"))
    conns_end = as_int(end.get("connections"))
    during = [s for s in samples if ds <= s["t_s"] <= de]
    peak = lambda key: max((s[key] for s in during if s.get(key) is not None), default=None)  # noqa: E731

    if fds_baseline is None or fds_end is None:
        failures.append("fds: no baseline or no sample after the settle period")
    elif fds_end > fds_baseline + fd_tolerance:
        failures.append(f"fds did not return to baseline: {fds_end} after settling vs {fds_baseline} "
                        f"before the drivers (tolerance +{fd_tolerance})")
    if conns_end is None:
        notes.append("connections after settling: /metrics not read")
    elif conns_end != 0:
        failures.append(f"{conns_end} WebSocket connections still open after the settle period")

    # RSS slope after warm-up.
    window = [(s["t_s"], s["rss_kib"]) for s in samples
              if warm_end <= s["t_s"] <= de and s.get("rss_kib") is not None]
    fit = least_squares(window)
    slope_kib_min = fit[0] * 60 if fit else None
    win_min = (de - warm_end) / 60
    if fit is None:
        notes.append("RSS slope: too few samples after warm-up")
    elif max_slope is not None and slope_kib_min > max_slope:
        failures.append(f"RSS grew {slope_kib_min:.0f} KiB/min after warm-up (limit {max_slope:g})")
    rss_win = [y for _, y in window]

    # Healthy long run.
    healthy = {}
    try:
        with open(os.path.join(d, "healthy", "report.json")) as f:
            healthy = json.load(f)["results"]
    except (OSError, ValueError, KeyError):
        failures.append("healthy run: no report.json")
    try:
        with open(os.path.join(d, "healthy.exit")) as f:
            healthy_exit = int(f.read().strip())
    except (OSError, ValueError):
        healthy_exit = None
    if healthy:
        if healthy.get("lost", 1) != 0:
            failures.append(f"healthy run lost {healthy['lost']} of {healthy.get('expected')} deliveries")
        if not healthy.get("expected"):
            failures.append("healthy run: nothing expected (no messages measured)")
        if healthy.get("duplicated") or healthy.get("reordered"):
            failures.append(f"healthy run: {healthy.get('duplicated')} duplicated, "
                            f"{healthy.get('reordered')} reordered")
    if healthy_exit != 0:
        reasons = "; ".join(healthy.get("invalid_reasons", [])) if healthy else ""
        failures.append(f"healthy loadgen exited {healthy_exit}" + (f" ({reasons})" if reasons else ""))

    # Churn runs: every client there is healthy too.
    churn = read_rows(os.path.join(d, "churn.csv"))
    churn_failed = [r for r in churn if r["exit"] != "0"]
    churn_lost = sum(as_int(r["lost"]) or 0 for r in churn)
    churn_conns = sum(as_int(r["connections_ok"]) or 0 for r in churn)
    churn_conn_failed = sum(as_int(r["connections_failed"]) or 0 for r in churn)
    if not churn:
        failures.append("churn: no run completed")
    if churn_lost:
        failures.append(f"churn runs lost {churn_lost} deliveries")
    if churn_failed:
        failures.append(f"{len(churn_failed)} of {len(churn)} churn runs failed (exit "
                        + ", ".join(sorted({r['exit'] for r in churn_failed})) + "; see churn.csv, churn/)")

    flood = read_rows(os.path.join(d, "flood.csv"))
    flood_sent = sum(as_int(r["sent"]) or 0 for r in flood)
    flood_exits = {}
    for r in flood:
        flood_exits[r["exit"]] = flood_exits.get(r["exit"], 0) + 1

    # Server's inbound rate while flooding (all rooms).
    msgs = [(s["t_s"], s["messages_in"]) for s in during if s.get("messages_in") is not None]
    msg_rate = (msgs[-1][1] - msgs[0][1]) / (msgs[-1][0] - msgs[0][0]) if len(msgs) >= 2 and msgs[-1][0] > msgs[0][0] else None

    plot(os.path.join(d, "soak.svg"), samples, events, warm_end, fit)

    verdict = "PASS" if not failures else "FAIL"
    soak_min = (de - ds) / 60
    L = []
    L.append(f"# Soak: {meta.get('ringcast_version', 'ringcast')}, {soak_min:.1f} min, {meta.get('host', '')}")
    L.append("")
    if meta.get("git_dirty") == "yes":
        L.append("**Built from a working tree with uncommitted changes** (see git commit below).")
        L.append("")
    L.append(f"Produced by `{meta.get('invocation', 'scripts/soak.sh')}` on {meta.get('date', '?')}.")
    L.append("")
    L.append(f"**Verdict: {verdict}**" + ("" if not failures else ":"))
    for f in failures:
        L.append(f"- {f}")
    L.append("")
    if fit:
        first, last = fit[1] + fit[0] * warm_end, fit[1] + fit[0] * de
        mean_rss = statistics.fmean(rss_win)
        change = (last - first) / mean_rss * 100
        shape = ("flat" if abs(change) <= FLAT_PERCENT else
                 "**growing**" if change > 0 else "shrinking")
        L.append(f"RSS after warm-up is {shape}: the fitted line changes by {change:+.1f}% of the "
                 f"mean RSS over the window (flat means within ±{FLAT_PERCENT:g}%; reported, not "
                 f"judged unless --max-rss-slope is given).")
        L.append("")
        L.append(f"**RSS after warm-up: slope {slope_kib_min:+.0f} KiB/min** (least squares over "
                 f"{len(window)} samples, t = {warm_end:.0f}-{de:.0f} s, i.e. after the first "
                 f"{warmup_percent:g}% of the drivers' time; fitted {mib(first)} -> {mib(last)}, "
                 f"{(last - first) / 1024:+.1f} MiB over {win_min:.1f} min; measured min {mib(min(rss_win))}, "
                 f"max {mib(max(rss_win))}).")
    L.append("")
    L.append("| figure | value |")
    L.append("|---|---|")
    L.append(f"| RSS baseline (before clients) | {mib(rss_baseline) if rss_baseline else 'n/a'} |")
    L.append(f"| RSS peak during the soak | {mib(peak('rss_kib')) if peak('rss_kib') else 'n/a'} |")
    L.append(f"| RSS at the end (after settling) | {mib(end['rss_kib']) if end.get('rss_kib') else 'n/a'} |")
    if fit:
        L.append(f"| RSS slope after warm-up | {slope_kib_min:+.0f} KiB/min ({slope_kib_min * 60 / 1024:+.1f} MiB/hour) |")
    L.append(f"| fds: baseline / peak / after {meta.get('settle_s', '?')} s settle | "
             f"{fds_baseline} / {as_int(peak('fds'))} / {fds_end} (tolerance +{fd_tolerance}) |")
    L.append(f"| WebSocket connections: peak / after settle | {as_int(peak('connections'))} / {conns_end} |")
    L.append(f"| server messages in, mean over the soak | {msg_rate:,.0f} msg/s |" if msg_rate is not None
             else "| server messages in | n/a |")
    L.append(f"| slow-consumer closes (server counter, end) | {as_int(end.get('slow_consumer_closes'))} |")
    L.append("")
    L.append("## Drivers")
    L.append("")
    if healthy:
        c = healthy.get("connections", {})
        st = healthy.get("stalled", {})
        lat = healthy.get("latency_ns", {})
        L.append(f"- **healthy** (one run, room soak-healthy): exit {healthy_exit}, "
                 f"{'valid' if healthy.get('valid') else 'INVALID'}; connections {c.get('ok')} ok, "
                 f"{c.get('failed')} failed, {c.get('disconnected')} disconnected; sent {healthy.get('sent')}, "
                 f"expected {healthy.get('expected')}, delivered {healthy.get('delivered')}, "
                 f"**lost {healthy.get('lost')}**, duplicated {healthy.get('duplicated')}, reordered "
                 f"{healthy.get('reordered')}; stalled subscribers {st.get('connections')}, closed by the "
                 f"server {st.get('closed_by_server')}; latency p50 {fmt_ns(lat.get('p50'))}, p99 "
                 f"{fmt_ns(lat.get('p99'))}, max {fmt_ns(lat.get('max'))}.")
        if healthy.get("invalid_reasons"):
            L.append(f"  Invalid reasons: {'; '.join(healthy['invalid_reasons'])}")
    else:
        L.append(f"- **healthy**: no report (exit {healthy_exit}).")
    L.append(f"- **churn** (room soak-churn): {len(churn)} runs, {len(churn_failed)} failed; "
             f"{churn_conns} connections opened and closed ({churn_conn_failed} failed to connect); "
             f"**lost {churn_lost}**. Per run: churn.csv.")
    if flood:
        L.append(f"- **flood** (room soak-flood, --rate {meta.get('flood_rate', '')} asked): {len(flood)} "
                 f"segments, {flood_sent:,} messages sent in total; exits "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(flood_exits.items()))
                 + " (3 = invalid, expected for a flooder: send lag, connection closed by the server). "
                 "Per segment: flood.csv.")
    elif meta.get("flood") == "0":
        L.append("- **flood**: off (--no-flood).")
    counters = server_counters(os.path.join(d, "server-metrics-end.txt"))
    closes = [f"{name.removeprefix('ringcast_')} {value:,}" for name, value in sorted(counters.items())
              if name.endswith("_total") and ("close" in name or "pause" in name) and value]
    if closes:
        L.append(f"- server counters at the end (summed over cores): {', '.join(closes)}.")
    for n in notes:
        L.append(f"- note: {n}")
    L.append("")
    L.append("## Plot")
    L.append("")
    L.append("![RSS, fds, connections, inbound rate and queued bytes over time](soak.svg)")
    L.append("")
    L.append("Samples (one a second): `samples.csv` (t_s since server start, rss_kib = VmRSS, fds = "
             "entries of /proc/PID/fd, connections and the rest from `GET /metrics`, summed over cores). "
             "Phase times: `events.csv` (Unix seconds).")
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```")
    try:
        with open(os.path.join(d, "commands.txt")) as f:
            L.append(f.read().rstrip())
    except OSError:
        L.append("(commands.txt missing)")
    L.append("```")
    L.append("")
    L.append("## Provenance")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    for key in ("date", "git_commit", "git_dirty", "ringcast_version", "loadgen_version", "rustc",
                "kernel", "cpu", "cpus_online", "memory", "ulimit_n", "server_cpus", "driver_cpus"):
        L.append(f"| {key} | {meta.get(key, 'n/a')} |")
    L.append("")
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("\n".join(L))

    print(f"soak: {verdict}")
    if fit:
        print(f"soak: RSS slope after warm-up {slope_kib_min:+.0f} KiB/min, {shape.strip('*')} "
              f"({mib(min(rss_win))} .. {mib(max(rss_win))})")
    print(f"soak: fds baseline {fds_baseline}, after settle {fds_end}; connections after settle {conns_end}")
    if healthy:
        print(f"soak: healthy lost {healthy.get('lost')} of {healthy.get('expected')}, exit {healthy_exit}; "
              f"churn {len(churn)} runs, {len(churn_failed)} failed, lost {churn_lost}")
    for f in failures:
        print(f"soak: FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
