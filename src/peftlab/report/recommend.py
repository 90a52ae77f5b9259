"""The answer: which method to ship, made from the leaderboard's rows alone, and the Pareto
frontier of quality against cost.

The unit of the answer is a leaderboard row, a method configuration over its seeds, never one
seed and never a tuning trial. The rule, the one every surface shows (terminal, JSON, report,
Results, Export, model card):

1. No answer while a run it compares is still queued or running: say what is still going.
2. A row is recommendable when every seed finished, its predictions do not collapse onto one
   class, its generations are not flagged, and it is significantly better than its floor (the
   majority-class row of classification, the zero-shot row of generation; `beats_floor`). The
   zero-shot row is the floor itself, never the answer. Rows passed over are named with why.
3. Within the user's budget (when one is given, it changes the headline): among the
   recommendable rows that fit, the lowest rank group present (1: tied with the best) is the
   field, and its cheapest row (trainable parameters, then peak memory, then train time, or
   `--prefer`) is the recommendation.
4. When nothing clears the floors (or nothing that does fits the budget), the answer says so
   and recommends nothing, rather than naming the least bad.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from peftlab.report.collect import ReportData
from peftlab.report.fmt import fmt_p, fmt_value

# Costs a point can be plotted against: (key, label, log scale, linear axis starts at 0).
PARETO_COSTS = (
    ("trainable_params", "trainable parameters", True, False),
    ("peak_memory_mb", "peak memory (MB)", False, False),
    ("train_seconds", "train time (s)", False, True),
    ("adapter_bytes", "adapter size", True, False),
    ("forgetting", "forgetting (nats/token)", False, True),
)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_y = float("-inf")
    for i in order:
        x, y = points[i]
        if y > best_y or (front and y == best_y and x == points[front[-1]][0]):
            front.append(i)
            best_y = max(best_y, y)
    return sorted(front)


@dataclass
class Budget:
    max_memory_mb: float | None = None
    max_train_seconds: float | None = None
    max_trainable_percent: float | None = None
    max_forgetting: float | None = None  # nats/token (`evaluate.forgetting`); classification rows: not measured

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_memory_mb, self.max_train_seconds, self.max_trainable_percent,
                                           self.max_forgetting))

    def limits(self) -> list[tuple[str, float, str]]:
        out = []
        if self.max_memory_mb is not None:
            out.append(("peak_memory_mb", self.max_memory_mb, f"peak memory ≤ {self.max_memory_mb:g} MB"))
        if self.max_train_seconds is not None:
            out.append(("train_seconds", self.max_train_seconds, f"train time ≤ {self.max_train_seconds:g} s"))
        if self.max_trainable_percent is not None:
            out.append(("trainable_percent", self.max_trainable_percent,
                        f"trainable parameters ≤ {self.max_trainable_percent:g}%"))
        if self.max_forgetting is not None:
            out.append(("forgetting", self.max_forgetting, f"forgetting ≤ {self.max_forgetting:g} nats/token"))
        return out

    def describe(self) -> str:
        return ", ".join(d for _, _, d in self.limits())

    def fits(self, row: dict[str, Any]) -> bool:
        return not self.over(row)

    def over(self, row: dict[str, Any]) -> list[str]:
        """The limits a row exceeds, said with its value ('trainable parameters 26% > 1%')."""
        out = []
        for key, limit, desc in self.limits():
            if key == "forgetting" and row.get("forgetting_na"):
                continue  # not measured for this task: the cap does not apply
            c = _num(row.get(key))
            if c is None or c > limit:
                name = desc.split(" ≤ ")[0]
                out.append(f"{name} {'unknown' if c is None else fmt_value(key, c)} > {limit:g}"
                           + ("%" if key == "trainable_percent" else " MB" if key == "peak_memory_mb" else
                              " s" if key == "train_seconds" else " nats/token" if key == "forgetting" else ""))
        return out


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


DEFAULT_PREFER = ("trainable_params", "peak_memory_mb", "train_seconds")
_COST_NAMES = {"trainable_params": "trainable parameters", "peak_memory_mb": "peak memory",
               "train_seconds": "train time"}


@dataclass
class Recommendation:
    """The answer for a set of leaderboard rows: the pick (a row: a method configuration over its
    seeds), the field it was picked from, what was passed over and why."""

    main_metric: str
    recommended: dict[str, Any] | None = None
    best: dict[str, Any] | None = None  # the best-valued finished row, recommendable or not
    tied: list[dict[str, Any]] = field(default_factory=list)  # the field the pick is the cheapest of
    passed_over: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    over_budget: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # runs still queued or running: no answer yet
    headline: str = ""  # one line, with **bold** markers
    paragraphs: list[str] = field(default_factory=list)  # with **bold** markers
    budget: Budget = field(default_factory=Budget)

    @property
    def final(self) -> bool:
        return not self.pending

    @property
    def run(self) -> str | None:
        """The recommended row's name (the method entry, e.g. 'lora')."""
        return self.recommended["run"] if self.recommended else None

    @property
    def representative(self) -> str | None:
        """The recommended row's median seed: the run to try, export or serve."""
        return self.recommended.get("representative") or self.recommended["run"] if self.recommended else None

    def mark(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows with the recommended one marked (`recommended`), as every table shows them."""
        return [{**r, "recommended": not r.get("baseline") and r["run"] == self.run} for r in rows]

    @property
    def text(self) -> str:
        return "\n\n".join(p.replace("**", "") for p in [self.headline, *self.paragraphs])

    @property
    def html(self) -> str:
        def one(p: str) -> str:
            return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(p))

        return (f'<p class="headline">{one(self.headline)}</p>'
                + "".join(f"<p>{one(p)}</p>" for p in self.paragraphs))

    def as_dict(self) -> dict[str, Any]:
        """The API's shape (the web pages, Export and the model card read this)."""
        return {"run": self.run, "representative": self.representative, "runs": self._seed_runs(),
                "tied": [r["run"] for r in self.tied], "best": self.best["run"] if self.best else None,
                "passed_over": [{"run": r["run"], "why": why} for r, why in self.passed_over],
                "over_budget": [{"run": r["run"], "why": why} for r, why in self.over_budget],
                "headline": self.headline.replace("**", ""), "text": self.text, "html": self.html,
                "final": self.final, "pending": self.pending, "budget": self.budget.describe() or None,
                "source": "peftlab.report.recommend"}

    def _seed_runs(self) -> list[str]:
        if not self.recommended:
            return []
        return [s["run"] for s in self.recommended.get("seeds") or []] or [self.recommended["run"]]


def _names(labels: list[str]) -> str:
    b = [f"**{x}**" for x in labels]
    return b[0] if len(b) == 1 else ", ".join(b[:-1]) + " and " + b[-1]


def _value(r: dict[str, Any], main: str) -> str:
    """'68.30 [63.70, 72.40] over 3 seeds (std 2.1)'."""
    v = _num(r.get(main))
    lo, hi = _num(r.get(f"{main}_ci_low")), _num(r.get(f"{main}_ci_high"))
    out = f"{main} {v:.2f}" if v is not None else f"no {main}"
    if lo is not None and hi is not None:
        out += f" [95% CI {lo:.2f}, {hi:.2f}]"
    k = r.get("n_seeds") or len(r.get("seeds") or []) or 1
    if k > 1:
        std = _num(r.get(f"{main}_std"))
        out += f", mean of {k} seeds" + (f" (std {std:.2f})" if std is not None else "")
    return out


def _costs(r: dict[str, Any]) -> str:
    if not r.get("trains", True):
        return "no training at all"
    what = (("trainable_percent", "{} of the parameters trained"), ("peak_memory_mb", "peak memory {} MB"),
            ("train_seconds", "train time {} s"), ("adapter_bytes", "saved size {}"),
            ("forgetting", "forgetting {} nats/token"))
    return ", ".join(t.format(fmt_value(k, c)) for k, t in what if (c := _num(r.get(k))) is not None)


def _why_not(r: dict[str, Any], main: str) -> str | None:
    """Why a finished row is not recommendable, in the user's words; None when it is."""
    if r.get("untrained_head"):
        return "zero-shot classification is an untrained head: chance level"
    if r.get("is_baseline"):
        return "the untouched base model: the floor the trained methods must beat"
    seeds = r.get("seeds") or []
    bad = [s for s in seeds if s["status"] not in ("done",)]
    if bad:
        said = ", ".join(f"{s['run']} {s['status']}" for s in bad)
        return f"{len(bad)} of {len(seeds)} seeds did not finish ({said})"
    if r.get("collapsed"):
        return f"its predictions collapse onto one class ({r['collapsed']})"
    if r.get("health_problems"):
        return f"its generations are flagged: {'; '.join(r['health_problems'])}"
    if r.get("beats_floor") is False:
        p = fmt_p(r.get("p_vs_floor"), bool(r.get("p_vs_floor_bound")))
        floor = r.get("floor") or "the floor"
        return f"not significantly better than {floor} on {main} (p {p if p[0] in '<≤' else '= ' + p})"
    return None


def recommend(data: ReportData, budget: Budget | None = None,
              prefer: tuple[str, ...] = DEFAULT_PREFER) -> Recommendation:
    """The answer for the report's rows (`data.rows`, `leaderboard.rows`): the module docstring's rule."""
    budget = budget or Budget()
    main = data.main_metric
    rec = Recommendation(main, budget=budget)
    rows = [r for r in data.rows if not r.get("baseline")]
    rec.pending = [s for r in rows for s in r.get("pending") or []] + [
        t.name for t in data.trials if t.status in ("queued", "running")]
    if rec.pending:  # while the launch is going, the runs its plan has not made yet are pending too
        rec.pending += data.planned_missing
    done = [r for r in rows if r.get("rank") is not None and _num(r.get(main)) is not None]
    rec.best = done[0] if done else None
    if rec.pending:
        rec.headline = (f"**No recommendation yet**: {len(rec.pending)} run(s) still going "
                        f"({', '.join(rec.pending[:8])}{', ...' if len(rec.pending) > 8 else ''}).")
        if rec.best is not None:
            rec.paragraphs.append(f"So far **{rec.best['run']}** leads with {_value(rec.best, main)}; the answer "
                                  "comes when every run it compares has finished.")
        return rec
    if not done:
        failed = [r for r in rows if r.get("status") in ("failed", "diverged")]
        rec.headline = "**No recommendation**: no run has finished with a score yet."
        if failed:
            rec.paragraphs.append("Unfinished: " + "; ".join(
                f"**{r['run']}** ({r['status']}: {r.get('error') or ''})" for r in failed) + ".")
        return rec
    if len({r.get("experiment") for r in done}) > 1 and not _aligned(done):
        rec.headline = ("**No recommendation across these experiments**: their runs were tested on different "
                        "test rows, so their scores cannot be compared pair by pair.")
        return rec
    eligible = []
    for r in done:
        why = _why_not(r, main)
        if why is None:
            eligible.append(r)
        else:
            rec.passed_over.append((r, why))
    fitting = []
    for r in eligible:
        over = budget.over(r) if budget.active else []
        if over:
            rec.over_budget.append((r, "; ".join(over)))
        else:
            fitting.append(r)
    within = f" within your budget ({budget.describe()})" if budget.active else ""
    if not fitting:
        if eligible:
            rec.headline = (f"**No recommendation{within}**: the methods that clear the floors all exceed it: "
                            + "; ".join(f"**{r['run']}**, {why}" for r, why in rec.over_budget) + ".")
        else:
            floors = sorted({str(r.get("floor")) for r in done if r.get("floor")}) or ["the floor"]
            rec.headline = (f"**No recommendation{within}**: no trained method clears the floors (significantly better than "
                            f"{' and '.join(floors)}, and no flag on its outputs), so none can be trusted to have "
                            "learned the task. Passed over, with why, below.")
        rec.paragraphs += _details(rec, data, main)
        return rec
    groups = [g for r in fitting if isinstance(g := r.get("rank_group"), int)]
    top = min(groups) if groups else None
    field_ = [r for r in fitting if r.get("rank_group") == top] if top is not None else fitting[:1]
    rec.tied = field_
    pick = min(field_, key=lambda r: (tuple(c if (c := _num(r.get(k))) is not None else math.inf for k in prefer),
                                      -(_num(r.get(main)) or 0.0)))
    rec.recommended = pick
    rec.headline = f"Recommendation{within}: **{pick['run']}**, {_value(pick, main)}."
    order = ", then ".join(_COST_NAMES.get(k, k) for k in prefer)
    lines = []
    if len(field_) > 1:
        others = [r for r in field_ if r is not pick]
        ps = [fmt_p(r.get("p_vs_best"), bool(r.get("p_vs_best_bound"))) for r in others]
        vs = ", ".join(f"{r['run']} {p}" for r, p in zip(others, ps, strict=True))
        lines.append(f"The test set cannot tell {_names([r['run'] for r in field_])} apart (rank group {top}; "
                     f"p vs the best: {vs}, "
                     f"Holm-corrected); **{pick['run']}** is the cheapest of them by {order}.")
    else:
        same_group = [r for r, _ in rec.over_budget if r.get("rank_group") == top and top is not None]
        others = [r for r in done if r is not pick and not r.get("baseline")]
        if same_group:
            lines.append(f"Of the methods in rank group {top}, it is the only one within your budget "
                         f"({_names([r['run'] for r in same_group])} are tied with it but over the budget).")
        elif top == 1 and pick is rec.best and others and all(
                isinstance(r.get("rank_group"), int) and r["rank_group"] > 1 for r in others):
            lines.append(f"**{pick['run']}** is significantly better than every other method (paired tests on the "
                         "same test examples, over seeds where there are several, Holm-corrected).")
        elif top is not None and top > 1:
            lines.append(f"It leads rank group {top}: the methods ranked above it were passed over or are over "
                         "the budget (below).")
    costs = _costs(pick)
    if costs:
        lines.append(f"Cost: {costs}.")
    if pick.get("floor") and pick.get("beats_floor"):
        lines.append(f"It beats {pick['floor']} (p {fmt_p(pick.get('p_vs_floor'), bool(pick.get('p_vs_floor_bound')))}"
                     ").")
    k = len(pick.get("seeds") or [])
    if k > 1 and pick.get("representative"):
        lines.append(f"Its median seed, **{pick['representative']}**, is the one to try and export.")
    rec.paragraphs.append(" ".join(lines))
    rec.paragraphs += _details(rec, data, main)
    return rec


def _aligned(rows: list[dict[str, Any]]) -> bool:
    """Rows of several experiments share test rows when their rank groups were computed together."""
    return all(isinstance(r.get("rank_group"), int) for r in rows)


def _details(rec: Recommendation, data: ReportData, main: str) -> list[str]:
    """Best overall, what was passed over and why, what is over the budget, the floor rows, notes."""
    out = []
    best = rec.best
    if best is not None and best is not rec.recommended:
        out.append(f"Best {main} overall: **{best['run']}**, {_value(best, main)}"
                   + (" (not recommended: see below)." if any(r is best for r, _ in rec.passed_over + rec.over_budget)
                      else "."))
    trained = [(r, w) for r, w in rec.passed_over if r.get("trains", True)]
    if trained:
        out.append("Passed over: " + "; ".join(f"**{r['run']}**, {w}" for r, w in trained) + ".")
    rows = [r for r in data.rows if not r.get("baseline") and r.get("rank") is not None]
    cautions = []
    # a row passed over for its flag has it said there already
    said = {id(r) for r, w in rec.passed_over if w.startswith(("its predictions collapse", "its generations are"))}
    flagged = [r for r in rows if r.get("health_problems") and id(r) not in said]
    if flagged:
        cautions.append("Generations flagged for " + "; ".join(
            f"**{r['run']}** ({'; '.join(r['health_problems'])})" for r in flagged)
            + ": read their scores with that in mind (see Generation health).")
    collapsed = [r for r in rows if r.get("collapsed") and id(r) not in said]
    if collapsed:
        cautions.append("Predictions collapse onto one class for " + "; ".join(
            f"**{r['run']}** ({r['collapsed']})" for r in collapsed) + ": such a run has not learned to tell the "
            "classes apart.")
    if cautions:
        out.append(" ".join(cautions))
    if rec.over_budget and rec.recommended is not None:
        out.append(f"Over your budget ({rec.budget.describe()}): "
                   + "; ".join(f"**{r['run']}**, {w}" for r, w in rec.over_budget) + ".")
    busy = [r for r in rows if r.get("timed_under_load") and r.get("trains", True)]
    if busy:
        out.append("Timed beside other jobs: " + ", ".join(f"**{r['run']}** (load {r['timed_under_load']:.1f})"
                                                          for r in busy)
                   + ": their train times are not comparable with the others'; compare CPU time (train CPU s) "
                   "instead, which other jobs do not inflate.")
    maj = next((b for b in data.rows if b.get("baseline")), None)
    if maj is not None and _num(maj.get(main)) is not None:
        out.append(f"The majority-class baseline (always {maj.get('majority_label')!r}) scores {main} "
                   f"{maj[main]:.2f}; a method must be significantly better to be recommended.")
    zs = next((r for r in data.rows if r.get("is_baseline") and r.get("rank") is not None), None)
    if zs is not None and zs.get("untrained_head"):
        out.append(f"**{zs['run']}** is an untrained classification head on the base model (random weights before "
                   f"training), so its {main} ({zs[main]:.2f}) is chance level, not what the model knows.")
    elif zs is None and data.generative:
        out.append("(No zero-shot row to measure against: add `zero-shot` to the methods.)")
    notes = []
    unfinished = [r for r in data.rows if not r.get("baseline") and r.get("rank") is None]
    if unfinished:
        def why(r: dict[str, Any]) -> str:
            if r.get("status") == "diverged":
                return f"diverged at step {r.get('diverged_step')}"
            return f"{r['status']}: {r['error']}" if r.get("error") else str(r["status"])

        notes.append("Not ranked: " + "; ".join(f"**{r['run']}** ({why(r)})" for r in unfinished) + ".")
    n_test = data.test_examples
    if n_test:
        notes.append(f"Scores come from {n_test} test examples" + (
            "; with so few, differences of a few points can be noise." if n_test < 200 else "."))
    if notes:
        out.append(" ".join(notes))
    return out
