"""Small inline-SVG charts (no JavaScript, nothing fetched): scatter, horizontal bars, box plots.

Every function returns one `<svg>` string sized in CSS pixels; text is escaped; each point or bar carries a
`<title>` so a browser shows its exact value on hover.
"""

from __future__ import annotations

import math
from html import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px"
COLORS = {"chosen": "#d62728", "baseline": "#1f77b4", "in-budget": "#2ca02c", "rejected": "#ff7f0e",
          "failed": "#7f7f7f", "duplicate": "#bcbd22", "front": "#9467bd", "floor": "#8c564b"}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 12))
        t += step
    return ticks


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


class Frame:
    """Maps data to pixels inside margins; draws axes with ticks and labels."""

    def __init__(self, width, height, xr, yr, margin=(16, 20, 44, 64)):
        self.w, self.h = width, height
        self.top, self.right, self.bottom, self.left = margin
        self.xt, self.yt = nice_ticks(*xr), nice_ticks(*yr)
        self.x0, self.x1 = min(self.xt[0], xr[0]), max(self.xt[-1], xr[1])
        self.y0, self.y1 = min(self.yt[0], yr[0]), max(self.yt[-1], yr[1])

    def x(self, v):
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.w - self.left - self.right)

    def y(self, v):
        span = (self.y1 - self.y0) or 1.0
        return self.h - self.bottom - (v - self.y0) / span * (self.h - self.top - self.bottom)

    def axes(self, xlabel: str, ylabel: str) -> str:
        parts = []
        for t in self.xt:
            X = self.x(t)
            parts.append(f'<line x1="{X:.1f}" y1="{self.top}" x2="{X:.1f}" y2="{self.h - self.bottom}" '
                         f'stroke="#eee"/><text x="{X:.1f}" y="{self.h - self.bottom + 14}" '
                         f'text-anchor="middle">{fmt(t)}</text>')
        for t in self.yt:
            Y = self.y(t)
            parts.append(f'<line x1="{self.left}" y1="{Y:.1f}" x2="{self.w - self.right}" y2="{Y:.1f}" '
                         f'stroke="#eee"/><text x="{self.left - 6}" y="{Y + 4:.1f}" '
                         f'text-anchor="end">{fmt(t)}</text>')
        parts.append(f'<rect x="{self.left}" y="{self.top}" width="{self.w - self.left - self.right}" '
                     f'height="{self.h - self.top - self.bottom}" fill="none" stroke="#999"/>')
        parts.append(f'<text x="{(self.left + self.w - self.right) / 2:.1f}" y="{self.h - 8}" '
                     f'text-anchor="middle">{escape(xlabel)}</text>')
        cy = (self.top + self.h - self.bottom) / 2
        parts.append(f'<text x="14" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 14 {cy:.1f})">'
                     f'{escape(ylabel)}</text>')
        return "".join(parts)


def _svg(width, height, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" style="{FONT}">'
            f'{body}</svg>')


def scatter(points: list[dict], xlabel: str, ylabel: str, hline: tuple[float, str] | None = None,
            front: list[tuple[float, float]] | None = None, width: int = 760, height: int = 420) -> str:
    """points: {x, y, color, title, r?, label?}; hline: (y, text) drawn dashed; front: a step line."""
    if not points:
        return _svg(width, 60, '<text x="10" y="30">no candidate to plot</text>', ylabel)
    xs = [p["x"] for p in points]
    ys = [p["y"] for p in points] + ([hline[0]] if hline else [])
    xpad = (max(xs) - min(xs)) * 0.05 or max(xs) * 0.05 or 1.0
    ypad = (max(ys) - min(ys)) * 0.08 or 0.01
    f = Frame(width, height, (max(0.0, min(xs) - xpad), max(xs) + xpad), (min(ys) - ypad, max(ys) + ypad))
    body = [f.axes(xlabel, ylabel)]
    if hline:
        Y = f.y(hline[0])
        body.append(f'<line x1="{f.left}" y1="{Y:.1f}" x2="{width - f.right}" y2="{Y:.1f}" stroke="#d62728" '
                    f'stroke-dasharray="6 4"/><text x="{width - f.right - 4}" y="{Y - 5:.1f}" '
                    f'text-anchor="end" fill="#d62728">{escape(hline[1])}</text>')
    if front and len(front) > 1:
        pts = sorted(front)
        path = [f"M{f.x(pts[0][0]):.1f},{f.y(pts[0][1]):.1f}"]
        for x1, y1 in pts[1:]:
            path.append(f"H{f.x(x1):.1f}V{f.y(y1):.1f}")
        body.append(f'<path d="{"".join(path)}" fill="none" stroke="{COLORS["front"]}" stroke-width="1.5" '
                    f'stroke-dasharray="3 2"/>')
    for p in sorted(points, key=lambda p: p.get("r", 4)):
        r = p.get("r", 4)
        body.append(f'<circle cx="{f.x(p["x"]):.1f}" cy="{f.y(p["y"]):.1f}" r="{r}" fill="{p["color"]}" '
                    f'fill-opacity="0.8" stroke="#333" stroke-width="0.5"><title>{escape(p["title"])}</title>'
                    f'</circle>')
        if p.get("label"):
            body.append(f'<text x="{f.x(p["x"]) + r + 3:.1f}" y="{f.y(p["y"]) - r - 2:.1f}">'
                        f'{escape(p["label"])}</text>')
    return _svg(width, height, "".join(body), ylabel)


