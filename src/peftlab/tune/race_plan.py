"""How a race spends its budget (`tuning.budget`): its rungs, how many configurations each method
starts with, and how many go on after each rung, from the expected seconds of each run.

Seconds come from `train.estimate`: the store's measured throughput and per-run overhead where
it has finished runs of this model (the race's own rungs among them, so the estimate sharpens
as the race goes), the machine's matmul rate otherwise. A rung run's seconds are taken as linear
in its steps, per method (a fixed part: start, load, scoring the validation split; and a part
per step), from the estimate at two step counts. A final run is estimated as it trains (the full
budget) and scored: on the test split, which the race never opens, so its size is taken as
`data.max_test_examples`, or the validation split's.

Before the race (`choose`): the plan with the most configurations per method, then the most
rungs, whose expected cost fits `SAFETY` x the budget, counting successive halving (each rung
keeps at most 1/eta of the one before, the finals 1/eta of the last rung's methods). During the
race (`affordable`): after each rung, how many of the candidates still in the race the rest of
the budget carries through the rungs left and the finals; the others are cut, best kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peftlab.train.plan import Plan

SAFETY = 0.9  # the plan's expected cost stays under this share of the budget: estimates err
MIN_RUNG_STEPS = 4  # a first rung shorter than this ranks nothing


@dataclass
class Costs:
    """Expected seconds per method entry (by run name)."""

    fixed: dict[str, float]
    per_step: dict[str, float]
    final: dict[str, float]  # one final run
    baselines: float  # the runs that train nothing (zero-shot), made once with the finals

    def rung(self, method: str, steps: int) -> float:
        return self.fixed[method] + self.per_step[method] * steps

    def mean_rung(self, methods: list[str], steps: int) -> float:
        return sum(self.rung(m, steps) for m in methods) / max(len(methods), 1)

    def mean_final(self, methods: list[str]) -> float:
        return sum(self.final[m] for m in methods) / max(len(methods), 1)


@dataclass
class RacePlan:
    budget: float  # seconds, the finals included
    eta: int
    candidates: int  # configurations each method starts with
    steps: list[int]  # optimizer steps of each rung
    caps: list[int]  # most candidates entering each rung, as planned (halving)
    finalists: int  # most methods in the finals, as planned
    seeds: int  # final runs per finalist
    expected: float  # the plan's expected seconds
    per_rung: list[float] = field(default_factory=list)  # expected seconds of each rung as planned

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rung_steps(full: int, eta: int, rungs: int) -> list[int]:
    return [max(1, round(full / eta ** (rungs - 1 - r))) for r in range(rungs)]


def max_rungs(full: int, eta: int) -> int:
    r = 1
    while r < 4 and full / eta ** r >= MIN_RUNG_STEPS:
        r += 1
    return r


def halving(first: int, rungs: int, eta: int) -> list[int]:
    caps = [first]
    for _ in range(rungs - 1):
        caps.append(max(1, math.ceil(caps[-1] / eta)))
    return caps


def projected(costs: Costs, methods: list[str], steps: list[int], first: int, eta: int, seeds: int,
              n_methods: int) -> tuple[float, list[float], int]:
    """(seconds, seconds per rung, finalists) of `first` candidates entering the first of `steps`,
    halving after each rung, and the finals: 1/eta of the last rung's candidates, at most
    `n_methods` methods. `methods`: the methods whose costs stand for the candidates'."""
    caps = halving(first, len(steps), eta)
    per_rung = [c * costs.mean_rung(methods, s) for c, s in zip(caps, steps, strict=True)]
    finalists = min(n_methods, max(1, math.ceil(caps[-1] / eta))) if steps else min(n_methods, first)
    return sum(per_rung) + finals_seconds(costs, methods, finalists, seeds), per_rung, finalists


def finals_seconds(costs: Costs, methods: list[str], finalists: int, seeds: int) -> float:
    return finalists * seeds * costs.mean_final(methods) + costs.baselines


def choose(costs: Costs, methods: list[str], full_steps: int, budget: float, eta: int, trials: int,
           seeds: int) -> RacePlan | None:
    """The plan with the most configurations per method (up to `trials`), then the most rungs,
    that fits; None when even one configuration per method on one short rung does not."""
    top = max_rungs(full_steps, eta)
    for c in range(trials, 0, -1):
        for r in range(top, 0, -1):
            steps = rung_steps(full_steps, eta, r)
            first = len(methods) * c
            _, per_rung, most = projected(costs, methods, steps, first, eta, seeds, len(methods))
            for finalists in range(most, 0, -1):  # fewer finalists before fewer rungs
                seconds = sum(per_rung) + finals_seconds(costs, methods, finalists, seeds)
                if seconds <= SAFETY * budget:
                    return RacePlan(budget, eta, c, steps, halving(first, r, eta), finalists, seeds, seconds,
                                    per_rung)
    return None


def cheapest(costs: Costs, methods: list[str], full_steps: int, eta: int, seeds: int) -> float:
    """Seconds of the cheapest race: one configuration per method on the shortest rung, then one
    finalist: the least budget that can compare these methods at all."""
    steps = rung_steps(full_steps, eta, max_rungs(full_steps, eta))[:1]
    return sum(costs.rung(m, steps[0]) for m in methods) + finals_seconds(costs, methods, 1, seeds)


