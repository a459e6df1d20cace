"""Small inline SVG charts drawn in Python (no JavaScript, no external files).

Every chart is one ``<svg data-chart="...">`` element with a fixed viewBox that scales to
the page width; the shapes that carry data (bars, cells, the curve) have ``class="mark"``,
so a test can count what was drawn. Every text that may come from data goes through ``esc``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from tierflow.report.html import esc

FONT = "12px"
AXIS = "#6b7280"
GRID = "#e5e7eb"
TEXT = "#111827"
UPLIFT_COLOR = "#1e8449"
LOSS_COLOR = "#c0392b"
UNKNOWN_COLOR = "#9ca3af"

Fmt = Callable[[float], str]


def _n(v: float) -> str:
    """A coordinate, one decimal, no trailing zeros."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def short(v: float) -> str:
    """Axis label: 1.2M, 350k, 12."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}B"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:,.0f}" if a >= 10 or v == int(v) else f"{v:.2g}"


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (lo <= 0 <= hi is the usual case); whole
    numbers only when ``integer`` (counts)."""
    if hi <= lo:
        hi = lo + 1
    span = hi - lo
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if span / step <= count:
            break
    if integer:
        step = max(1, round(step))
    start = math.floor(lo / step + 1e-9)
    ticks = [round(start * step, 10)]
    while ticks[-1] < hi - step * 1e-6 or len(ticks) < 2:  # the last tick reaches hi
        ticks.append(round((start + len(ticks)) * step, 10))
    return ticks


def _open(chart: str, width: int, height: int, label: str) -> list[str]:
    return [
        f'<svg data-chart="{esc(chart)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{esc(label)}" font-family="inherit" font-size="{FONT}">',
        f"<title>{esc(label)}</title>",
    ]


def _text(x: float, y: float, s: str, anchor: str = "start", fill: str = TEXT, extra: str = "") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{fill}"{extra}>{esc(s)}</text>'


def _clip(s: str, chars: int) -> str:
    return s if len(s) <= chars else s[: chars - 1] + "…"


def legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for name, color in items:
        out.append(f'<rect x="{_n(x)}" y="{_n(y - 10)}" width="12" height="12" fill="{color}" rx="2"/>')
        out.append(_text(x + 17, y, name))
        x += 30 + 7.5 * len(name)
    return out