def hbars(rows: list[tuple[str, float, str, str]], unit: str, width: int = 760, bar: int = 22) -> str:
    """rows: (label, value, color, title) drawn as horizontal bars from 0."""
    if not rows:
        return _svg(width, 40, '<text x="10" y="24">nothing to show</text>', unit)
    left = min(340, 12 + 6.2 * max(len(r[0]) for r in rows))
    height = 30 + len(rows) * (bar + 6) + 24
    vmax = max(r[1] for r in rows) or 1.0
    ticks = nice_ticks(0, vmax)
    span = ticks[-1] or 1.0
    scale = (width - left - 60) / span
    body = []
    for t in ticks:
        X = left + t * scale
        body.append(f'<line x1="{X:.1f}" y1="20" x2="{X:.1f}" y2="{height - 24}" stroke="#eee"/>'
                    f'<text x="{X:.1f}" y="{height - 8}" text-anchor="middle">{fmt(t)}</text>')
    for i, (label, value, color, title) in enumerate(rows):
        Y = 24 + i * (bar + 6)
        body.append(f'<text x="{left - 6}" y="{Y + bar / 2 + 4:.1f}" text-anchor="end">{escape(label)}</text>'
                    f'<rect x="{left}" y="{Y}" width="{max(value * scale, 1):.1f}" height="{bar}" fill="{color}">'
                    f'<title>{escape(title)}</title></rect><text x="{left + value * scale + 4:.1f}" '
                    f'y="{Y + bar / 2 + 4:.1f}">{fmt(value)} {escape(unit)}</text>')
    body.append(f'<text x="{width - 10}" y="14" text-anchor="end">{escape(unit)}</text>')
    return _svg(width, height, "".join(body), unit)


def boxplots(series: list[tuple[str, list[float], str]], unit: str, width: int = 760, row: int = 34) -> str:
    """One horizontal box per series: whiskers p1..p99, box p25..p75, a line at the median."""
    series = [s for s in series if s[1]]
    if not series:
        return _svg(width, 40, '<text x="10" y="24">no latency distribution recorded</text>', unit)
    left = min(340, 12 + 6.2 * max(len(s[0]) for s in series))
    height = 24 + len(series) * row + 30
    lo = min(_pct(v, 1) for _, v, _ in series)
    hi = max(_pct(v, 99) for _, v, _ in series)
    f = Frame(width, height, (lo * 0.95, hi * 1.02), (0, 1), margin=(14, 20, 30, left))
    body = []
    for t in f.xt:
        X = f.x(t)
        body.append(f'<line x1="{X:.1f}" y1="10" x2="{X:.1f}" y2="{height - 28}" stroke="#eee"/>'
                    f'<text x="{X:.1f}" y="{height - 12}" text-anchor="middle">{fmt(t)}</text>')
    for i, (label, values, color) in enumerate(series):
        Y = 16 + i * row
        p1, p25, p50, p75, p99 = (_pct(values, q) for q in (1, 25, 50, 75, 99))
        mid = Y + row / 2 - 4
        title = (f"{label}: median {p50:.3f} {unit}, p25 {p25:.3f}, p75 {p75:.3f}, p1 {p1:.3f}, p99 {p99:.3f}, "
                 f"{len(values)} runs")
        body.append(f'<text x="{left - 6}" y="{mid + 4:.1f}" text-anchor="end">{escape(label)}</text>'
                    f'<line x1="{f.x(p1):.1f}" y1="{mid:.1f}" x2="{f.x(p99):.1f}" y2="{mid:.1f}" stroke="#555"/>'
                    f'<rect x="{f.x(p25):.1f}" y="{mid - 9:.1f}" width="{max(f.x(p75) - f.x(p25), 1):.1f}" '
                    f'height="18" fill="{color}" fill-opacity="0.6" stroke="#333"><title>{escape(title)}</title>'
                    f'</rect><line x1="{f.x(p50):.1f}" y1="{mid - 9:.1f}" x2="{f.x(p50):.1f}" y2="{mid + 9:.1f}" '
                    f'stroke="#000" stroke-width="2"/>')
    body.append(f'<text x="{width - 10}" y="{height - 12}" text-anchor="end">{escape(unit)}</text>')
    return _svg(width, height, "".join(body), unit)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    k = (len(s) - 1) * q / 100
    i = int(math.floor(k))
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (k - i)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another (lower x = faster, higher y = more accurate), sorted by x."""
    front, best_y = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front
