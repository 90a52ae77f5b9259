"""The HTML report: one self-contained file (styles, scripts and charts inline, nothing fetched).

    build_report(store, ["my-exp"], out="report.html")            # what `peftlab report` calls
    build_report(store, ["exp-a", "exp-b"], out="compare.html")   # `peftlab compare`
    render(collect(store, ["my-exp"]), ReportOptions())          # the page only (the web service)

This module assembles the page: collect the runs (`collect.py`, where scores are computed),
recommend once (`recommend.py`), prepare each section's view, render the sections in `BODY`
order, and write the file and the PNG charts. The sections themselves (recommendation,
leaderboard, curves, cost vs quality, generation health, per class, outputs side by side,
config diff, versions and machine, how each metric was computed) are in `sections/`, one
module each; a new one goes there (see `sections/__init__.py`) plus a line in `BODY` and in
`_views` below.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.report import plots
from peftlab.report.collect import ReportData, add_bertscores, collect, version_drift
from peftlab.report.recommend import Budget, Recommendation, recommend
from peftlab.report.sections import (
    classes,
    config,
    curves,
    environment,
    evaluations,
    header,
    health,
    leaderboard,
    metrics,
    outputs,
    pareto,
    race,
    recommendation,
    tuning,
)
from peftlab.report.sections.common import esc
from peftlab.store import Store

# The sections in page order; each renders the view `_views` prepares for it (None: not shown).
BODY = (recommendation, leaderboard, evaluations, race, tuning, curves, pareto, health, classes, outputs, config, environment,
        metrics)


@dataclass
class ReportOptions:
    budget: Budget = field(default_factory=Budget)
    # the costs that pick among tied runs (rank group 1), in order (report.recommend.DEFAULT_PREFER)
    prefer: tuple[str, ...] = ("trainable_params", "peak_memory_mb", "train_seconds")
    sample: int = 20  # outputs shown side by side (a fixed random sample of test inputs)
    all_outputs: bool = False
    bertscore: bool = True
    bertscore_model: str | None = None  # overrides each experiment's evaluation.bertscore_model
    png_dir: Path | None = None
    title: str | None = None


def _asset(name: str) -> str:
    return (importlib.resources.files("peftlab.report") / "assets" / name).read_text(encoding="utf-8")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _views(data: ReportData, opts: ReportOptions, rec: Recommendation, problems: list[str]) -> dict[str, Any]:
    """Each section's prepared view, by section id."""
    return {
        recommendation.ID: recommendation.view(rec, data.notes),
        leaderboard.ID: leaderboard.view(data, rec.run),
        evaluations.ID: evaluations.view(data),
        race.ID: race.view(data),
        tuning.ID: tuning.view(data),
        curves.ID: curves.view(data),
        pareto.ID: pareto.view(data),
        health.ID: health.view(data),
        classes.ID: classes.view(data),
        outputs.ID: outputs.view(data, opts.sample, opts.all_outputs),
        config.ID: config.view(data),
        environment.ID: environment.view(data),
        metrics.ID: metrics.view(data, problems),
    }


def render(data: ReportData, opts: ReportOptions, problems: list[str] | None = None,
           rec: Recommendation | None = None) -> str:
    """The page. `rec`: the recommendation already made for `data` (made here when not given)."""
    rec = rec if rec is not None else recommend(data, opts.budget, opts.prefer)
    views = _views(data, opts, rec, problems or [])
    shown = [(s, views[s.ID]) for s in BODY if views[s.ID] is not None]
    title = opts.title or f"peftlab report: {data.title}"
    top = header.render(header.view(data, title, [(s.ID, s.TITLE) for s, _ in shown]))
    body = "".join(s.render(v) for s, v in shown)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{esc(title)}</title><style>{_asset("report.css")}</style></head>'
            f'<body>{top}<main>{body}</main><script>{_asset("report.js")}</script></body></html>\n')


def write_pngs(data: ReportData, out_dir: Path) -> list[Path]:
    """The report's charts as PNG files (150 dpi) for slides."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for c in curves.charts(data):
        written.append(plots.line_chart_png(out_dir / f"curve_{_slug(c.name)}.png", c.title, c.series, "step",
                                            c.name, c.log))
    for p in pareto.view(data).charts:
        written.append(plots.pareto_png(out_dir / f"pareto_{_slug(p.key)}.png", f"{data.main_metric} vs {p.label}",
                                        p.points, p.key, p.label, data.main_metric, p.log))
    ranked = leaderboard.ranking(data)
    if ranked:
        written.append(plots.ranking_png(out_dir / "ranking.png", f"{data.main_metric} with 95% confidence intervals",
                                         ranked, data.main_metric))
    tv = tuning.view(data)
    if tv is not None and tuning.curve_series(tv):
        written.append(plots.line_chart_png(out_dir / "budget_curves.png",
                                            f"Expected best validation {data.main_metric} after n trials",
                                            tuning.curve_series(tv), "trials", data.main_metric))
    for v in data.runs:
        cm = classes.confusion(v)
        if cm is not None:
            written.append(plots.confusion_png(out_dir / f"confusion_{_slug(v.label)}.png",
                                               f"{v.label}: confusion matrix", *cm))
    return written


@dataclass
class ReportResult:
    path: Path
    data: ReportData
    recommendation: Recommendation  # the one the page shows
    pngs: list[Path]
    problems: list[str]


def build_report(
    store: Store,
    experiments: list[str] | None = None,
    out: str | Path = "report.html",
    run_ids: list[int] | None = None,
    options: ReportOptions | None = None,
) -> ReportResult:
    """Collect, score (BERTScore, cached), recommend, render and write the report; optionally the PNGs."""
    opts = options or ReportOptions()
    data = collect(store, experiments, run_ids)
    problems = add_bertscores(store, data, opts.bertscore_model) if opts.bertscore and data.generative else []
    problems += version_drift(data.runs)
    rec = recommend(data, opts.budget, opts.prefer)
    page = render(data, opts, problems, rec)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    pngs = write_pngs(data, Path(opts.png_dir)) if opts.png_dir else []
    return ReportResult(path, data, rec, pngs, problems)