def hbars(
    chart: str,
    label: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Fmt,
    *,
    stacked: bool = False,
    width: int = 760,
    label_chars: int = 34,
    axis_fmt: Fmt = short,
    integer: bool = False,
) -> str:
    """Horizontal bars, one row per category; several series side by side or stacked."""
    groups = 1 if stacked else len(series)
    bar_h = 18
    row_h = bar_h * groups + 12
    left = 16 + 7.5 * min(label_chars, max((len(c) for c in categories), default=4))
    right = 90
    top = 30 if len(series) > 1 else 10
    height = top + row_h * len(categories) + 28
    plot_w = width - left - right
    totals = [sum(s[2][i] for s in series) for i in range(len(categories))]
    vmax = max(totals if stacked else [v for s in series for v in s[2]], default=0) or 1
    ticks = nice_ticks(0, vmax, 4, integer)
    vmax = ticks[-1]
    out = _open(chart, width, height, label)
    if len(series) > 1:
        out += legend([(name, color) for name, color, _ in series], left, 16)
    bottom = top + row_h * len(categories)
    for t in ticks:
        x = left + plot_w * t / vmax
        out.append(f'<line x1="{_n(x)}" y1="{top}" x2="{_n(x)}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(_text(x, bottom + 16, axis_fmt(t), "middle", AXIS))
    for i, cat in enumerate(categories):
        y0 = top + row_h * i + 6
        out.append(_text(left - 6, y0 + row_h / 2, _clip(cat, label_chars), "end", extra=' dy="-2"'))
        x = left
        for j, (name, color, values) in enumerate(series):
            v = values[i]
            if stacked and v <= 0:
                continue  # an empty segment draws nothing
            w = plot_w * v / vmax
            y = y0 if stacked else y0 + bar_h * j
            out.append(
                f'<rect class="mark" x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0))}" height="{bar_h - 2}"'
                f' fill="{color}">'
                f"<title>{esc(cat)} · {esc(name)}: {esc(fmt(v))}</title></rect>"
            )
            if stacked:
                x += w
            else:
                out.append(_text(left + w + 4, y + bar_h - 5, fmt(v), fill=AXIS))
        if stacked:
            out.append(_text(x + 4, y0 + bar_h - 5, fmt(totals[i]), fill=AXIS))
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append("</svg>")
    return "\n".join(out)


def stacked_columns(
    chart: str,
    label: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Fmt,
    *,
    width: int = 760,
    height: int = 300,
    highlight: int | None = None,
    max_columns: int = 60,
) -> str:
    """Stacked columns over time, one per x label; beyond ``max_columns`` labels, columns
    would be thinner than a pixel, so the series are drawn as stacked areas instead."""
    left, right, top, bottom_pad = 56, 40, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    n = max(len(x_labels), 1)
    totals = [sum(s[2][i] for s in series) for i in range(len(x_labels))]
    ticks = nice_ticks(0, max(totals, default=0) or 1, 4, integer=True)
    vmax = ticks[-1]
    slot = plot_w / n
    bar_w = slot * 0.7
    out = _open(chart, width, height, label)
    out += legend([(name, color) for name, color, _ in series], left, 16)
    base = top + plot_h

    def py(v: float) -> float:
        return base - plot_h * v / vmax

    for t in ticks:
        out.append(
            f'<line x1="{left}" y1="{_n(py(t))}" x2="{width - right}" y2="{_n(py(t))}" stroke="{GRID}"/>'
        )
        out.append(_text(left - 6, py(t) + 4, short(t), "end", AXIS))
    below = [0.0] * len(x_labels)
    if len(x_labels) > max_columns:
        xs = [left + slot * i + slot / 2 for i in range(len(x_labels))]
        for name, color, values in series:
            above = [b + v for b, v in zip(below, values, strict=True)]
            edge = [f"{_n(x)},{_n(py(v))}" for x, v in zip(xs, above, strict=True)]
            back = [f"{_n(x)},{_n(py(v))}" for x, v in reversed(list(zip(xs, below, strict=True)))]
            out.append(
                f'<polygon class="mark" points="{" ".join(edge + back)}" fill="{color}">'
                f"<title>{esc(name)}</title></polygon>"
            )
            below = above
    else:
        for i, xl in enumerate(x_labels):
            x = left + slot * i + (slot - bar_w) / 2
            for name, color, values in series:
                y, h = py(below[i] + values[i]), plot_h * values[i] / vmax
                below[i] += values[i]
                out.append(
                    f'<rect class="mark" x="{_n(x)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(h)}"'
                    f' fill="{color}"><title>{esc(xl)} · {esc(name)}: {esc(fmt(values[i]))}</title></rect>'
                )
            if highlight == i:
                out.append(
                    f'<rect x="{_n(x - 1)}" y="{_n(py(below[i]) - 1)}" width="{_n(bar_w + 2)}"'
                    f' height="{_n(base - py(below[i]) + 1)}" fill="none" stroke="{TEXT}"'
                    ' stroke-width="1.5"/>'
                )
    every = max(1, math.ceil(n / 7))  # at most ~8 date labels, the last one always
    for i, xl in enumerate(x_labels):
        if (i % every == 0 and n - 1 - i >= every / 2) or i == n - 1:
            out.append(_text(left + slot * i + slot / 2, base + 16, xl, "middle", AXIS))
    out.append(f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="{AXIS}"/>')
    out.append("</svg>")
    return "\n".join(out)


def line_chart(
    chart: str,
    label: str,
    points: Sequence[tuple[float, float]],
    x_fmt: Fmt,
    y_fmt: Fmt,
    *,
    x_title: str,
    y_title: str,
    reference_y: float | None = None,
    marks: Sequence[tuple[float, float, str]] = (),
    width: int = 760,
    height: int = 320,
    color: str = "#1f4e79",
) -> str:
    """One line over [0, max x]; an optional dashed reference line and labelled marks."""
    left, right, top, bottom_pad = 64, 20, 16, 46
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    ys = [y for _, y in points] + ([reference_y] if reference_y is not None else [])
    y_ticks = nice_ticks(min(0.0, *ys) if ys else 0.0, max(ys, default=1.0), 5)
    lo, hi = y_ticks[0], y_ticks[-1]
    x_max = max((x for x, _ in points), default=1.0) or 1.0
    x_ticks = nice_ticks(0, x_max, 5)
    x_max = x_ticks[-1]

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top + plot_h * (hi - y) / (hi - lo)

    out = _open(chart, width, height, label)
    for t in y_ticks:
        out.append(
            f'<line x1="{left}" y1="{_n(py(t))}" x2="{width - right}" y2="{_n(py(t))}" stroke="{GRID}"/>'
        )
        out.append(_text(left - 6, py(t) + 4, y_fmt(t), "end", AXIS))
    for t in x_ticks:
        out.append(_text(px(t), top + plot_h + 16, x_fmt(t), "middle", AXIS))
    if reference_y is not None:
        out.append(
            f'<line x1="{left}" y1="{_n(py(reference_y))}" x2="{width - right}" y2="{_n(py(reference_y))}"'
            f' stroke="{AXIS}" stroke-dasharray="5 4"/>'
        )
    if points:
        path = " ".join(f"{'M' if i == 0 else 'L'}{_n(px(x))},{_n(py(y))}" for i, (x, y) in enumerate(points))
        out.append(
            f'<path class="mark" d="{path}" fill="none" stroke="{color}" stroke-width="2.2"'
            ' stroke-linejoin="round"/>'
        )
    for x, y, text in marks:
        out.append(f'<circle class="mark" cx="{_n(px(x))}" cy="{_n(py(y))}" r="4" fill="{color}"/>')
        anchor = "end" if px(x) > left + plot_w * 0.75 else "start"
        out.append(_text(px(x) + (-8 if anchor == "end" else 8), py(y) - 8, text, anchor))
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="{AXIS}"/>'
    )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    out.append(_text(left + plot_w / 2, height - 6, x_title, "middle", AXIS))
    out.append(
        _text(
            14,
            top + plot_h / 2,
            y_title,
            "middle",
            AXIS,
            f' transform="rotate(-90 14 {_n(top + plot_h / 2)})"',
        )
    )
    out.append("</svg>")
    return "\n".join(out)


def heatmap(
    chart: str,
    label: str,
    rows: Sequence[str],
    cols: Sequence[str],
    values: dict[tuple[str, str], float],
    fmt: Fmt,
    *,
    row_title: str,
    col_title: str,
    diagonal: bool = True,
) -> str:
    """A matrix of counts: darker = more; cells on the diagonal (same row and column) outlined."""
    cell_w, cell_h = 110, 44
    left = 40 + 8 * max((len(r) for r in rows), default=4)
    top = 52
    width = left + cell_w * len(cols) + 16
    height = top + cell_h * len(rows) + 12
    vmax = max(values.values(), default=0) or 1
    out = _open(chart, width, height, label)
    out.append(_text(left + cell_w * len(cols) / 2, 16, col_title, "middle", AXIS))
    out.append(_text(8, top - 8, row_title, "start", AXIS))
    for j, c in enumerate(cols):
        out.append(_text(left + cell_w * j + cell_w / 2, top - 8, _clip(c, 14), "middle"))
    for i, r in enumerate(rows):
        y = top + cell_h * i
        out.append(_text(left - 8, y + cell_h / 2 + 4, r, "end"))
        for j, c in enumerate(cols):
            x = left + cell_w * j
            v = values.get((r, c), 0)
            share = v / vmax
            # white -> dark blue
            red, green, blue = (round(255 - (255 - a) * share) for a in (31, 78, 121))
            stroke = f' stroke="{TEXT}" stroke-width="1.5"' if diagonal and r == c else f' stroke="{GRID}"'
            out.append(
                f'<rect class="mark" x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}"'
                f' fill="rgb({red},{green},{blue})"{stroke}>'
                f"<title>{esc(r)} → {esc(c)}: {esc(fmt(v))}</title></rect>"
            )
            out.append(
                _text(
                    x + cell_w / 2, y + cell_h / 2 + 4, fmt(v), "middle", "#ffffff" if share > 0.55 else TEXT
                )
            )
    out.append("</svg>")
    return "\n".join(out)


def diverging_bars(
    chart: str,
    label: str,
    categories: Sequence[str],
    values: Sequence[float],
    colors: Sequence[str],
    fmt: Fmt,
    *,
    title: str = "",
    width: int = 760,
) -> str:
    """Horizontal bars from a zero line: positive values to the right, negative to the left."""
    bar_h, row_h = 22, 36
    left = 16 + 7.5 * max((len(c) for c in categories), default=4)
    right, top = 24, 34 if title else 10
    height = top + row_h * len(categories) + 28
    plot_w = width - left - right
    # a fifth more room on each side for the value labels
    ticks = nice_ticks(1.2 * min(0.0, *values), 1.2 * max(0.0, *values), 5)
    lo, hi = ticks[0], ticks[-1]

    def px(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    out = _open(chart, width, height, label)
    if title:
        out.append(_text(left, 16, title, extra=' font-weight="600"'))
    bottom = top + row_h * len(categories)
    for t in ticks:
        out.append(f'<line x1="{_n(px(t))}" y1="{top}" x2="{_n(px(t))}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(_text(px(t), bottom + 16, short(t), "middle", AXIS))
    for i, (cat, v, color) in enumerate(zip(categories, values, colors, strict=True)):
        y = top + row_h * i + (row_h - bar_h) / 2
        x0, x1 = sorted((px(0), px(v)))
        out.append(_text(left - 8, y + bar_h / 2 + 4, cat, "end"))
        if v:
            out.append(
                f'<rect class="mark" x="{_n(x0)}" y="{_n(y)}" width="{_n(max(x1 - x0, 1))}" height="{bar_h}"'
                f' fill="{color}"><title>{esc(cat)}: {esc(fmt(v))}</title></rect>'
            )
        text = fmt(v) if v <= 0 else "+" + fmt(v)
        if v < 0:
            out.append(_text(x0 - 4, y + bar_h / 2 + 4, text, "end", AXIS))
        else:
            out.append(_text(x1 + 4, y + bar_h / 2 + 4, text, "start", AXIS))
    out.append(f'<line x1="{_n(px(0))}" y1="{top}" x2="{_n(px(0))}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append("</svg>")
    return "\n".join(out)


def interval_bars(
    chart: str,
    label: str,
    categories: Sequence[str],
    values: Sequence[float | None],
    intervals: Sequence[tuple[float, float] | None],
    fmt: Fmt,
    *,
    width: int = 760,
) -> str:
    """A bar per category from a zero line to its estimate, with its interval as a whisker
    (class "interval"); a category without an estimate says so instead of a bar."""
    bar_h, row_h = 18, 40
    left = 16 + 7.5 * max((len(c) for c in categories), default=4)
    right, top = 170, 10  # the value labels get a column of their own on the right
    height = top + row_h * len(categories) + 28
    plot_w = width - left - right
    points = [v for v in values if v is not None] + [x for iv in intervals if iv for x in iv]
    ticks = nice_ticks(1.15 * min(0.0, *points), 1.15 * max(0.0, *points), 5) if points else [0.0, 1.0]
    lo, hi = ticks[0], ticks[-1]
    if hi == lo:
        hi = lo + 1

    def px(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    out = _open(chart, width, height, label)
    bottom = top + row_h * len(categories)
    for t in ticks:
        out.append(f'<line x1="{_n(px(t))}" y1="{top}" x2="{_n(px(t))}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(_text(px(t), bottom + 16, short(t), "middle", AXIS))
    for i, (cat, v, iv) in enumerate(zip(categories, values, intervals, strict=True)):
        y = top + row_h * i + (row_h - bar_h) / 2
        mid = y + bar_h / 2
        out.append(_text(left - 8, mid + 4, _clip(cat, 40), "end"))
        if v is None:
            out.append(_text(px(0) + 6, mid + 4, "no control group: not measured", "start", AXIS))
            continue
        significant = iv is not None and (iv[0] > 0 or iv[1] < 0)
        color = (UPLIFT_COLOR if v >= 0 else LOSS_COLOR) if significant else UNKNOWN_COLOR
        x0, x1 = sorted((px(0), px(v)))
        title = f"{cat}: {fmt(v)}" + (f" (interval {fmt(iv[0])} to {fmt(iv[1])})" if iv else " (no interval)")
        out.append(
            f'<rect class="mark" x="{_n(x0)}" y="{_n(y)}" width="{_n(max(x1 - x0, 1))}" height="{bar_h}"'
            f' fill="{color}" fill-opacity="0.8"><title>{esc(title)}</title></rect>'
        )
        if iv:
            a, b = px(iv[0]), px(iv[1])
            out.append(
                f'<path class="interval" d="M{_n(a)} {_n(mid)}H{_n(b)}M{_n(a)} {_n(mid - 7)}V{_n(mid + 7)}'
                f'M{_n(b)} {_n(mid - 7)}V{_n(mid + 7)}" stroke="{TEXT}" stroke-width="1.5" fill="none"/>'
            )
        text = (fmt(v) if v <= 0 else "+" + fmt(v)) + ("" if iv else " (no interval)")
        out.append(_text(width - right + 12, mid + 4, text, "start", AXIS))
    out.append(f'<line x1="{_n(px(0))}" y1="{top}" x2="{_n(px(0))}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append("</svg>")
    return "\n".join(out)


def triangle(
    chart: str,
    label: str,
    cohorts: Sequence[str],
    months: Sequence[int],
    shares: Mapping[tuple[str, int], float],
    sizes: Mapping[str, int],
    fmt: Fmt,
    *,
    row_title: str,
    col_title: str,
) -> str:
    """The retention triangle: a cell per cohort and month since holding its share (darker =
    more active), the cohort's size beside its name; months a cohort has not reached yet (no
    share) stay empty."""
    cell_w, cell_h = 52, 26
    left = 24 + 8 * max((len(c) for c in cohorts), default=7) + 60
    top = 44
    width = left + cell_w * len(months) + 16
    height = top + cell_h * len(cohorts) + 12
    out = _open(chart, width, height, label)
    out.append(_text(left + cell_w * len(months) / 2, 14, col_title, "middle", AXIS))
    out.append(_text(8, top - 8, row_title, "start", AXIS))
    for j, m in enumerate(months):
        out.append(_text(left + cell_w * j + cell_w / 2, top - 8, str(m), "middle"))
    for i, c in enumerate(cohorts):
        y = top + cell_h * i
        out.append(_text(left - 8, y + cell_h / 2 + 4, f"{c} ({sizes.get(c, 0)})", "end"))
        for j, m in enumerate(months):
            if (c, m) not in shares:
                continue
            v = shares[(c, m)]
            red, green, blue = (round(255 - (255 - a) * v) for a in (31, 78, 121))
            x = left + cell_w * j
            out.append(
                f'<rect class="mark" x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}"'
                f' fill="rgb({red},{green},{blue})" stroke="{GRID}">'
                f"<title>{esc(c)} +{m}: {esc(fmt(v))} active</title></rect>"
            )
            out.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, fmt(v), "middle",
                             "#ffffff" if v > 0.55 else TEXT))
    out.append("</svg>")
    return "\n".join(out)
