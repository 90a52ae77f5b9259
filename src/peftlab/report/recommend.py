"""The Pareto frontier of quality against cost, and the recommendation paragraph.

The recommendation only restates measured numbers: the best run by the main metric (ties
broken by test loss, as the leaderboard ranks), the best run within the user's budget, and
how far each is from the zero-shot row and from full fine-tuning.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from peftlab.report.collect import ReportData, RunView
from peftlab.report.fmt import fmt_value

# Costs a point can be plotted against: (key, label, log scale, linear axis starts at 0).
PARETO_COSTS = (
    ("trainable_params", "trainable parameters", True, False),
    ("peak_memory_mb", "peak memory (MB)", False, False),
    ("train_seconds", "train time (s)", False, True),
    ("adapter_bytes", "adapter size", True, False),
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

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_memory_mb, self.max_train_seconds, self.max_trainable_percent))

    def limits(self) -> list[tuple[str, float, str]]:
        out = []
        if self.max_memory_mb is not None:
            out.append(("peak_memory_mb", self.max_memory_mb, f"peak memory ≤ {self.max_memory_mb:g} MB"))
        if self.max_train_seconds is not None:
            out.append(("train_seconds", self.max_train_seconds, f"train time ≤ {self.max_train_seconds:g} s"))
        if self.max_trainable_percent is not None:
            out.append(("trainable_percent", self.max_trainable_percent,
                        f"trainable parameters ≤ {self.max_trainable_percent:g}%"))
        return out

    def describe(self) -> str:
        return ", ".join(d for _, _, d in self.limits())

    def fits(self, v: RunView) -> bool:
        for key, limit, _ in self.limits():
            c = v.cost(key)
            if c is None or c > limit:
                return False
        return True


@dataclass
class Recommendation:
    best: RunView | None
    best_in_budget: RunView | None
    zero_shot: RunView | None
    full: RunView | None
    paragraphs: list[str] = field(default_factory=list)  # with **bold** markers
    # The pick: the cheapest run that cannot be told apart from the best (rank group 1), within the
    # budget when one is given; the best itself when nothing ties with it or no statistics exist.
    recommended: RunView | None = None
    tied: list[RunView] = field(default_factory=list)  # rank group 1, best first

    @property
    def text(self) -> str:
        return "\n\n".join(p.replace("**", "") for p in self.paragraphs)

    @property
    def html(self) -> str:
        def one(p: str) -> str:
            return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(p))

        return "".join(f"<p>{one(p)}</p>" for p in self.paragraphs)


def ranked(data: ReportData) -> list[RunView]:
    """Finished runs with a main-metric value, best first (the leaderboard order)."""
    return [v for v in data.runs if v.row.get("rank") is not None]


def _baseline(data: ReportData, full: bool, like: RunView | None) -> RunView | None:
    """The best zero-shot row (or, `full`, full fine-tuning row), of `like`'s experiment if it has one."""
    cands = [v for v in ranked(data) if (v.is_full if full else v.is_baseline)]
    if like is not None:
        same = [v for v in cands if v.experiment == like.experiment]
        cands = same or cands
    return cands[0] if cands else None


def _delta(a: float, b: float) -> str:
    d = a - b
    return f"{'+' if d >= 0 else '−'}{abs(d):.2f}"


def _versus(v: RunView, main: str, zs: RunView | None, full: RunView | None) -> str:
    """'+12.30 over zero-shot (11.10) and −0.90 vs full fine-tuning (24.30)'."""
    m = v.metric(main)
    assert m is not None
    parts = []
    if zs is not None and zs is not v:
        z = zs.metric(main)
        assert z is not None
        what = "zero-shot, an untrained head" if zs.untrained_head else "zero-shot"
        parts.append(f"{_delta(m, z)} over {what} ({z:.2f})")
    if full is not None and full is not v:
        f = full.metric(main)
        assert f is not None
        text = f"{_delta(m, f)} vs full fine-tuning ({f:.2f})"
        if zs is not None and zs is not v:
            z = zs.metric(main)
            assert z is not None
            if f - z > 1e-9:
                text += f", {100 * (m - z) / (f - z):.0f}% of full fine-tuning's gain over zero-shot"
        parts.append(text)
    return " and ".join(parts)


