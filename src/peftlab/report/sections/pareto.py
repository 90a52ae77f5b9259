"""The main metric against each cost, with the Pareto frontier (also the slides' PNGs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.report import plots
from peftlab.report.collect import ReportData
from peftlab.report.recommend import PARETO_COSTS, pareto_front
from peftlab.report.sections.common import RunTag, esc, legend, note, section

ID, TITLE = "pareto", "Cost vs quality"


@dataclass
class Chart:
    key: str  # the cost
    label: str
    log: bool
    zero: bool  # linear axis starts at 0
    points: list[plots.Point]
    frontier: list[str]  # labels on the frontier, cheapest first


@dataclass
class ParetoView:
    main_metric: str
    charts: list[Chart]
    legend: list[RunTag]  # runs plotted in any chart


def _n(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def pareto_points(data: ReportData, key: str) -> list[plots.Point]:
    """One point per leaderboard row (a method configuration: its mean over seeds and its interval)."""
    m = data.main_metric
    rs = [r for r in data.rows if not r.get("baseline") and r.get("rank") is not None
          and _n(r.get(m)) is not None and _n(r.get(key)) is not None and data.view_of(r) is not None]
    xy = [(_n(r.get(key)) or 0.0, _n(r.get(m)) or 0.0) for r in rs]
    front = set(pareto_front(xy))
    out = []
    for i, (r, (x, y)) in enumerate(zip(rs, xy, strict=True)):
        v = data.view_of(r)
        assert v is not None
        out.append(plots.Point(r["run"], v.index, v.color, x, y, i in front, _n(r.get(f"{m}_ci_low")),
                               _n(r.get(f"{m}_ci_high"))))
    return out


def view(data: ReportData) -> ParetoView:
    charts = []
    plotted: dict[int, RunTag] = {}
    for key, label, log, zero in PARETO_COSTS:
        pts = pareto_points(data, key)
        if not pts:
            continue
        for p in pts:
            plotted[p.index] = RunTag(p.label, p.color, p.index)
        front = [p.label for p in sorted((p for p in pts if p.frontier), key=lambda p: p.x)]
        charts.append(Chart(key, label, log, zero, pts, front))
    return ParetoView(data.main_metric, charts, sorted(plotted.values(), key=lambda t: t.index))


def render(p: ParetoView) -> str:
    if not p.charts:
        return section(ID, "Cost vs quality", note("No finished run has both a score and its costs."))
    boxes = []
    for c in p.charts:
        svg = plots.pareto_svg(f"{p.main_metric} vs {c.label}", c.points, c.key, c.label, p.main_metric, c.log, c.zero)
        boxes.append(f'<div class="chartbox" data-chart="pareto-{esc(c.key)}">{svg}'
                     f'{note("Frontier (cheapest first): " + esc(" → ".join(c.frontier)))}</div>')
    explain = note("The main metric against each cost. The dashed staircase is the Pareto frontier: runs (bold, "
                   "outlined) that no other run beats on both quality and that cost. Everything below or right of it "
                   "is dominated. Parameter counts and sizes are on a log scale with 0 (zero-shot) at the far left. "
                   "Vertical bars: the main metric's 95% confidence interval. One point per method configuration (the mean "
                   "over its seeds). Forgetting (nats/token) is what the run costs the base model's general ability: its loss minus "
                   "the base's on a reference set that is not the task's data; the zero-shot row sits at 0.")
    return section(ID, "Cost vs quality", f'{explain}{legend(p.legend)}<div class="charts">{"".join(boxes)}</div>')
