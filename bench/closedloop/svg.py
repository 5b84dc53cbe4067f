"""A few line and scatter plots as standalone SVG (the benchmark's figures; no plotting package)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    line: bool = True  # else points
    dashed: bool = False


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    hlines: list[tuple[float, str]] = field(default_factory=list)  # (y, label)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=mag * 10)
    t = math.ceil(lo / step) * step
    out = []
    while t <= hi + 1e-12 * step:
        out.append(t)
        t += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def render(panels: Sequence[Panel], width: int = 520, height: int = 340) -> str:
    """The panels side by side as one SVG document."""
    ml, mr, mt, mb = 62, 14, 30, 46
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(panels)}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width * len(panels)}" height="{height}" fill="white"/>',
    ]
    for k, p in enumerate(panels):
        ox = k * width
        xs = [v for s in p.series for v in s.x if math.isfinite(v)]
        ys = [v for s in p.series for v in s.y if math.isfinite(v)] + [y for y, _ in p.hlines]
        if not xs or not ys:
            continue
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        pad = 0.05 * (y1 - y0 or 1)
        y0, y1 = y0 - pad, y1 + pad
        pw, ph = width - ml - mr, height - mt - mb

        def sx(v: float, x0: float = x0, x1: float = x1, pw: int = pw, ox: int = ox) -> float:
            return ox + ml + (v - x0) / (x1 - x0) * pw

        def sy(v: float, y0: float = y0, y1: float = y1, ph: int = ph) -> float:
            return mt + ph - (v - y0) / (y1 - y0) * ph

        out.append(
            f'<text x="{ox + width / 2}" y="18" text-anchor="middle" font-size="13">{escape(p.title)}</text>'
        )
        out.append(f'<rect x="{ox + ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        for t in _ticks(x0, x1):
            out.append(
                f'<line x1="{sx(t):.1f}" y1="{mt + ph}" x2="{sx(t):.1f}" y2="{mt + ph + 4}" stroke="#666"/>'
            )
            out.append(f'<text x="{sx(t):.1f}" y="{mt + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
        for t in _ticks(y0, y1):
            out.append(
                f'<line x1="{ox + ml - 4}" y1="{sy(t):.1f}" x2="{ox + ml}" y2="{sy(t):.1f}" stroke="#666"/>'
            )
            out.append(f'<text x="{ox + ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        out.append(
            f'<text x="{ox + ml + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(p.xlabel)}</text>'
        )
        out.append(
            f'<text transform="translate({ox + 14},{mt + ph / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(p.ylabel)}</text>'
        )
        for y, label in p.hlines:
            out.append(
                f'<line x1="{ox + ml}" y1="{sy(y):.1f}" x2="{ox + ml + pw}" y2="{sy(y):.1f}" stroke="#555" '
                f'stroke-dasharray="4,3"/><text x="{ox + ml + pw - 4}" y="{sy(y) - 3:.1f}" text-anchor="end" '
                f'fill="#555">{escape(label)}</text>'
            )
        for i, s in enumerate(p.series):
            c = COLORS[i % len(COLORS)]
            pts = [
                (sx(a), sy(b)) for a, b in zip(s.x, s.y, strict=True) if math.isfinite(a) and math.isfinite(b)
            ]
            if s.line:
                dash = ' stroke-dasharray="5,3"' if s.dashed else ""
                d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
                out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="1.5"{dash}/>')
            else:
                out += [
                    f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" fill="{c}" fill-opacity="0.7"/>'
                    for a, b in pts
                ]
            ly = mt + 12 + 13 * i
            out.append(f'<rect x="{ox + ml + 8}" y="{ly - 8}" width="10" height="3" fill="{c}"/>')
            out.append(f'<text x="{ox + ml + 22}" y="{ly - 3}">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