def _method(v: RunView) -> str:
    """' (lora)' after a run label that does not already say its method."""
    return "" if v.label.rsplit("/", 1)[-1] == v.run.method else f" ({v.run.method})"


def _loss(v: RunView) -> str:
    loss = v.metric("eval_loss")
    return "n/a" if loss is None else f"{loss:.3f}"


def _costs(v: RunView, full: RunView | None) -> str:
    """'26.2% of the parameters trained (full: 100%), peak memory 683 MB (full: 665 MB), ...'."""
    if not v.trains:
        return "no training at all"
    what = (("trainable_percent", "{} of the parameters trained"), ("peak_memory_mb", "peak memory {} MB"),
            ("train_seconds", "train time {} s"), ("adapter_bytes", "saved size {}"))
    out = []
    for key, template in what:
        c = v.cost(key)
        if c is None:
            continue
        s = template.format(fmt_value(key, c))
        fc = full.cost(key) if full is not None and full is not v else None
        if fc is not None:
            unit = template.rsplit("}", 1)[1].strip() if key in ("peak_memory_mb", "train_seconds") else ""
            s += f" (full: {fmt_value(key, fc)}{' ' + unit if unit else ''})"
        out.append(s)
    return ", ".join(out)


DEFAULT_PREFER = ("trainable_params", "peak_memory_mb", "train_seconds")


def _cheapness(v: RunView, prefer: tuple[str, ...]) -> tuple[float, ...]:
    return tuple(c if (c := v.cost(k)) is not None else math.inf for k in prefer)


def _names(labels: list[str]) -> str:
    b = [f"**{x}**" for x in labels]
    return b[0] if len(b) == 1 else ", ".join(b[:-1]) + " and " + b[-1]


def _ties(rs: list[RunView], best: RunView, main: str, budget: Budget, full: RunView | None,
          prefer: tuple[str, ...]) -> tuple[str | None, RunView, list[RunView]]:
    """The paragraph on what the uncertainty says, the pick and the tied runs."""
    if best.row.get("rank_group") != 1:
        return None, best, []
    # groups are per experiment (its runs share a test set)
    rs = [v for v in rs if v.experiment == best.experiment]
    tied = [v for v in rs if v.row.get("rank_group") == 1]
    lo, hi = best.row.get(f"{main}_ci_low"), best.row.get(f"{main}_ci_high")
    ci = f", 95% CI {lo:.1f}-{hi:.1f}" if lo is not None and hi is not None else ""
    if len(tied) == 1:
        others = [v.row["p_vs_best"] for v in rs if v is not best and v.row.get("p_vs_best") is not None]
        if not others:
            return None, best, tied
        return (f"**{best.label}** is significantly better than every other run on {main} ({best.metric(main):.1f}"
                f"{ci}; p ≤ {max(others):.2g} against each, paired test on the same test examples, Holm-corrected).",
                best, tied)
    pool = [v for v in tied if budget.fits(v)] if budget.active else tied
    pool = [v for v in pool if not v.untrained_head] or pool  # chance level is never the pick when a run trained
    pool = [v for v in pool if not v.collapsed] or pool
    pick = min(pool, key=lambda v: _cheapness(v, prefer)) if pool else best
    ps = [v.row["p_vs_best"] for v in tied if v is not best and v.row.get("p_vs_best") is not None] or [1.0]
    cost_names = {"trainable_params": "trainable parameters", "peak_memory_mb": "peak memory",
                  "train_seconds": "train time"}
    order = ", then ".join(cost_names.get(k, k) for k in prefer)
    text = (f"{_names([v.label for v in tied])} are tied on {main} (best {best.metric(main):.1f}{ci}; "
            f"p ≥ {min(ps):.2g} against it, Holm-corrected): the test set cannot tell them apart. ")
    if pool:
        text += (f"**{pick.label}** is the cheapest of them by {order}"
                 + (f" within your budget ({budget.describe()})" if budget.active else "")
                 + (f" ({_costs(pick, full)})" if _costs(pick, full) else "") + ": the recommendation"
                 + (", though an untrained head at chance level: no trained run fits" if pick.untrained_head else "")
                 + ".")
    else:
        text += f"None of them fits your budget ({budget.describe()})."
    return text, pick, tied


