"""Charts as inline SVG strings (for the HTML report) and as PNG files (matplotlib, for slides).

The SVG is written here by hand, so the report needs no chart library at view time. Every
mark belonging to one run sits in `<g class="series" data-series="<index>">`, which the
report's toggles show and hide across all charts at once.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from peftlab.report.fmt import axis_fmt

W, H = 600, 320
ML, MR, MT, MB = 64, 20, 30, 46  # margins: left, right, top, bottom


@dataclass
class Series:
    label: str
    index: int
    color: str
    points: list[tuple[float, float]]
    dashed: bool = False


@dataclass
class Point:
    label: str
    index: int
    color: str
    x: float
    y: float
    frontier: bool = False
    y_low: float | None = None  # the y value's 95% interval, drawn as an error bar
    y_high: float | None = None


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (at most about n+2 of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = start
    while v < hi - 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    ticks.append(round(v, 12))
    return ticks


class Axis:
    """Maps data values to [0, 1]. Log scale keeps a slot left of the smallest decade for 0."""

    def __init__(self, values: Sequence[float], log: bool = False, zero: bool = False) -> None:
        vals = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
        pos = [v for v in vals if v > 0]
        self.log = log and bool(pos)
        if self.log:
            self.has_zero = any(v <= 0 for v in vals)
            lo = math.floor(math.log10(min(pos)))
            hi = math.ceil(math.log10(max(pos)))
            if hi == lo:
                hi += 1
            self.zero_at = lo - 0.8
            self.lo = self.zero_at - 0.3 if self.has_zero else lo
            self.hi = hi
            step = max(1, math.ceil((hi - lo) / 7))
            self.ticks = ([0.0] if self.has_zero else []) + [10.0**k for k in range(lo, hi + 1, step)]
        else:
            lo, hi = min(vals), max(vals)
            if zero:
                lo = min(lo, 0.0)
            self.ticks = nice_ticks(lo, hi)
            self.lo, self.hi = self.ticks[0], self.ticks[-1]

    def __call__(self, v: float) -> float:
        t = (self.zero_at if v <= 0 else math.log10(v)) if self.log else v
        return (t - self.lo) / ((self.hi - self.lo) or 1.0)


def _frame(title: str, xlabel: str, ylabel: str, xa: Axis, ya: Axis, xfmt: Callable[[float], str],
           yfmt: Callable[[float], str]) -> list[str]:
    pw, ph = W - ML - MR, H - MT - MB
    out = [f'<text class="ctitle" x="{ML}" y="18">{esc(title)}</text>']
    for t in ya.ticks:
        y = MT + ph * (1 - ya(t))
        out.append(f'<line class="grid" x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(yfmt(t))}</text>')
    for t in xa.ticks:
        x = ML + pw * xa(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{H - MB}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{H - MB + 16}" text-anchor="middle">{esc(xfmt(t))}</text>')
    out.append(f'<rect class="plotarea" x="{ML}" y="{MT}" width="{pw}" height="{ph}"/>')
    out.append(f'<text class="alabel" x="{ML + pw / 2:.1f}" y="{H - 8}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text class="alabel" transform="translate(14 {MT + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{esc(ylabel)}</text>')
    return out


def _svg(body: list[str], label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>")


def spans_decades(values: Sequence[float], ratio: float = 30.0) -> bool:
    """Whether positive values differ enough that a log axis reads better (learning rates)."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(pos) and max(pos) / min(pos) > ratio


