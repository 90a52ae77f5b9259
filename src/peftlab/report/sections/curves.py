"""Training curves of all runs overlaid, one chart per logged quantity (also the slides' PNGs)."""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.report import plots
from peftlab.report.collect import ReportData
from peftlab.report.sections.common import RunTag, esc, legend, note, section, tag

ID, TITLE = "curves", "Curves"
CURVES = (("train_loss", "Train loss"), ("eval_loss", "Validation loss"))


@dataclass
class Chart:
    name: str  # the curve's name in the store
    title: str
    series: list[plots.Series]
    log: bool  # log-scale y axis (a learning rate that spans decades)


@dataclass
class CurvesView:
    charts: list[Chart]
    legend: list[RunTag]  # runs with any curve
    no_curve: list[str]  # labels of runs without one


def curve_specs(data: ReportData) -> list[tuple[str, str]]:
    """(curve name, title) of every quantity some run logged, in display order."""
    names = {n for v in data.runs for n in v.curves}
    specs = [(n, t) for n, t in CURVES if n in names]
    for cand in (f"val_{data.main_metric}", f"eval_{data.main_metric}", data.main_metric):
        if cand in names:
            specs.append((cand, f"Validation {data.main_metric}"))
            break
    if "learning_rate" in names:
        specs.append(("learning_rate", "Learning rate"))
    return specs


def charts(data: ReportData) -> list[Chart]:
    out = []
    for name, title in curve_specs(data):
        series = [plots.Series(v.label, v.index, v.color, [(float(s), float(y)) for s, y in v.curves[name]],
                               dashed=v.run.status != "done")
                  for v in data.runs if v.curves.get(name)]
        log = name == "learning_rate" and plots.spans_decades([y for s in series for _, y in s.points])
        out.append(Chart(name, title, series, log))
    return out


def view(data: ReportData) -> CurvesView:
    return CurvesView(charts(data), [tag(v) for v in data.runs if v.curves],
                      [v.label for v in data.runs if not v.curves])


def _lr_tick(x: float) -> str:
    return "0" if x == 0 else f"{x:.0e}"


def render(c: CurvesView) -> str:
    if not c.charts:
        return section(ID, "Curves", note("No run logged any curve (zero-shot runs do not train)."))
    boxes = []
    for ch in c.charts:
        yfmt = _lr_tick if ch.name == "learning_rate" else None
        svg = plots.line_chart_svg(ch.title + (" (log scale)" if ch.log else ""), ch.series, "step", ch.name, yfmt,
                                   ch.log)
        boxes.append(f'<div class="chartbox" data-chart="{esc(ch.name)}">{svg}</div>')
    extra = f" Not shown (no curve): {esc(', '.join(c.no_curve))}." if c.no_curve else ""
    explain = note("All runs overlaid; tick a run to show or hide it in every chart. Dashed lines are runs that did "
                   f"not finish (a diverged run stops where it blew up).{extra}")
    return section(ID, "Curves", f'{explain}{legend(c.legend)}<div class="charts">{"".join(boxes)}</div>')