def _cautions(data: ReportData, rs: list[RunView], best: RunView, main: str) -> str | None:
    """What every run's scores rest on, beyond the best's: flagged generations (zero-shot
    included), predictions collapsed onto one class, an untrained zero-shot head, and the
    majority-class baseline."""
    out = []
    flagged = [v for v in rs if v is not best and v.health and not v.health.get("healthy", True)]
    if flagged:
        out.append("Generations flagged for " + "; ".join(
            f"**{v.label}** ({'; '.join(v.health.get('problems', []))})" for v in flagged if v.health)
            + ": read their scores with that in mind (see Generation health).")
    collapsed = [v for v in rs if v is not best and v.collapsed]
    if collapsed:
        out.append("Predictions collapse onto one class for " + "; ".join(
            f"**{v.label}** ({v.collapsed})" for v in collapsed) + ": such a run has not learned to tell the "
            "classes apart.")
    zs = next((v for v in rs if v.untrained_head and v.experiment == best.experiment), None)
    if zs is not None and zs is not best:  # (the best's own paragraph says it)
        out.append(f"**{zs.label}** is an untrained classification head on the base model (its weights are "
                   f"random before training), so its {main} ({zs.metric(main):.2f}) is chance level, not what the "
                   "model knows.")
    maj = next((b for b in data.baselines if b.get("experiment") == best.experiment), None)
    if maj is not None and isinstance(maj.get(main), int | float):
        below = [v.label for v in rs if v.trains and (v.metric(main) or 0) <= maj[main]]
        text = (f"The majority-class baseline (always {maj['majority_label']!r}, "
                f"{maj['majority_train_share']:.0f}% of the training labels) scores {main} {maj[main]:.2f}"
                f" and accuracy {maj.get('accuracy', 0):.2f}")
        text += (f"; {_names(below)} do{'es' if len(below) == 1 else ''} not beat it." if below
                 else "; every trained run beats it.")
        out.append(text)
    return " ".join(out) or None


