"""Gather what a report shows from the store: runs, their rows, curves and predictions.

One `ReportData` can hold runs of one experiment (`peftlab report`) or of several
(`peftlab compare`); run labels get the experiment as a prefix only when needed to tell
runs apart. Scores the report adds to what the runs recorded are computed here too, once:
each run's per-example ROUGE (`RunView.row_scores`) and BERTScore (`add_bertscores`).
The sections (`report/sections/`) only read what this module gathered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.evaluate.bertscore import read_predictions
from peftlab.evaluate.metrics import sentence_scores
from peftlab.methods import REGISTRY, Method
from peftlab.report.leaderboard import (
    collapse,
    is_trial,
    row,
    variant_of,
)
from peftlab.store import Run, Store
from peftlab.tasks.spec import SPECS, main_metric

# Colour-blind-friendly categorical palette (Tableau 10, then more), one colour per method.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf",
           "#393b79", "#b5cf6b", "#8c6d31", "#e7969c", "#7b4173", "#637939", "#843c39", "#3182bd")


def method_color(method: str) -> str:
    """A method's colour: fixed by its place in the registry, so a method has the same colour in
    every chart, report and experiment (the web pages use the same one)."""
    names = list(REGISTRY)
    i = names.index(method) if method in names else sum(map(ord, method))
    return PALETTE[i % len(PALETTE)]


def assign_colors(views: list[RunView]) -> None:
    """Each view gets its method's colour; the seeds of one leaderboard row share it, and a second
    row of a method in the same report (a variant, or the same method in another experiment) gets
    the next free colour, so lines stay apart."""
    used: set[str] = set()
    row_color: dict[tuple[str, str], str] = {}
    for v in views:
        key = (v.experiment, variant_of(v.run))
        if key in row_color:
            v.color = row_color[key]
            continue
        c = method_color(v.run.method)
        if c in used:
            start = PALETTE.index(c)
            c = next((PALETTE[(start + k) % len(PALETTE)] for k in range(1, len(PALETTE))
                      if PALETTE[(start + k) % len(PALETTE)] not in used), c)
        used.add(c)
        v.color = row_color[key] = c


@dataclass
class RunView:
    run: Run
    label: str
    experiment: str
    task: str
    row: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]]
    color: str
    index: int
    predictions: list[dict[str, Any]] | None = None

    @property
    def done(self) -> bool:
        return self.run.status == "done"

    @property
    def method(self) -> Method | None:
        """The run's method (its traits); None for a method this version no longer has."""
        return REGISTRY.get(self.run.method)

    @property
    def trains(self) -> bool:
        return self.method.trains if self.method else True

    @property
    def is_baseline(self) -> bool:
        """The untouched base model's row (zero-shot)."""
        return bool(self.method and self.method.is_baseline)

    @property
    def is_full(self) -> bool:
        """The full fine-tuning row."""
        return bool(self.method and self.method.is_full)

    def metric(self, name: str) -> float | None:
        v = (self.run.metrics or {}).get(name)
        return float(v) if isinstance(v, int | float) and not math.isnan(float(v)) else None

    def cost(self, name: str) -> float | None:
        v = (self.run.cost or {}).get(name)
        return float(v) if isinstance(v, int | float) and not math.isnan(float(v)) else None

    @property
    def health(self) -> dict[str, Any] | None:
        return (self.run.info or {}).get("health")

    @property
    def untrained_head(self) -> bool:
        """A zero-shot classifier: its classification head is freshly initialised, so its scores are
        chance level, not what the base model knows."""
        spec = SPECS.get(self.task)
        return self.is_baseline and spec is not None and not spec.generative

    @cached_property
    def collapsed(self) -> str | None:
        """'97% of test predictions are 'neutral' (...)' when a classifier's predictions collapse
        onto one class (`leaderboard.collapse`)."""
        spec = SPECS.get(self.task)
        if not self.done or spec is None or spec.generative:
            return None
        return collapse(self.predictions, (self.run.info or {}).get("labels"))

    @cached_property
    def row_scores(self) -> list[dict[str, float]] | None:
        """Per-example ROUGE of each prediction, in `predictions` order (`sentence_scores`: the
        definition the run's corpus ROUGE averages); None for a run without predictions or of
        a task that does not generate text. Computed on first use, once per view: the
        leaderboard and the recommendation never need it."""
        spec = SPECS.get(self.task)
        if not self.predictions or spec is None or not spec.generative:
            return None
        return sentence_scores([str(p.get("output", "")) for p in self.predictions],
                               [references(p) for p in self.predictions])