def line_chart_svg(title: str, series: list[Series], xlabel: str = "step", ylabel: str = "",
                   yfmt: Callable[[float], str] | None = None, log_y: bool = False, whole_x: bool = False) -> str:
    """All runs overlaid on one chart; each run's line and markers in its toggle group. `whole_x`:
    x counts whole things (trials), so only whole numbers get a tick."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if math.isfinite(y)]
    xa, ya = Axis(xs, zero=True), Axis(ys, log=log_y)
    if whole_x:
        xa.ticks = [t for t in xa.ticks if float(t).is_integer()]
    pw, ph = W - ML - MR, H - MT - MB
    body = _frame(title, xlabel, ylabel, xa, ya, lambda v: f"{v:g}", yfmt or (lambda v: f"{v:.4g}"))
    for s in series:
        pts = [(ML + pw * xa(x), MT + ph * (1 - ya(y)), x, y) for x, y in s.points if math.isfinite(y)]
        if not pts:
            continue
        g = [f'<g class="series" data-series="{s.index}"><title>{esc(s.label)}</title>']
        if len(pts) > 1:
            d = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            g.append(f'<polyline points="{d}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        r = 3 if len(pts) <= 40 else 0
        if len(pts) == 1:
            r = 4
        if r:
            for px, py, x, y in pts:
                g.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{s.color}">'
                         f'<title>{esc(s.label)}: step {x:g}, {y:.4g}</title></circle>')
        g.append("</g>")
        body += g
    return _svg(body, title)


def _place_labels(points: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """Greedy label placement: try spots around each point, keep the first that overlaps nothing."""
    placed: list[tuple[float, float, float, float]] = []
    marks = [(px - 6, py - 6, px + 6, py + 6) for px, py, _ in points]
    out = []

    def free(box: tuple[float, float, float, float], own: int) -> bool:
        if box[0] < ML + 2 or box[2] > W - MR - 2 or box[1] < MT + 2 or box[3] > H - MB - 2:
            return False
        others = placed + [m for j, m in enumerate(marks) if j != own]
        return not any(box[0] < b[2] and box[2] > b[0] and box[1] < b[3] and box[3] > b[1] for b in others)

    for i, (px, py, text) in enumerate(points):
        w, h = 6.2 * len(text) + 2, 12
        spots = [(px + 8, py + 4), (px + 8, py - 7), (px + 8, py + 15), (px - 8 - w, py + 4), (px - w / 2, py - 10),
                 (px - w / 2, py + 19), (px - 8 - w, py - 7), (px - 8 - w, py + 15)]
        for dy in range(1, 12):  # then further out, above and below, right then left
            spots += [(px + 8, py + 4 - dy * h), (px + 8, py + 4 + dy * h),
                      (px - 8 - w, py + 4 - dy * h), (px - 8 - w, py + 4 + dy * h)]
        choice = next(((x, y) for x, y in spots if free((x, y - h + 2, x + w, y + 2), i)), None)
        if choice is None:  # crowded: the first spot inside the plot, overlaps and all
            inside = [(x, y) for x, y in spots if x >= ML + 2 and x + w <= W - MR - 2 and MT + h <= y <= H - MB - 2]
            choice = (inside or spots)[0]
        x, y = choice
        placed.append((x, y - h + 2, x + w, y + 2))
        out.append((x, y))
    return out


def pareto_svg(title: str, points: list[Point], xkey: str, xlabel: str, ylabel: str, log_x: bool,
               zero_x: bool = False) -> str:
    """Quality (y, higher is better) against a cost (x, lower is better), frontier drawn."""
    xa = Axis([p.x for p in points], log=log_x, zero=zero_x)
    ya = Axis([p.y for p in points] + [v for p in points for v in (p.y_low, p.y_high) if v is not None])
    pw, ph = W - ML - MR, H - MT - MB

    def sx(v: float) -> float:
        return ML + pw * xa(v)

    def sy(v: float) -> float:
        return MT + ph * (1 - ya(v))

    body = _frame(title, xlabel, ylabel, xa, ya, lambda v: axis_fmt(xkey, v), lambda v: f"{v:.4g}")
    front = sorted((p for p in points if p.frontier), key=lambda p: (p.x, -p.y))
    if front:
        steps = [(sx(front[0].x), sy(front[0].y))]
        for a, b in zip(front, front[1:], strict=False):
            steps += [(sx(b.x), sy(a.y)), (sx(b.x), sy(b.y))]
        steps.append((W - MR, sy(front[-1].y)))
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in steps)
        body.append(f'<polyline class="frontier" points="{d}" fill="none"/>')
    order = sorted(points, key=lambda p: (sy(p.y), sx(p.x)))
    spots = _place_labels([(sx(p.x), sy(p.y), p.label) for p in order])
    for p, (lx, ly) in zip(order, spots, strict=True):
        px, py = sx(p.x), sy(p.y)
        # A label placed away from its point gets a thin leader line to it.
        near_x = min(max(px, lx), lx + 6.2 * len(p.label) + 2)
        near_y = min(max(py, ly - 10), ly)
        leader = ""
        if math.hypot(near_x - px, near_y - py) > 16:
            leader = (f'<line class="leader" x1="{px:.1f}" y1="{py:.1f}" x2="{near_x:.1f}" y2="{near_y:.1f}" '
                      f'stroke="{p.color}"/>')
        cls = "pt front" if p.frontier else "pt"
        tip = f"{p.label}: {ylabel} {p.y:.4g}, {xlabel} {axis_fmt(xkey, p.x)}" + (" (on the frontier)" if p.frontier else "")
        bar = ""
        if p.y_low is not None and p.y_high is not None:
            tip += f"; 95% CI {p.y_low:.4g}-{p.y_high:.4g}"
            bar = (f'<line class="errbar" x1="{px:.1f}" x2="{px:.1f}" y1="{sy(p.y_low):.1f}" y2="{sy(p.y_high):.1f}" '
                   f'stroke="{p.color}"/>')
        body.append(
            f'<g class="series" data-series="{p.index}">{leader}{bar}<circle class="{cls}" cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" '
            f'r="{6 if p.frontier else 5}" fill="{p.color}"><title>{esc(tip)}</title></circle>'
            f'<text class="plabel{" front" if p.frontier else ""}" x="{lx:.1f}" y="{ly:.1f}">{esc(p.label)}</text></g>'
        )
    return _svg(body, title)


@dataclass
class Ranked:
    """One run on the ranking chart: its main metric, 95% interval and rank group."""

    label: str
    index: int
    color: str
    value: float
    low: float | None
    high: float | None
    group: int | None


def ranking_svg(title: str, rows: list[Ranked], xlabel: str) -> str:
    """The runs best first, each a dot at its main metric with its 95% interval as a whisker; the
    band of rank group 1 (runs that cannot be told apart from the best) is shaded."""
    h = MT + 22 * len(rows) + MB
    vals = [v for r in rows for v in (r.value, r.low, r.high) if v is not None]
    xa = Axis(vals)
    left, pw = 150, W - 150 - MR
    out = [f'<text class="ctitle" x="{ML}" y="18">{esc(title)}</text>']
    for t in xa.ticks:
        x = left + pw * xa(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{h - MB}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{h - MB + 16}" text-anchor="middle">{esc(f"{t:.4g}")}</text>')
    g1 = [r for r in rows if r.group == 1]
    if len(g1) > 1:
        y0, y1 = MT + 22 * rows.index(g1[0]), MT + 22 * (rows.index(g1[-1]) + 1)
        out.append(f'<rect class="group1" x="{left}" y="{y0}" width="{pw}" height="{y1 - y0}"/>')
    for i, r in enumerate(rows):
        y = MT + 22 * i + 11
        tip = f"{r.label}: {r.value:.4g}" + (f", 95% CI {r.low:.4g}-{r.high:.4g}" if r.low is not None else "") + (
            f", rank group {r.group}" if r.group is not None else "")
        g = [f'<g class="series" data-series="{r.index}"><title>{esc(tip)}</title>',
             f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(r.label)}</text>']
        if r.low is not None and r.high is not None:
            g.append(f'<line class="errbar" x1="{left + pw * xa(r.low):.1f}" x2="{left + pw * xa(r.high):.1f}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{r.color}" stroke-width="2"/>')
        g.append(f'<circle cx="{left + pw * xa(r.value):.1f}" cy="{y:.1f}" r="5" fill="{r.color}"/></g>')
        out += g
    out.append(f'<text class="alabel" x="{left + pw / 2:.1f}" y="{h - 8}" text-anchor="middle">{esc(xlabel)}</text>')
    return (f'<svg class="chart" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{esc(title)}" '
            'xmlns="http://www.w3.org/2000/svg">' + "".join(out) + "</svg>")


# -- PNG (matplotlib, no pyplot: no GUI backend, safe in threads and servers) ------------
def _figure(title: str, xlabel: str, ylabel: str):  # noqa: ANN202 - matplotlib types
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e5e5e5")
    return fig, ax


def line_chart_png(path: Path, title: str, series: list[Series], xlabel: str = "step", ylabel: str = "",
                   log_y: bool = False) -> Path:
    fig, ax = _figure(title, xlabel, ylabel)
    if log_y:
        ax.set_yscale("symlog", linthresh=min(y for s in series for _, y in s.points if y > 0))
    for s in series:
        pts = [(x, y) for x, y in s.points if math.isfinite(y)]
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o" if len(pts) <= 40 else None,
                    markersize=3, color=s.color, label=s.label, linestyle="--" if s.dashed else "-")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def pareto_png(path: Path, title: str, points: list[Point], xkey: str, xlabel: str, ylabel: str, log_x: bool,
               label: Callable[[Point], bool] | None = None) -> Path:
    """`label`: which points get their name (default every one; with dozens, say the frontier)."""
    fig, ax = _figure(title, xlabel, ylabel)
    if log_x and any(p.x > 0 for p in points):
        ax.set_xscale("symlog", linthresh=max(1e-9, min(p.x for p in points if p.x > 0)))
    front = sorted((p for p in points if p.frontier), key=lambda p: (p.x, -p.y))
    if front:
        ax.step([p.x for p in front], [p.y for p in front], where="post", color="#444", linestyle="--",
                linewidth=1.2, label="Pareto frontier")
    for p in points:
        if p.y_low is not None and p.y_high is not None:
            ax.errorbar([p.x], [p.y], yerr=[[p.y - p.y_low], [p.y_high - p.y]], color=p.color, capsize=3, zorder=2)
        ax.scatter([p.x], [p.y], color=p.color, s=60 if p.frontier else 36,
                   edgecolors="#222" if p.frontier else "none", zorder=3)
        if label is None or label(p):
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    if front:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def confusion_png(path: Path, title: str, matrix: list[list[int]], labels: list[str]) -> Path:
    fig, ax = _figure(title, "predicted", "true")
    ax.grid(False)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    top = max((v for r in matrix for v in r), default=0)
    for i, r in enumerate(matrix):
        for j, v in enumerate(r):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def ranking_png(path: Path, title: str, rows: list[Ranked], xlabel: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.8 + 0.35 * len(rows)), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", color="#e5e5e5")
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows, strict=True):
        if r.low is not None and r.high is not None:
            ax.errorbar([r.value], [y], xerr=[[r.value - r.low], [r.high - r.value]], color=r.color, capsize=3)
        ax.scatter([r.value], [y], color=r.color, s=40, zorder=3)
    ax.set_yticks(ys, [f"{r.label}" + (f" (group {r.group})" if r.group is not None else "") for r in rows],
                  fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