def recommend(data: ReportData, budget: Budget | None = None,
              prefer: tuple[str, ...] = DEFAULT_PREFER) -> Recommendation:
    budget = budget or Budget()
    main = data.main_metric
    rs = ranked(data)
    paragraphs: list[str] = []
    if not rs:
        failed = [v for v in data.runs if v.run.status in ("failed", "diverged")]
        msg = "No run has finished with a score yet, so there is nothing to recommend."
        if failed:
            msg += " Unfinished: " + "; ".join(f"**{v.label}** ({v.run.status}: {v.run.error})" for v in failed) + "."
        return Recommendation(None, None, None, None, [msg])
    best = rs[0]
    zs = _baseline(data, False, best)
    full = _baseline(data, True, best)
    m = best.metric(main)
    assert m is not None

    # 1. Best overall.
    ties = [v for v in rs[1:] if v.metric(main) == m]
    first = f"Best overall: **{best.label}**{_method(best)} with {main} {m:.2f}"
    vs = _versus(best, main, zs, full)
    first += f", {vs}" if vs else ""
    first += "."
    if ties:
        names = ", ".join(f"**{v.label}**" for v in ties)
        losses = ", ".join(_loss(v) for v in ties)
        first += (f" It ties on {main} with {names}; the tie is broken by test loss "
                  f"({_loss(best)} vs {losses}).")
    if best.is_baseline:
        first += (" That is chance level: zero-shot classification is an untrained head, so no trained run learned "
                  "the task here (train longer, on more data, or with a higher learning rate)." if best.untrained_head
                  else " No fine-tuning method beat the untouched base model here.")
        trained = next((v for v in rs if v.trains), None)
        if trained is not None:
            tm = trained.metric(main)
            assert tm is not None
            first += (f" The best trained run is **{trained.label}**{_method(trained)} with {main} {tm:.2f} "
                      f"({_delta(tm, m)} vs zero-shot).")
    elif best.is_full:
        peft = next((v for v in rs if v.trains and not v.is_full), None)
        if peft is not None:
            first += (f" The best parameter-efficient method is **{peft.label}** with {main} "
                      f"{peft.metric(main):.2f} ({_versus(peft, main, zs, full)}; {_costs(peft, full)}).")
    else:
        costs = _costs(best, full)
        if costs:
            first += f" Cost: {costs}."
    health = best.health
    if health and not health.get("healthy", True):
        first += f" Caution: its generations are flagged ({'; '.join(health.get('problems', []))})."
        healthy = next((v for v in rs if v.health and v.health.get("healthy")), None)
        if healthy is not None and healthy is not best:
            first += f" The best run with healthy generations is **{healthy.label}** ({main} {healthy.metric(main):.2f})."
    if best.collapsed:
        first += f" Caution: its predictions collapse onto one class ({best.collapsed})."
        sound = next((v for v in rs if not v.collapsed and not v.is_baseline), None)
        if sound is not None:
            first += f" The best run whose predictions do not collapse is **{sound.label}** ({main} {sound.metric(main):.2f})."
    if zs is None:
        first += " (No zero-shot row to compare with: add `zero-shot` to the methods.)"
    if full is None:
        first += " (No full fine-tuning row to compare with: add `full` to the methods.)"
    paragraphs.append(first)
    caution = _cautions(data, rs, best, main)
    if caution:
        paragraphs.append(caution)

    # 1b. What the uncertainty says: the runs the best cannot be told apart from, and the pick.
    tie_text, pick, tied = _ties(rs, best, main, budget, full, prefer)
    if tie_text:
        paragraphs.append(tie_text)

    # 2. Best within the budget, or the cheapest run close to the best.
    in_budget = None
    if budget.active:
        fitting = [v for v in rs if budget.fits(v)]
        if not fitting:
            paragraphs.append(f"No finished run fits your budget ({budget.describe()}).")
        else:
            in_budget = fitting[0]
            if in_budget is best:
                paragraphs.append(f"Within your budget ({budget.describe()}): **{best.label}** fits, so it is also "
                                  f"the pick within the budget"
                                  + (" (an untrained head: chance level)." if best.untrained_head else "."))
            else:
                bm = in_budget.metric(main)
                assert bm is not None
                vs = _versus(in_budget, main, zs, full)
                paragraphs.append(
                    f"Within your budget ({budget.describe()}): **{in_budget.label}**{_method(in_budget)} with "
                    f"{main} {bm:.2f}, {_delta(bm, m)} vs the best overall" + (f", {vs}" if vs else "")
                    + f". Cost: {_costs(in_budget, full)}."
                )
    else:
        near = [v for v in rs if v.trains and v is not best and m > 0 and (v.metric(main) or 0) >= 0.95 * m
                and (v.cost("trainable_params") or 0) < (best.cost("trainable_params") or 0)]
        msg = ("No budget given: pass --max-memory-mb, --max-train-seconds or --max-trainable-percent to get the "
               "best method within it.")
        if near:
            cheap = min(near, key=lambda v: v.cost("trainable_params") or 0)
            cm = cheap.metric(main)
            assert cm is not None
            msg = (f"For a smaller footprint, **{cheap.label}** reaches {100 * cm / m:.0f}% of the best {main} "
                   f"({cm:.2f}) with {_costs(cheap, full)}. " + msg)
        paragraphs.append(msg)

    # 3. What was not ranked, and how much data the scores rest on.
    unfinished = [v for v in data.runs if v.row.get("rank") is None]
    notes = []
    if unfinished:
        def why(v: RunView) -> str:
            if v.run.status == "diverged":
                return f"diverged at step {v.run.diverged_step}"
            if v.run.status == "failed":
                return f"failed: {v.run.error}"
            if v.run.status == "done":
                return f"no {main} score"
            return v.run.status
        notes.append("Not ranked: " + "; ".join(f"**{v.label}** ({why(v)})" for v in unfinished) + ".")
    n_test = ((best.run.info or {}).get("data") or {}).get("test")
    if n_test:
        notes.append(f"Scores come from {n_test} test examples" + (
            "; with so few, differences of a few points can be noise." if n_test < 200 else "."))
    if notes:
        paragraphs.append(" ".join(notes))
    return Recommendation(best, in_budget, zs, full, paragraphs, recommended=pick, tied=tied)
