"""Tuning: each method's trials, apart from the leaderboard, and its budget curve: the expected
best validation score after n trials (Dodge et al., 2019), so the reader sees whether the budget
was enough (a curve still climbing at the last trial says more trials would have paid)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from peftlab.report import plots
from peftlab.report.collect import PALETTE, ReportData
from peftlab.report.sections.common import RunTag, esc, legend, note, section, table
from peftlab.store import Run

ID, TITLE = "tuning", "Tuning"


@dataclass
class Study:
    variant: str
    color: str
    index: int
    trials: list[Run]  # in trial order
    scores: list[float]  # validation main metric of the finished trials, in trial order
    curve: list[float]  # expected maximum after n = 1..len(scores) trials
    best_params: dict | None


@dataclass
class TuningView:
    main_metric: str
    studies: list[Study]


def view(data: ReportData) -> TuningView | None:
    from peftlab.stats import expected_max_curve
    from peftlab.tasks.spec import SPECS

    studied = [r for r in data.trials if not r.config.get("race")]  # a race's runs: the race section's
    if not studied:
        return None
    by: dict[str, list[Run]] = {}
    for r in studied:
        by.setdefault(str(r.config.get("variant") or r.name), []).append(r)
    colors = {v.run.name: (v.color, v.index) for v in data.runs}
    higher = all(SPECS[t].higher_is_better for t in data.tasks if t in SPECS)
    studies = []
    for i, (variant, runs) in enumerate(sorted(by.items())):
        runs.sort(key=lambda r: (r.config.get("trial") or {}).get("number", 0))
        scores = [float(r.metrics[data.main_metric]) for r in runs
                  if r.status == "done" and isinstance((r.metrics or {}).get(data.main_metric), int | float)
                  and math.isfinite(r.metrics[data.main_metric])]
        curve = expected_max_curve(scores, higher) if scores else []
        best = max((r for r in runs if r.status == "done" and (r.metrics or {}).get(data.main_metric) is not None),
                   key=lambda r: r.metrics[data.main_metric] * (1 if higher else -1), default=None)
        color, index = colors.get(variant, (PALETTE[(len(data.runs) + i) % len(PALETTE)], len(data.runs) + i))
        studies.append(Study(variant, color, index, runs, scores, curve,
                             (best.config.get("trial") or {}).get("params") if best else None))
    return TuningView(data.main_metric, studies)


def curve_series(t: TuningView) -> list[plots.Series]:
    return [plots.Series(s.variant, s.index, s.color, [(float(n), y) for n, y in enumerate(s.curve, start=1)])
            for s in t.studies if s.curve]


def _params(p: dict | None) -> str:
    if not p:
        return "–"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def render(t: TuningView) -> str:
    svg = plots.line_chart_svg(f"Expected best validation {t.main_metric} after n trials", curve_series(t),
                               "trials", t.main_metric, whole_x=True)
    # the methods' toggles, as the other charts have them (a method's series has its run's index)
    tags = legend(RunTag(s.variant, s.color, s.index) for s in t.studies if s.curve)
    head = "<th>method</th><th class='num'>trials</th><th class='num'>finished</th>" \
           f"<th class='num'>best validation {esc(t.main_metric)}</th><th>best configuration</th>"
    rows = "".join(
        f"<tr><td>{esc(s.variant)}</td><td class='num'>{len(s.trials)}</td><td class='num'>{len(s.scores)}</td>"
        f"<td class='num'>{max(s.scores) if s.scores else float('nan'):.2f}</td><td class='mono'>{esc(_params(s.best_params))}</td></tr>"
        for s in t.studies)
    explain = note("Every method got the same budget: the same number of trials, each trained on the same steps (or "
                   "examples), proposed by the same seeded sampler, scored on the validation split (never the test "
                   "split). The best configuration of each trained the leaderboard's runs. The curve is the expected "
                   "best validation score after n trials (Dodge et al., 2019): still rising at the end means more "
                   "trials would likely have found better settings.")
    return section(ID, TITLE, explain + tags + f'<div class="chartbox" data-chart="budget">{svg}</div>'
                   + table(head, rows, id="tuning-table"))