@dataclass
class ReportData:
    title: str
    experiments: list[dict[str, Any]]
    runs: list[RunView]
    main_metric: str
    tasks: list[str]
    notes: list[str] = field(default_factory=list)
    trials: list[Run] = field(default_factory=list)  # tuning trials: shown apart (budget curves)
    # the leaderboard (`leaderboard.rows`): one row per method configuration over its seeds, the
    # majority-class row among them; what the leaderboard section, the charts and the
    # recommendation show
    rows: list[dict[str, Any]] = field(default_factory=list)
    # runs the experiments' plans make that do not exist yet (a tuned launch makes its final runs
    # after its trials: `tune.plan.save_plan`)
    planned_missing: list[str] = field(default_factory=list)
    races: list[Any] = field(default_factory=list)  # `report.race.RaceView` of each raced experiment

    @property
    def baselines(self) -> list[dict[str, Any]]:
        """The rows that are not runs: the majority-class row of each classification experiment."""
        return [r for r in self.rows if r.get("baseline")]

    @property
    def test_examples(self) -> int | None:
        """How many test examples the scores rest on (the best finished run's)."""
        for v in self.runs:
            n = ((v.run.info or {}).get("data") or {}).get("test")
            if v.done and n:
                return int(n)
        return None

    def view_of(self, row: dict[str, Any]) -> RunView | None:
        """The run view that stands for a leaderboard row in charts: its representative seed's."""
        name = row.get("representative") or row.get("run")
        exp = row.get("experiment")
        return next((v for v in self.runs if v.run.name == name and (exp is None or v.experiment == exp)),
                    next((v for v in self.runs if (exp is None or v.experiment == exp)
                          and variant_of(v.run) == str(row.get("run", "")).rsplit("/", 1)[-1]), None))

    @property
    def generative(self) -> bool:
        return any(t in SPECS and SPECS[t].generative for t in self.tasks)

    @property
    def classification(self) -> bool:
        return any(t in SPECS and not SPECS[t].generative for t in self.tasks)


def references(prediction: dict[str, Any]) -> list[str]:
    """The reference(s) a prediction row was scored against (one string, or a list)."""
    ref = prediction.get("reference", "")
    return [ref] if isinstance(ref, str) else [str(r) for r in ref] or [""]


def load_predictions(run: Run) -> list[dict[str, Any]] | None:
    path = run.file("predictions")
    if path is None or not path.is_file():
        return None
    return read_predictions(str(path))


def _rank_key(main: str):
    def key(v: RunView) -> tuple:
        m = v.metric(main)
        ok = v.done and m is not None
        loss = v.metric("eval_loss")
        return (0 if ok else 1, -(m if ok else 0.0), loss if loss is not None else math.inf, v.label)

    return key


def version_drift(views: list[RunView]) -> list[str]:
    """Runs trained on another set of library versions than the rest of their experiment: a
    difference between their results may come from the libraries alone, so it is said."""
    out = []
    for exp in dict.fromkeys(v.experiment for v in views):
        sets = [(v, tuple(sorted(((v.run.info or {}).get("versions") or {}).items())))
                for v in views if v.experiment == exp and (v.run.info or {}).get("versions")]
        if len({s for _, s in sets}) < 2:
            continue
        common = max({s for _, s in sets}, key=[s for _, s in sets].count)
        usual = dict(common)
        for v, s in sets:
            if s != common:
                diff = ", ".join(f"{k} {val} (others {usual.get(k, 'none')})" for k, val in s if usual.get(k) != val)
                out.append(f"{v.label} was trained on other library versions than the rest of {exp}: {diff}; "
                           f"re-run it on the same set (peftlab run --force --methods {v.run.name}) to compare "
                           "like with like")
    return out


