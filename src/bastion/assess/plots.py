"""Line charts as inline SVG, drawn here: no plotting library, no script, no external asset.

The HTML report must be one self-contained file under a Content-Security-Policy that forbids
scripts and remote loads; inline ``<svg>`` needs neither. A few dozen lines cover what the
report draws (linear and logarithmic axes, several series, a legend) and keep the output
small, deterministic and free of a matplotlib dependency. Every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1c7ed6", "#d9480f", "#2b8a3e", "#7048e8", "#c98a00", "#868e96", "#e64980")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]
    dashed: bool = False
    markers: bool = True


@dataclass(frozen=True, slots=True)
class Axis:
    label: str
    low: float
    high: float
    log: bool = False
    percent: bool = False

    def scale(self, value: float) -> float:
        """Position of a value in [0, 1] along the axis (clamped)."""
        if self.log:
            value = max(value, self.low)
            span = math.log10(self.high) - math.log10(self.low)
            pos = (math.log10(value) - math.log10(self.low)) / span
        else:
            pos = (value - self.low) / (self.high - self.low)
        return min(1.0, max(0.0, pos))

    def ticks(self) -> list[float]:
        if self.log:
            first = math.floor(math.log10(self.low))
            last = math.ceil(math.log10(self.high))
            short = math.log10(self.high / self.low) <= 2.5
            steps = (1.0, 2.0, 5.0) if short else (1.0,)  # short ranges: 1-2-5
            return [m * 10.0 ** k for k in range(first, last + 1) for m in steps
                    if self.low * (1 - 1e-9) <= m * 10.0 ** k <= self.high * (1 + 1e-9)]
        step = _nice_step((self.high - self.low) / 5)
        start = math.ceil(self.low / step - 1e-9) * step
        values = []
        value = start
        while value <= self.high + 1e-9:
            values.append(round(value, 10))
            value += step
        return values

    def text(self, value: float) -> str:
        return f"{value * 100:g}%" if self.percent else f"{value:g}"


def _nice_step(raw: float) -> float:
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def line_chart(series: Sequence[Series], x: Axis, y: Axis, title: str, *,
               width: int = 480, height: int = 300) -> str:
    """An SVG line chart; the legend lists the series below the plot."""
    left, right, top = 56, 16, 28
    columns = 2 if max((len(line.name) for line in series), default=0) <= 30 else 1
    legend_rows = (len(series) + columns - 1) // columns
    bottom = 44 + 16 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom
    total_h = height

    def px(value: float) -> float:
        return left + x.scale(value) * plot_w

    def py(value: float) -> float:
        return top + (1 - y.scale(value)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_h}" '
        f'width="{width}" height="{total_h}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui,sans-serif" font-size="11">',
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="600">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#adb5bd"/>',
    ]
    for tick in x.ticks():
        gx = px(tick)
        parts.append(f'<line x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{top + plot_h}" '
                     'stroke="#e9ecef"/>')
        parts.append(f'<text x="{gx:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                     f'{escape(x.text(tick))}</text>')
    for tick in y.ticks():
        gy = py(tick)
        parts.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}" '
                     'stroke="#e9ecef"/>')
        parts.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                     f'{escape(y.text(tick))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 30}" '
                 f'text-anchor="middle">{escape(x.label)}</text>')
    parts.append(f'<text x="14" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{escape(y.label)}</text>')
    for i, line in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in line.points)
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        if coords:
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"{dash}/>')
        if line.markers:
            parts.extend(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.8" '
                         f'fill="{colour}"/>' for a, b in line.points)
        row, col = divmod(i, columns)
        lx = left + col * (plot_w / columns)
        ly = top + plot_h + 46 + 16 * row
        parts.append(f'<line x1="{lx:.1f}" y1="{ly - 4}" x2="{lx + 18:.1f}" y2="{ly - 4}" '
                     f'stroke="{colour}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{lx + 24:.1f}" y="{ly}">{escape(line.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