def affordable(costs: Costs, ranked: list[str], steps_left: list[int], remaining: float, eta: int, seeds: int,
               n_methods: int) -> int:
    """How many of the candidates still in the race (their methods, best first: `ranked`) the
    `remaining` seconds carry through the rungs left and the finals, counting halving after them;
    0 when not even the best one fits the next rung."""
    for k in range(len(ranked), 0, -1):
        if projected(costs, ranked[:k], steps_left, k, eta, seeds, n_methods)[0] <= remaining:
            return k
    return 0


def configurations_affordable(costs: Costs, methods: list[str], steps: list[int], most: int, remaining: float,
                              eta: int, seeds: int) -> int:
    """How many configurations per method (1 to `most`) the `remaining` seconds carry, once every
    method's first has trained on the first rung: the others' first rung, then the rungs left
    and the finals, halving."""
    for c in range(most, 1, -1):
        others = (c - 1) * sum(costs.rung(m, steps[0]) for m in methods)
        first_after = math.ceil(len(methods) * c / eta)
        rest = projected(costs, methods, steps[1:], first_after, eta, seeds, len(methods))[0]
        if others + rest <= remaining:
            return c
    return 1


def finalists_affordable(costs: Costs, ranked: list[str], remaining: float, seeds: int) -> int:
    """How many methods (best first) the remaining seconds train over every seed: at least one."""
    for k in range(len(ranked), 1, -1):
        if finals_seconds(costs, ranked[:k], k, seeds) <= remaining:
            return k
    return min(1, len(ranked))


@dataclass
class Setup:
    """What a race needs, resolved once: the methods that train, the seeds of the finals, a
    trial's full steps, and the experiment as a rung of n steps trains it."""

    p: Plan
    store: Any
    checked: Any  # train.preflight.Preflight: the model and the data (no test split)
    task: Any
    trained: list[Any]
    seeds: int
    full: int
    trial_cfg: Any
    in_process: bool = True

    @classmethod
    def of(cls, p: Plan, store: Any, checked: Any, task: Any, in_process: bool = True) -> Setup:
        from peftlab.tune.driver import trial_config

        cfg = p.cfg
        tcfg = trial_config(cfg)
        n_train = min(len(checked.data.train), tcfg.data.max_train_examples or len(checked.data.train))
        return cls(p, store, checked, task, p.trained(),
                   len(cfg.seeds or [0]), tcfg.training.total_steps(n_train), tcfg, in_process)

    def rung_cfg(self, steps: int) -> Any:
        """A rung: the trial's experiment for `steps` steps, scored once at its end."""
        training = self.trial_cfg.training.model_copy(update={"max_steps": steps, "eval_every": None})
        return self.trial_cfg.model_copy(update={"training": training})

    def costs(self) -> Costs:
        t = self.p.cfg.tuning
        lo = rung_steps(self.full, t.eta, max_rungs(self.full, t.eta))[0]
        return estimate_costs(self.p, self.store, self.checked, self.task, self.trained, self.rung_cfg,
                              (lo, self.full), self.in_process)

    def plan(self, costs: Costs) -> RacePlan | None:
        t = self.p.cfg.tuning
        return choose(costs, [e.run_name for e in self.trained], self.full, t.budget, t.eta, t.trials, self.seeds)


def estimate_costs(p: Plan, store: Any, checked: Any, task: Any, entries: list[Any], rung_cfg: Any,
                   steps: tuple[int, int], in_process: bool = True) -> Costs:
    """Expected seconds of each method's rung runs (linear in steps, from the estimate at the two
    step counts `steps`) and final runs. `rung_cfg(n)`: the experiment as a rung of n steps trains;
    `in_process`: the runs run in this process (no worker's start where the store measured none)."""
    import torch

    from peftlab.train.estimate import INPROCESS_STARTUP_SECONDS, STARTUP_SECONDS, estimate

    cfg = p.cfg
    cuda = torch.cuda.is_available()
    data = checked.data
    startup = INPROCESS_STARTUP_SECONDS if in_process else STARTUP_SECONDS
    trained = [e for e in cfg.methods if e.run_name in {x.run_name for x in entries}]
    base = [e for e in cfg.methods if e.run_name not in {x.run_name for x in entries}]
    lo, hi = steps

    def seconds(c: Any, methods: list[Any], scored: int, final: bool = True) -> dict[str, float]:
        if not methods:
            return {}
        c = c.model_copy(update={"methods": methods})
        rows = estimate(c, checked.model, data, task, cuda=cuda, store=store, eval_examples=scored,
                        startup=startup, final=final)["methods"]
        return {r["name"]: float(r.get("seconds") or 0.0) for r in rows}

    val = len(data.validation)
    at_lo, at_hi = seconds(rung_cfg(lo), trained, val, False), seconds(rung_cfg(hi), trained, val, False)
    per_step = {m: max(0.0, (at_hi[m] - at_lo[m]) / (hi - lo)) if hi > lo else 0.0 for m in at_lo}
    fixed = {m: max(0.0, at_lo[m] - per_step[m] * lo) for m in at_lo}
    test_n = cfg.data.max_test_examples or val
    final = seconds(cfg, trained, test_n)
    return Costs(fixed, per_step, final, sum(seconds(cfg, base, test_n).values()))
