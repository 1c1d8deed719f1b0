"""A minimal inline-SVG line chart for scripts/plot.py (Python 3 standard library only).

One function, line_chart(), draws several named series on shared axes with a legend. The x axis
takes explicit ticks so the caller can draw a log-percentile axis ("90%", "99%", ...) the way
HdrHistogram's plotter does; the y axis picks round ticks itself.
"""

import html
import math

WIDTH, PLOT_HEIGHT = 760, 240
LEFT, RIGHT, TOP, AXIS_SPACE, LEGEND_ROW = 70, 36, 30, 44, 16


def nice_step(span, target_ticks=5):
    """A 1/2/5 x 10^k step giving about target_ticks ticks over span."""
    if span <= 0:
        return 1.0
    raw = span / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def format_tick(value):
    """Short tick label: no trailing zeros, thousands as k."""
    if abs(value) >= 10000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def line_chart(title, series, x_ticks, x_label, y_label, x_range=None):
    """An <svg> element as a string.

    series: [(name, colour, dash, [(x, y), ...])]; points with y None are gaps.
    x_ticks: [(x, label)]; x_range: (min, max) or None to fit the data.
    """
    points = [(x, y) for _, _, _, pts in series for x, y in pts if y is not None]
    if not points:
        return f'<p class="empty">{html.escape(title)}: no data</p>'
    x_min, x_max = x_range or (min(x for x, _ in points), max(x for x, _ in points))
    if x_max <= x_min:
        x_max = x_min + 1
    y_max = max(y for _, y in points)
    y_step = nice_step(y_max if y_max > 0 else 1)
    y_top = y_step * max(1, math.ceil(y_max / y_step))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT
    legend, legend_rows = legend_layout([(name, colour, dash) for name, colour, dash, _ in series])
    height = TOP + plot_h + AXIS_SPACE + legend_rows * LEGEND_ROW

    def sx(x):
        return LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def sy(y):
        return TOP + plot_h - y / y_top * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{WIDTH / 2}" y="18" class="title">{html.escape(title)}</text>',
    ]
    tick = 0.0
    while tick <= y_top + y_step / 2:
        y = sy(tick)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="ytick">{format_tick(tick)}</text>')
        tick += y_step
    for x, label in x_ticks:
        if x_min <= x <= x_max:
            px = sx(x)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{TOP + plot_h}" class="grid"/>')
            out.append(f'<text x="{px:.1f}" y="{TOP + plot_h + 16}" class="xtick">{html.escape(label)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h + 34}" class="xlabel">{html.escape(x_label)}</text>')
    out.append(
        f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" class="ylabel">'
        f"{html.escape(y_label)}</text>"
    )
    for name, colour, dash, pts in series:
        segments, current = [], []
        for x, y in pts:
            if y is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{sx(x):.1f},{sy(y):.1f}")
        if current:
            segments.append(current)
        for segment in segments:
            out.append(
                f'<polyline points="{" ".join(segment)}" fill="none" stroke="{colour}" '
                f'stroke-width="1.6" stroke-dasharray="{dash}"><title>{html.escape(name)}</title></polyline>'
            )
    for name, colour, dash, x, row in legend:
        y = TOP + plot_h + AXIS_SPACE + row * LEGEND_ROW + 8
        out.append(
            f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" '
            f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        out.append(f'<text x="{x + 22}" y="{y}" class="legend">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def legend_layout(entries):
    """Place legend entries left to right, wrapping into rows: ([(..., x, row)], rows)."""
    placed, x, row = [], LEFT, 0
    for name, colour, dash in entries:
        width = 30 + 6.2 * len(name)
        if x > LEFT and x + width > WIDTH - RIGHT:
            x, row = LEFT, row + 1
        placed.append((name, colour, dash, x, row))
        x += width
    return placed, row + 1 if entries else 0


STYLE = """
svg { background: #fff; margin: 4px 8px 4px 0; border: 1px solid #ddd; }
svg text { font: 11px sans-serif; fill: #333; }
svg .title { font-size: 13px; font-weight: bold; text-anchor: middle; }
svg .ytick { text-anchor: end; }
svg .xtick, svg .xlabel, svg .ylabel { text-anchor: middle; }
svg .grid { stroke: #eee; }
svg .frame { fill: none; stroke: #999; }
"""
