#!/usr/bin/env python3
"""Draw a bench result directory, or a comparison of two, as one self-contained HTML page.

    scripts/plot.py results/A -o a.html
    scripts/plot.py results/OLD results/NEW -o compare.html

Per scenario: the latency percentile spectrum of every run (x: 1/(1-p) on a log scale labelled
0%, 90%, 99%, 99.9%, ... as HdrHistogram's plotter draws it; from latency.hgrm), the per-second
delivered messages and p99 latency (from timeline.csv), and a table of each run's figures
(from report.json). Inline SVG and CSS only: no script, no external URL. Standard library only.
"""

import argparse
import html
import math
import os
import sys

import benchresults as br
import svgchart

# One hue per result directory (shades per run), plus a dash pattern so the two directories
# stay apart in greyscale too.
PALETTES = [
    ("#1d4ed8", "#60a5fa", "#1e3a8a", "#93c5fd", "#3b82f6"),
    ("#c2410c", "#fb923c", "#7c2d12", "#fdba74", "#ea580c"),
]
DASHES = ["", "6 3"]


def percentile_ticks(max_nines):
    """(x, label) ticks for 0%, 90%, 99%, ... where x = log10(1/(1-p)) = number of nines."""
    ticks = [(0.0, "0%")]
    for nines in range(1, max_nines + 1):
        ticks.append((float(nines), f"{100 - 100 / 10**nines:.{max(0, nines - 2)}f}%"))
    return ticks


def spectrum_points(hgrm_path):
    """[(nines, latency ms)] of one .hgrm file; p = 1 (the max) sits at the last finite x."""
    to_ms = br.UNIT_NS.get(br.hgrm_unit(hgrm_path), 1e6) / 1e6
    points = []
    for percentile, value in br.parse_hgrm(hgrm_path):
        if percentile < 1.0:
            points.append((math.log10(1.0 / (1.0 - percentile)), value * to_ms))
        elif points:
            points.append((points[-1][0], value * to_ms))
    return points


def column_unit_to_ms(name):
    """Scale factor to ms from a latency column name's unit suffix (ns when none is given)."""
    for suffix, scale in (("_ms", 1.0), ("_us", 1e-3), ("_s", 1e3), ("_ns", 1e-6)):
        if name.endswith(suffix):
            return scale
    return 1e-6


def timeline_points(csv_path):
    """(delivered/s, p99 ms, connections open) points from one timeline.csv; empty lists for
    columns it lacks."""
    columns = br.read_timeline(csv_path)
    time_col = br.pick_column(columns, r"(elapsed_)?(second|sec|t|time)(_s)?", r".*second.*")
    delivered_col = br.pick_column(columns, r"delivered(_per_sec|_per_s|/s|_ps)?", r".*delivered.*")
    p99_col = br.pick_column(columns, r"(latency_)?p99(_ns|_us|_ms)?", r".*p99(?!\d).*")
    xs = columns[time_col] if time_col else list(range(len(next(iter(columns.values()), []))))
    delivered = list(zip(xs, columns[delivered_col])) if delivered_col else []
    p99 = []
    if p99_col:
        scale = column_unit_to_ms(p99_col)
        # A second without deliveries has no latency (loadgen writes 0): leave a gap.
        counts = columns[delivered_col] if delivered_col else [1] * len(xs)
        p99 = [(x, None if v is None or not n else v * scale)
               for x, v, n in zip(xs, columns[p99_col], counts)]
    open_col = br.pick_column(columns, r"connections(_open)?")
    connections = list(zip(xs, columns[open_col])) if open_col else []
    return tuple([(x, y) for x, y in points if x is not None] for points in (delivered, p99, connections))


