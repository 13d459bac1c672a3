"""Small self-contained SVG charts, drawn from already aggregated values (no plotting library).

Every chart is one `<svg>` element with `data-chart` (its id) and `data-points` (how many values
it draws); every drawn value is an element of class `mark` with a `<title>` tooltip, so a page
can be checked for empty charts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 58
FONT = "font-family='system-ui, sans-serif'"

Number = float | int


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.0f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


class _Scale:
    def __init__(self, low: float, high: float, top: float, bottom: float) -> None:
        self.ticks = nice_ticks(min(low, 0.0), max(high, 0.0))
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.top, self.bottom = top, bottom

    def __call__(self, value: float) -> float:
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)


def _open(chart_id: str, title: str, points: int, height: int = HEIGHT) -> list[str]:
    return [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' data-chart='{escape(chart_id)}' "
        f"data-points='{points}' viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' height='{height}' role='img' "
        f"aria-label='{escape(title)}' {FONT} font-size='11'>",
        f"<text x='{LEFT}' y='18' font-size='13' font-weight='600'>{escape(title)}</text>",
    ]


def _axis(scale: _Scale, unit: str = "") -> list[str]:
    parts = []
    for tick in scale.ticks:
        y = scale(tick)
        stroke = "#999" if tick == 0 else "#e5e5e5"
        parts.append(f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y:.1f}' y2='{y:.1f}' stroke='{stroke}'/>")
        parts.append(f"<text x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor='end' fill='#555'>{_fmt(tick)}</text>")
    if unit:
        parts.append(f"<text x='12' y='{TOP - 6}' fill='#555'>{escape(unit)}</text>")
    return parts


def _legend(names: Sequence[str], height: int = HEIGHT) -> list[str]:
    parts, x = [], LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        parts.append(f"<rect x='{x}' y='{height - 14}' width='10' height='10' fill='{color}'/>")
        parts.append(f"<text x='{x + 14}' y='{height - 5}'>{escape(name)}</text>")
        x += 24 + 7 * len(name)
    return parts


def _label(x: float, text: str, height: int = HEIGHT, rotate: bool = False) -> str:
    y = height - BOTTOM + 14
    if rotate:
        return (
            f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='end' transform='rotate(-25 {x:.1f} {y:.1f})' "
            f"fill='#333'>{escape(text)}</text>"
        )
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='middle' fill='#333'>{escape(text)}</text>"


def empty(chart_id: str, title: str, message: str = "no data for this day") -> str:
    parts = _open(chart_id, title, 0, 80)
    parts.append(f"<text x='{LEFT}' y='50' fill='#888'>{escape(message)}</text></svg>")
    return "".join(parts)


def bar_chart(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[Number | None]],
    *,
    stacked: bool = False,
    unit: str = "",
) -> str:
    """Grouped (or stacked) vertical bars: one group per category, one bar per series."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not categories or not values:
        return empty(chart_id, title)
    if stacked:
        totals = [sum((vs[i] or 0) for vs in series.values()) for i in range(len(categories))]
        scale = _Scale(0, max(totals), TOP, HEIGHT - BOTTOM)
    else:
        scale = _Scale(min(values), max(values), TOP, HEIGHT - BOTTOM)
    parts = [*_open(chart_id, title, len(values)), *_axis(scale, unit)]
    band = (WIDTH - LEFT - RIGHT) / len(categories)
    names = list(series)
    bar = band * 0.8 / (1 if stacked else len(names))
    rotate = max(len(c) for c in categories) * 6 > band
    for i, category in enumerate(categories):
        x0 = LEFT + i * band + band * 0.1
        base = 0.0
        for j, name in enumerate(names):
            value = series[name][i]
            if value is None:
                continue
            color = PALETTE[j % len(PALETTE)]
            low, high = (base, base + value) if stacked else (min(0, value), max(0, value))
            x = x0 if stacked else x0 + j * bar
            y, h = scale(high), scale(low) - scale(high)
            parts.append(
                f"<rect class='mark' x='{x:.1f}' y='{y:.1f}' width='{max(bar - 1, 1):.1f}' height='{max(h, 0.5):.1f}' "
                f"fill='{color}'><title>{escape(category)} / {escape(name)}: {_fmt(value)}</title></rect>"
            )
            if stacked:
                base += value
        parts.append(_label(LEFT + i * band + band / 2, category, rotate=rotate))
    if len(names) > 1:
        parts += _legend(names)
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(chart_id: str, title: str, labels: Sequence[str], values: Sequence[Number], *, unit: str = "") -> str:
    """Horizontal bars, one per label, the value written at the end of the bar."""
    if not labels:
        return empty(chart_id, title)
    row = 20
    height = TOP + row * len(labels) + 16
    left = min(260, 12 + 6 * max(len(label) for label in labels))
    top_value = max(max(values), 1e-9)
    parts = _open(chart_id, title, len(values), height)
    span = WIDTH - left - RIGHT - 60
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * row
        width = max(span * value / top_value, 1.0)
        parts.append(f"<text x='{left - 6}' y='{y + 13}' text-anchor='end' fill='#333'>{escape(label)}</text>")
        parts.append(
            f"<rect class='mark' x='{left}' y='{y + 2}' width='{width:.1f}' height='{row - 5}' fill='{PALETTE[0]}'>"
            f"<title>{escape(label)}: {_fmt(value)} {escape(unit)}</title></rect>"
        )
        parts.append(f"<text x='{left + width + 4:.1f}' y='{y + 13}' fill='#555'>{_fmt(value)} {escape(unit)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    chart_id: str, title: str, x_labels: Sequence[str], series: Mapping[str, Sequence[Number | None]], *, unit: str = ""
) -> str:
    """One line with point markers per series over ordered x labels (days)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not x_labels or not values:
        return empty(chart_id, title)
    scale = _Scale(min(values), max(values), TOP, HEIGHT - BOTTOM)
    parts = [*_open(chart_id, title, len(values)), *_axis(scale, unit)]
    step = (WIDTH - LEFT - RIGHT) / len(x_labels)
    xs = [LEFT + step * (i + 0.5) for i in range(len(x_labels))]
    for j, (name, vs) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        points = [(x, scale(v), v, label) for x, v, label in zip(xs, vs, x_labels, strict=True) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='2'/>")
        for x, y, v, label in points:
            parts.append(
                f"<circle class='mark' cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{color}'>"
                f"<title>{escape(label)} / {escape(name)}: {_fmt(v)}</title></circle>"
            )
    every = max(1, math.ceil(len(x_labels) / 10))
    for i, (x, label) in enumerate(zip(xs, x_labels, strict=True)):
        if i % every == 0:
            parts.append(_label(x, label))
    if len(series) > 1:
        parts += _legend(list(series))
    parts.append("</svg>")
    return "".join(parts)


def box_chart(
    chart_id: str, title: str, groups: Sequence[str], stats: Sequence[tuple[float, float, float, float, float]]
) -> str:
    """Box plots (min, p25, median, p75, max), one per group, on a 0-100 score axis."""
    if not groups:
        return empty(chart_id, title)
    scale = _Scale(0, 100, TOP, HEIGHT - BOTTOM)
    parts = [*_open(chart_id, title, len(groups)), *_axis(scale)]
    band = (WIDTH - LEFT - RIGHT) / len(groups)
    rotate = max(len(g) for g in groups) * 6 > band
    for i, (group, (low, q1, median, q3, high)) in enumerate(zip(groups, stats, strict=True)):
        cx = LEFT + band * (i + 0.5)
        half = min(band * 0.3, 30)
        color = PALETTE[i % len(PALETTE)]
        parts.append(f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{scale(high):.1f}' y2='{scale(low):.1f}' stroke='#555'/>")
        parts.append(
            f"<rect class='mark' x='{cx - half:.1f}' y='{scale(q3):.1f}' width='{2 * half:.1f}' "
            f"height='{max(scale(q1) - scale(q3), 1):.1f}' fill='{color}' fill-opacity='0.6' stroke='{color}'>"
            f"<title>{escape(group)}: min {_fmt(low)}, p25 {_fmt(q1)}, median {_fmt(median)}, p75 {_fmt(q3)}, "
            f"max {_fmt(high)}</title></rect>"
        )
        parts.append(
            f"<line x1='{cx - half:.1f}' x2='{cx + half:.1f}' y1='{scale(median):.1f}' y2='{scale(median):.1f}' "
            "stroke='#000' stroke-width='2'/>"
        )
        parts.append(_label(cx, group, rotate=rotate))
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    estimates: Sequence[float | None],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    *,
    unit: str = "",
) -> str:
    """Point estimates with confidence-interval whiskers around a zero line (uplift)."""
    drawn = [i for i, e in enumerate(estimates) if e is not None]
    if not drawn:
        return empty(chart_id, title, "no treated and holdout observations to compare yet")
    values = [v for i in drawn for v in (estimates[i], lows[i], highs[i]) if v is not None]
    scale = _Scale(min(values), max(values), TOP, HEIGHT - BOTTOM)
    parts = [*_open(chart_id, title, len(drawn)), *_axis(scale, unit)]
    band = (WIDTH - LEFT - RIGHT) / len(labels)
    rotate = max(len(label) for label in labels) * 6 > band
    for i, label in enumerate(labels):
        cx = LEFT + band * (i + 0.5)
        estimate, low, high = estimates[i], lows[i], highs[i]
        if estimate is not None:
            significant = low is not None and high is not None and (low > 0 or high < 0)
            color = PALETTE[2] if significant else PALETTE[0]
            if low is not None and high is not None:
                parts.append(
                    f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{scale(high):.1f}' y2='{scale(low):.1f}' "
                    f"stroke='{color}' stroke-width='2'/>"
                )
                for y in (scale(high), scale(low)):
                    parts.append(
                        f"<line x1='{cx - 6:.1f}' x2='{cx + 6:.1f}' y1='{y:.1f}' y2='{y:.1f}' stroke='{color}'/>"
                    )
            ci = f" (95% CI {_fmt(low)} .. {_fmt(high)})" if low is not None and high is not None else " (no CI)"
            parts.append(
                f"<circle class='mark' cx='{cx:.1f}' cy='{scale(estimate):.1f}' r='5' fill='{color}'>"
                f"<title>{escape(label)}: uplift {_fmt(estimate)}{escape(ci)}</title></circle>"
            )
        parts.append(_label(cx, label, rotate=rotate))
    parts.append("</svg>")
    return "".join(parts)
