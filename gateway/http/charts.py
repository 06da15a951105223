"""Charts drawn on the server as inline SVG, each with its data as a table.

No script and no chart library: the page's Content-Security-Policy allows
neither, and a screen reader gets the same figures from the table. Each SVG is
`role="img"` named by its <title> and <desc>; every bar and point carries a
<title> of its own (a tooltip). Series differ by pattern as well as colour
(solid or dashed lines, plain or hatched bars), not by colour alone
(WCAG 1.4.1). Every text is escaped: queue names and priorities come from
the config and the requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 56  # room for the axes' labels and the legend
TICKS = 4
# Dark enough on white for text and for graphics (WCAG 1.4.11, 3:1 and more).
COLOURS = ("#1d5fa8", "#b35806", "#2d6a2d", "#6a3d9a")
DASHES = ("", "6 4", "2 3", "10 3 2 3")
TEXT = "#1b1b1b"
GRID = "#8a8f93"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per category; None: no figure


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart's SVG, and the same figures as a table (caption, header, rows)."""

    svg: Markup
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def nice_ceiling(value: float) -> float:
    """`value` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # unreachable: 10 * power >= value


def axis_top(values: Sequence[float], *, whole: bool) -> float:
    """The axis' top: TICKS steps of a nice size (whole numbers for counts)."""
    step = nice_ceiling(max(values, default=0) / TICKS)
    return max(1.0, step) * TICKS if whole else step * TICKS


def figure(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    shown = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return shown + unit


def _frame(chart_id: str, title: str, description: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="100%" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
            f'id="{chart_id}" class="chart" font-family="system-ui, sans-serif" '
            f'font-size="12">'
            f'<title id="{chart_id}-t">{escape(title)}</title>'
            f'<desc id="{chart_id}-d">{escape(description)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def _axis(top: float, unit: str) -> list[str]:
    """Horizontal grid lines with their figures, bottom to top."""
    parts = []
    plot_height = HEIGHT - TOP - BOTTOM
    for i in range(TICKS + 1):
        y = HEIGHT - BOTTOM - plot_height * i / TICKS
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID}" stroke-width="{1 if i else 1.5}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="{TEXT}">{escape(figure(top * i / TICKS, unit))}</text>')
    return parts


def _legend(series: Sequence[Series], *, lines: bool) -> list[str]:
    parts, x = [], LEFT
    for i, s in enumerate(series):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        if lines:
            parts.append(f'<line x1="{x}" x2="{x + 24}" y1="12" y2="12" stroke="{colour}" '
                         f'stroke-width="3" stroke-dasharray="{dash}"/>')
        else:
            parts.append(f'<rect x="{x}" y="5" width="24" height="14" '
                         f'{_bar_paint(i)}/>')
        parts.append(f'<text x="{x + 30}" y="16" fill="{TEXT}">{escape(s.name)}</text>')
        x += 40 + 8 * len(s.name)
    return parts


def _bar_paint(index: int) -> str:
    colour = COLOURS[index % len(COLOURS)]
    if index % 2 == 0:
        return f'fill="{colour}"'
    return f'fill="url(#hatch-{index % len(COLOURS)})" stroke="{colour}" stroke-width="1.5"'


def _patterns() -> str:
    return "<defs>" + "".join(
        f'<pattern id="hatch-{i}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{colour}" stroke-width="4"/></pattern>'
        for i, colour in enumerate(COLOURS)) + "</defs>"


def _label_every(count: int, room: float) -> int:
    """Show every n-th category label so they do not overlap (about 6 px a character)."""
    return max(1, math.ceil(count * 42 / room))


def _table(caption: str, categories: Sequence[str], series: Sequence[Series], unit: str,
           first: str) -> tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]]:
    header = (first, *(s.name for s in series))
    rows = tuple((c, *(figure(s.values[i], unit) for s in series))
                 for i, c in enumerate(categories))
    return caption, header, rows


def bar_chart(chart_id: str, title: str, description: str, categories: Sequence[str],
              series: Sequence[Series], *, unit: str = "", top: float | None = None,
              first_column: str = "") -> Chart:
    """Bars side by side per category, one per series; `top`: the axis' maximum
    (e.g. 100 for percentages), else the largest figure rounded up."""
    values = [v for s in series for v in s.values if v is not None]
    ceiling = top if top is not None else axis_top(values, whole=not unit)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(1, len(categories))
    bar = slot * 0.8 / max(1, len(series))
    every = _label_every(len(categories), plot_width)
    body = [_patterns(), *_axis(ceiling, unit)]
    for i, category in enumerate(categories):
        x0 = LEFT + slot * i + slot * 0.1
        for j, s in enumerate(series):
            value = s.values[i]
            if value is None:
                continue
            height = plot_height * min(value, ceiling) / ceiling
            tip = escape(f"{category}, {s.name}: {figure(value, unit)}")
            body.append(f'<rect x="{x0 + bar * j:.1f}" y="{HEIGHT - BOTTOM - height:.1f}" '
                        f'width="{bar * 0.9:.1f}" height="{height:.1f}" {_bar_paint(j)}>'
                        f'<title>{tip}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                        f'text-anchor="middle" fill="{TEXT}">{escape(category)}</text>')
    body += _legend(series, lines=False)
    caption, header, rows = _table(title, categories, series, unit, first_column)
    return Chart(_frame(chart_id, title, description, body), caption, header, rows)


def line_chart(chart_id: str, title: str, description: str, categories: Sequence[str],
               series: Sequence[Series], *, unit: str = "", first_column: str = "",
               axis_labels: Sequence[str] | None = None) -> Chart:
    """One line per series over the categories (e.g. days), a marker at each
    figure; `axis_labels`: shorter names for the axis (the table has the full)."""
    values = [v for s in series for v in s.values if v is not None]
    ceiling = axis_top(values, whole=not unit)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_width / max(1, len(categories) - 1)
    every = _label_every(len(categories), plot_width)
    body = _axis(ceiling, unit)

    def point(i: int, value: float) -> tuple[float, float]:
        return LEFT + step * i, HEIGHT - BOTTOM - plot_height * value / ceiling

    for j, s in enumerate(series):
        colour, dash = COLOURS[j % len(COLOURS)], DASHES[j % len(DASHES)]
        points = [(i, v) for i, v in enumerate(s.values) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, v) for i, v in points))
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                     f'stroke-width="2.5" stroke-dasharray="{dash}"/>')
        for i, v in points:
            x, y = point(i, v)
            tip = escape(f"{categories[i]}, {s.name}: {figure(v, unit)}")
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                        f'<title>{tip}</title></circle>')
    for i, label in enumerate(axis_labels or categories):
        if i % every == 0:
            body.append(f'<text x="{LEFT + step * i:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                        f'text-anchor="middle" fill="{TEXT}">{escape(label)}</text>')
    body += _legend(series, lines=True)
    caption, header, rows = _table(title, categories, series, unit, first_column)
    return Chart(_frame(chart_id, title, description, body), caption, header, rows)