def run_table(rows):
    """HTML table of each run's figures: rows = [(series name, metrics or None)]."""
    head = ["run", "valid", "delivered/s", "p50", "p99", "p99.9", "max", "lost",
            "server CPU-s/1M", "RSS/conn", "connect p99"]
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for name, m in rows:
        if m is None:
            out.append(f"<tr><td>{html.escape(name)}</td><td colspan='{len(head) - 1}'>no report.json</td></tr>")
            continue
        cells = [
            name,
            {True: "yes", False: "NO"}.get(m["valid"], "?"),
            "-" if m["delivered_per_sec"] is None else f"{m['delivered_per_sec']:,.0f}",
            br.format_ns(m["p50_ns"]), br.format_ns(m["p99_ns"]), br.format_ns(m["p999_ns"]),
            br.format_ns(m["max_ns"]),
            "-" if m["lost"] is None else f"{m['lost']:.0f}",
            "-" if m["server_cpu_s_per_million"] is None else f"{m['server_cpu_s_per_million']:.2f}",
            "-" if m["server_rss_per_conn_bytes"] is None else f"{m['server_rss_per_conn_bytes'] / 1024:.1f} KiB",
            br.format_ns(m["connect_p99_ns"]),
        ]
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def scenario_section(scenario, datasets):
    """The charts and run table of one scenario across the datasets that have it."""
    spectra, delivered, p99, connections, rows = [], [], [], [], []
    for index, (label, runs_by_scenario) in enumerate(datasets):
        palette, dash = PALETTES[index % len(PALETTES)], DASHES[index % len(DASHES)]
        for run_number, run_dir in enumerate(runs_by_scenario.get(scenario, [])):
            name = f"{label} {os.path.basename(run_dir)}"
            colour = palette[run_number % len(palette)]
            hgrm = os.path.join(run_dir, "latency.hgrm")
            if os.path.exists(hgrm):
                spectra.append((name, colour, dash, spectrum_points(hgrm)))
            timeline = os.path.join(run_dir, "timeline.csv")
            if os.path.exists(timeline):
                per_second, p99_per_second, open_per_second = timeline_points(timeline)
                delivered.append((name, colour, dash, per_second))
                p99.append((name, colour, dash, p99_per_second))
                connections.append((name, colour, dash, open_per_second))
            report = br.load_report(run_dir)
            rows.append((name, None if report is None else br.run_metrics(report)))

    max_x = max((x for _, _, _, pts in spectra for x, _ in pts), default=3.0)
    nines = max(3, math.ceil(max_x))
    parts = [f'<section><h2 id="{html.escape(scenario)}">{html.escape(scenario)}</h2>']
    parts.append(svgchart.line_chart(
        f"{scenario}: latency by percentile", spectra, percentile_ticks(nines),
        "percentile (log scale of 1/(1-p))", "latency (ms)", x_range=(0.0, float(nines))))
    ticks = sorted({x for _, _, _, pts in delivered for x, _ in pts})
    step = max(1, math.ceil(len(ticks) / 12))
    time_ticks = [(x, f"{x:g}") for x in ticks[::step]]
    parts.append(svgchart.line_chart(
        f"{scenario}: delivered messages per second", delivered, time_ticks, "second", "delivered/s"))
    parts.append(svgchart.line_chart(
        f"{scenario}: p99 latency per second", p99, time_ticks, "second", "p99 (ms)"))
    parts.append(svgchart.line_chart(
        f"{scenario}: connections open", connections, time_ticks, "second", "connections"))
    parts.append(run_table(rows))
    parts.append("</section>")
    return "\n".join(parts)


def provenance(result_dir):
    """The result dir's README.md as preformatted text (collapsed), or '' when missing."""
    try:
        with open(os.path.join(result_dir, "README.md"), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return ""
    return (f"<details><summary>Provenance of {html.escape(result_dir)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>")


PAGE_STYLE = """
body { font: 14px sans-serif; margin: 20px; color: #222; max-width: 1600px; }
h2 { margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 8px 0; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { font-size: 11px; background: #f7f7f7; padding: 8px; overflow-x: auto; }
nav a { margin-right: 10px; }
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="one result dir, or two to compare")
    parser.add_argument("-o", "--output", required=True, help="the HTML file to write")
    args = parser.parse_args()
    if len(args.dirs) > 2:
        parser.error("give one result directory, or two to compare")

    datasets = []
    for result_dir in args.dirs:
        if not os.path.isdir(result_dir):
            parser.error(f"not a directory: {result_dir}")
        label = os.path.basename(os.path.normpath(result_dir))
        datasets.append((label, br.scenarios(result_dir)))
    names = []
    for _, runs_by_scenario in datasets:
        names += [s for s in runs_by_scenario if s not in names]
    if not names:
        print(f"no runs found in {', '.join(args.dirs)}", file=sys.stderr)
        return 1

    title = " vs ".join(label for label, _ in datasets)
    body = [f"<h1>ringcast benchmark: {html.escape(title)}</h1>"]
    if len(datasets) == 2:
        body.append(f"<p>Solid blue: {html.escape(args.dirs[0])}; dashed orange: "
                    f"{html.escape(args.dirs[1])}.</p>")
    body.append("<nav>" + "".join(f'<a href="#{html.escape(n)}">{html.escape(n)}</a>' for n in names) + "</nav>")
    body += [provenance(d) for d in args.dirs]
    body += [scenario_section(name, datasets) for name in names]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}{svgchart.STYLE}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