def add_bertscores(store: Store, data: ReportData, model: str | None) -> list[str]:
    """BERTScore for every finished generation run (cached in the store). Returns problems met."""
    from peftlab.evaluate.bertscore import bertscore_run

    problems = []
    for v in data.runs:
        try:
            scores = bertscore_run(store, v.run, model=model)
        except PeftlabError as e:
            problems.append(f"BERTScore not computed for {v.label}: {e}")
            continue
        if scores:
            v.row.update(scores)
    return problems


def collect(store: Store, experiments: list[str] | None = None, run_ids: list[int] | None = None) -> ReportData:
    """Runs of the named experiments plus the runs with the given ids, ranked by the main metric."""
    runs: list[Run] = []
    for name in experiments or []:
        if store.experiment(name) is None:
            known = ", ".join(e["name"] for e in store.experiments()) or "(none)"
            raise PeftlabError(f"no experiment {name!r} in {store.root}; known: {known}")
        runs += store.runs(name)
    for rid in run_ids or []:
        r = store.run(rid)
        if r is None:
            raise PeftlabError(f"no run with id {rid} in {store.root}")
        if all(r.id != x.id for x in runs):
            runs.append(r)
    if not runs:
        raise PeftlabError("nothing to report: no runs found")
    exp_names = list(dict.fromkeys(r.experiment for r in runs))
    exps = [store.experiment(n) or {"name": n, "task": "?", "model": "?"} for n in exp_names]
    tasks = list(dict.fromkeys(e["task"] for e in exps))
    from peftlab.report.leaderboard import rows as leaderboard_rows

    try:  # one definition of the ranking: refused for experiments of different tasks or metrics
        board = leaderboard_rows(store, list(dict.fromkeys([*(experiments or []), *exp_names])))
    except KeyError as e:
        raise PeftlabError(str(e).strip("'\"")) from None
    if run_ids and not experiments:  # `compare --runs`: the rows of the runs asked for
        ids = {r.id for r in runs}
        board = [b for b in board if b.get("baseline") or ids & {s["run_id"] for s in b.get("seeds") or []}]
    notes: list[str] = []
    main = main_metric(tasks[0])
    task_of = {e["name"]: e["task"] for e in exps}
    trials = [r for r in runs if is_trial(r)]
    runs = [r for r in runs if not is_trial(r)]
    views = []
    for r in runs:
        label = r.name if len(exp_names) == 1 else f"{r.experiment}/{r.name}"
        views.append(RunView(run=r, label=label, experiment=r.experiment, task=task_of[r.experiment], row=row(r),
                             curves=store.curves(r.id), color="", index=0, predictions=load_predictions(r)))
    views.sort(key=_rank_key(main))
    assign_colors(views)
    rank = 0
    for i, v in enumerate(views):
        v.index = i
        if v.done and v.metric(main) is not None:
            rank += 1
            v.row["rank"] = rank
        else:
            v.row["rank"] = None
    title = exp_names[0] if len(exp_names) == 1 else " vs ".join(exp_names)
    notes += version_drift(views)
    add_significance(views, board)
    from peftlab.tune.plan import load_plan

    made = {(r.experiment, r.name) for r in runs + trials}
    missing = [n for e in exp_names for n in ((load_plan(store.root, e) or {}).get("runs") or [])
               if (e, n) not in made]
    from peftlab.report.race import view as race_view

    higher = all(SPECS[t].higher_is_better for t in tasks if t in SPECS)
    races = [v for e in exp_names if (v := race_view(store, e, higher)) is not None]
    return ReportData(title=title, experiments=exps, runs=views, main_metric=main, tasks=tasks, notes=notes,
                      trials=trials, rows=board, planned_missing=missing, races=races)


def add_significance(views: list[RunView], board: list[dict[str, Any]]) -> None:
    """The leaderboard's intervals onto the run views of rows trained once (a seed of a row over
    several seeds keeps its own values: the row's pooled interval is not the seed's)."""
    for r in board:
        seeds = r.get("seeds") or []
        if r.get("baseline") or len(seeds) != 1:
            continue
        v = next((v for v in views if v.run.id == seeds[0]["run_id"]), None)
        if v is not None:
            v.row.update({k: x for k, x in r.items() if k.endswith(("_ci_low", "_ci_high", "_std"))
                          or k in ("rank_group", "p_vs_best", "p_vs_best_bound", "n_seeds")})
