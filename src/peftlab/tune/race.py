"""Racing every method on the validation split within a wall-clock budget (`tuning.budget`,
`peftlab run --budget 45m`), instead of tuning each exhaustively.

1. The plan (`race_plan.choose`): how many configurations each method starts with (up to
   `tuning.trials`, asked of the method's Optuna study, as tuning asks them), and the rungs:
   optimizer steps growing eta-fold up to a trial's full budget (`steps_per_trial`, or as the
   final runs train).
2. Each rung trains every candidate still in the race for its steps (a run in the store,
   `<run>.r<rung>.c<candidate>`, `role: trial`: scored on the validation split, never the test
   split) and then drops, with the reason recorded: runs that failed or diverged; candidates
   significantly worse than the leader on the same validation examples (the leaderboard's paired
   tests, Holm-corrected over the candidates: rank group 1 stays); and at the last rung, after a
   trial's full budget, collapsed runs (a classifier predicting one class, generations that never
   stop or are empty) when the leader is not (a short rung leaves most classifiers on one class).
   Of the rest, as many go on, best first, as the rest of the budget carries through the rungs
   left and the finals (`race_plan.affordable`); the others are cut for the budget.
3. The finals: each surviving method's best configuration, as many methods as the budget left
   trains over every seed; `train.runner` runs them, and only they read the test split.

The race's state (its plan, candidates, each rung's scores and decisions, the seconds spent) is
one object kept in `STORE/launch/<experiment>.race.json`, written after each decision: a killed
race resumes where it was (decided rungs are not redone; a rung's finished runs are skipped, the
interrupted one resumes from its checkpoint). The report and the leaderboard read it.

On a store with no measured runs of the model the plan rests on the machine's matmul rate alone,
which misjudges small models whose runs are mostly fixed costs (7x too cheap for stories260k on
E2E): the race then trains the first candidate's first rung before anything else and, where it took
over 1.5x its estimate or under 1/1.5, plans again from the estimate that run measured
(`_calibrate`), or stops there saying the budget it needs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.errors import ConfigError, PeftlabError
from peftlab.store import Run, Store
from peftlab.tune import race_plan
from peftlab.tune.plan import check_validation_size, save_plan
from peftlab.tune.race_state import (
    VERSION,
    Clock,
    describe,
    load_state,
    minutes,
    race_key,
    rung_run_name,
    said,
    save,
    state_file,
)
from peftlab.tune.space import apply_params, space_for
from peftlab.tune.study import open_study, study_name

if TYPE_CHECKING:
    from peftlab.train.plan import Plan

COLLAPSED_PCT = 90.0  # generations: never stopped, or empty, this often
CALIBRATE_WITHIN = 1.5  # a fresh store's plan stands when its first run took 1/1.5 to 1.5x its estimate


def race(p: Plan, store: Store, checked: Any, task: Any, force: bool, isolation: Any, echo: Any,
         started: float) -> dict[str, MethodEntry]:
    """Run (or resume) the race; the finalists' entries (their best configuration), by run name.
    `started`: when this command started (its checks count against the budget)."""
    cfg: ExperimentConfig = p.cfg
    t = cfg.tuning
    assert t is not None and t.budget is not None
    check_validation_size(len(checked.data.validation), p.where("data.validation"))
    s = p.task
    setup = race_plan.Setup.of(p, store, checked, task, in_process=isolation == "inprocess")
    trained, seeds, costs = setup.trained, setup.seeds, setup.costs
    by_name = {e.run_name: e for e in trained}

    key = race_key(cfg, trained)
    state = load_state(store.root, cfg.name)
    if state is not None and (state.get("key") != key or force):
        state = None
    clock = Clock(float(state["spent"]) if state else 0.0, started)
    if state is None:
        state = _new(setup, key, echo)
        save_plan(store.root, p)
    if (state.get("calibration") or {}).get("pending"):
        _calibrate(setup, state, by_name, force, isolation, echo, clock)
    plan = state["plan"]
    echo(describe(state, len(trained)))
    alive = [c["label"] for c in state["candidates"]]
    cands = {c["label"]: c for c in state["candidates"]}
    for r, steps in enumerate(plan["steps"]):
        if r < len(state["rungs"]):  # decided before a restart
            alive = state["rungs"][r]["survivors"]
            if state["rungs"][r].get("stopped"):
                break
            continue
        t0 = clock.spent()
        runs, skipped = _run_rung(setup, state, cands, by_name, r, steps, alive, force, isolation, echo, clock)
        rung = decide(runs, cands, s.main_metric, s.higher_is_better, task_generative=s.generative,
                      last=r == len(plan["steps"]) - 1)
        rung["dropped"].update(skipped)
        rung.update(rung=r, steps=steps)
        if r == 0:
            _tell(store, state, rung["scores"])
        left = plan["steps"][r + 1:]
        ranked = rung["survivors"]
        if left:
            k = race_plan.affordable(costs(), [cands[x]["method"] for x in ranked], left,
                                     t.budget - clock.spent(), t.eta, seeds, len(trained))
            if k == 0:
                rung["stopped"] = (f"the budget left ({minutes(t.budget - clock.spent())}) does not carry a rung of "
                                   f"{left[0]} steps and the finals: the race ends here")
                k = len(ranked)
            for x in ranked[k:]:
                by = "validation loss" if rung["order"] == "eval_loss" else f"validation {s.main_metric}"
                rung["dropped"][x] = (f"cut for the budget: ranked {ranked.index(x) + 1} of {len(ranked)} by {by}, "
                                      "not significantly worse than the leader")
            rung["survivors"] = ranked[:k]
        rung["seconds"] = clock.spent() - t0
        state["rungs"].append(rung)
        state["spent"] = clock.spent()
        save(store.root, state)
        save_plan(store.root, p)  # what "n of N runs done" counts, as far as it is known now
        echo(said(rung, len(plan["steps"]), s.main_metric))
        alive = rung["survivors"]
        if rung.get("stopped"):
            break
    out = _finals(store, state, cands, by_name, alive, clock, costs, seeds, echo)
    save_plan(store.root, p)
    return out


def _run_rung(setup: race_plan.Setup, state: dict[str, Any], cands: dict[str, dict[str, Any]],
              by_name: dict[str, MethodEntry], r: int, steps: int, alive: list[str], force: bool, isolation: Any,
              echo: Any, clock: Clock) -> tuple[dict[str, Run], dict[str, str]]:
    """Train rung `r` of every candidate in `alive`: one after another, or side by side on an
    executor (`--executor ray`), as its resources allow. The runs, by candidate, and the
    candidates not trained, with why.

    The first rung trains every method's first configuration before any method's second: once
    those are measured, the configurations the budget left carries per method are decided again
    (`race_plan.configurations_affordable`, kept in the state), so an estimate that erred on the
    cheap side costs configurations, not the budget."""
    from peftlab.train.runs import claim, ended, run_one

    p, store = setup.p, setup.store
    n = len(state["plan"]["steps"])
    if r == 0:
        alive = sorted(alive, key=lambda x: cands[x]["index"])  # (stable: the methods keep their order)
    jobs = []
    for i, label in enumerate(alive, start=1):
        c = cands[label]
        name = rung_run_name(c, r)
        extra = {"role": "trial", "variant": c["method"],
                 "trial": {"study": c["study"], "number": c["number"], "params": c["params"], "pruner": "none"},
                 "race": {"rung": r, "candidate": c["index"], "steps": steps}}
        head = f"  rung {r + 1}/{n} [{i}/{len(alive)}] {name} ({steps} steps)"
        jobs.append((label, apply_params(by_name[c["method"]], c["params"], name), head, extra))
    runs: dict[str, Run] = {}
    if not isinstance(isolation, str):  # an executor: the rung's runs side by side
        claimed = [(label, claim(p, store, e, h, force, echo, setup.rung_cfg(steps), x), h) for label, e, h, x in jobs]
        statuses = isolation.run_all(store, [run.id for _, (run, ok), _ in claimed if ok], echo)
        runs = {label: ended(store, run.id, h, statuses[run.id], echo) if ok else run
                for label, (run, ok), h in claimed}
    skipped: dict[str, str] = {}
    for label, entry, head, extra in jobs:
        if r == 0 and label not in runs and cands[label]["index"] > 0:
            if "configurations" not in state:
                state["configurations"] = _configurations(setup, state, clock)
                save(store.root, state)
            if cands[label]["index"] >= state["configurations"]:
                skipped[label] = (f"not trained: once every method's first configuration was measured, the budget "
                                  f"left carried {state['configurations']} per method")
                continue
        if label not in runs:
            cal = state.get("calibration") or {}
            timed = r == 0 and cal.get("run") == entry.run_name and cal.get("steps") == steps  # not twice on --force
            runs[label] = run_one(p, store, entry, head, force and not timed, isolation, echo, setup.rung_cfg(steps),
                                  extra)
            state["spent"] = clock.spent()  # a kill mid-rung keeps the time this rung has taken
            save(store.root, state)
        if runs[label].status not in ("done", "failed", "diverged"):
            raise PeftlabError(f"race: {runs[label].name} is {runs[label].status}; run again to resume the race")
    return runs, skipped


def _configurations(setup: race_plan.Setup, state: dict[str, Any], clock: Clock) -> int:
    t = setup.p.cfg.tuning
    assert t is not None and t.budget is not None
    plan = state["plan"]
    return race_plan.configurations_affordable(setup.costs(), [e.run_name for e in setup.trained], plan["steps"],
                                               plan["candidates"], t.budget - clock.spent(), t.eta, setup.seeds)


def _new(setup: race_plan.Setup, key: str, echo: Any) -> dict[str, Any]:
    """Plan the race and ask each method's study for its configurations."""
    store, cfg = setup.store, setup.p.cfg
    t = cfg.tuning
    assert t is not None and t.budget is not None
    costs = setup.costs()
    plan = setup.plan(costs)
    if plan is None:
        raise ConfigError(too_small(setup, costs))
    candidates = []
    for e in setup.trained:
        space = space_for(e, setup.p.method(e), cfg.task)
        dists = {k: prm.distribution() for k, prm in space.items()}
        name = study_name(cfg.name, e.run_name, space, t, {"race": plan.steps})
        study = open_study(store.root, name, t, setup.p.task.higher_is_better, echo)
        have = study.get_trials(deepcopy=False)
        for i in range(plan.candidates):
            number, params = (have[i].number, have[i].params) if i < len(have) else _ask(study, dists)
            candidates.append({"label": f"{e.run_name}.c{i}", "method": e.run_name, "index": i, "study": name,
                               "number": number, "params": params})
    from peftlab.train.estimate import measured

    state = {"version": VERSION, "key": key, "experiment": cfg.name, "main_metric": setup.p.task.main_metric,
             "plan": plan.as_dict(), "candidates": candidates, "rungs": [], "finalists": None, "spent": 0.0,
             "finals_seconds": None, "at": time.time(),
             "calibration": None if measured(store, cfg).runs else  # what the plan expects of the run it times
             {"pending": True, "expected": costs.rung(candidates[0]["method"], plan.steps[0])}}
    save(store.root, state)
    return state


def _calibrate(setup: race_plan.Setup, state: dict[str, Any], by_name: dict[str, MethodEntry], force: bool,
               isolation: Any, echo: Any, clock: Clock) -> None:
    """Train the first candidate's first rung; where it took more than `CALIBRATE_WITHIN` times its
    estimate, or less than its inverse, plan again from the estimate it calibrated, with no more
    configurations per method than were asked. Where that plan's first rung has the same steps,
    the run measured is that rung's (it counts in the plan, and is not redone).
    A budget that the measured estimate says cannot compare the methods stops the race here, with
    the budget it needs (the run is kept: the command with that budget reuses it)."""
    t = setup.p.cfg.tuning
    assert t is not None and t.budget is not None
    plan, c = state["plan"], state["candidates"][0]
    expected = state["calibration"]["expected"]
    before = clock.spent()
    echo(f"race: no run of this model measured on this store yet: {c['method']}'s first rung first, to time it")
    run = _run_rung(setup, state, {c["label"]: c}, by_name, 0, plan["steps"][0], [c["label"]], force, isolation,
                    echo, clock)[0][c["label"]]
    took = clock.spent() - before
    state["calibration"] = {"run": run.name, "steps": plan["steps"][0], "expected": expected, "seconds": took,
                            "status": run.status, "before": {k: plan[k] for k in ("candidates", "steps", "finalists", "expected")}}
    if run.status != "done" or 1 / CALIBRATE_WITHIN <= took / max(expected, 1e-9) <= CALIBRATE_WITHIN:
        save(setup.store.root, state)  # nothing measured, or near enough: the plan stands
        return
    costs = setup.costs()
    names = [e.run_name for e in setup.trained]
    new = race_plan.choose(costs, names, setup.full, t.budget - before, t.eta, plan["candidates"], setup.seeds)
    if new is not None and new.steps[0] != plan["steps"][0]:  # the run measured is not part of it
        new = race_plan.choose(costs, names, setup.full, t.budget - clock.spent(), t.eta, plan["candidates"],
                               setup.seeds)
    if new is None:
        state_file(setup.store.root, state["experiment"]).unlink(missing_ok=True)
        need = before + race_plan.cheapest(costs, names, setup.full, t.eta, setup.seeds) / race_plan.SAFETY
        raise ConfigError(f"{setup.p.where('tuning.budget')}: {run.name} took {took:.0f} s where the estimate "
                          f"said {expected:.0f} s (this store had measured no run of the model); by that "
                          f"measure a budget (tuning.budget, --budget) of {minutes(t.budget)} cannot compare "
                          f"these {len(names)} methods: the cheapest race needs about {minutes(need)}. Raise "
                          "--budget (the run just measured is kept and reused), or name fewer methods with "
                          "--methods")
    spent = t.budget - new.budget
    state["plan"] = {**new.as_dict(), "budget": t.budget, "expected": spent + new.expected}
    state["candidates"] = [x for x in state["candidates"] if x["index"] < new.candidates]
    state["calibration"]["replanned"] = True
    save(setup.store.root, state)
    echo(f"race: {run.name} took {took:.0f} s (estimate {expected:.0f} s); planned again from it: "
         f"{new.candidates} configuration{'s' if new.candidates > 1 else ''} per method, rungs of "
         f"{', '.join(map(str, new.steps))} steps (expected {minutes(state['plan']['expected'])})")


def too_small(setup: race_plan.Setup, costs: race_plan.Costs) -> str:
    """Why the budget cannot compare these methods, and what to do."""
    t = setup.p.cfg.tuning
    names = [e.run_name for e in setup.trained]
    need = race_plan.cheapest(costs, names, setup.full, t.eta, setup.seeds)
    s = "s" if setup.seeds > 1 else ""
    return (f"{setup.p.where('tuning.budget')}: a budget (tuning.budget, --budget) of {minutes(t.budget)} cannot compare these {len(names)} methods "
            f"on this machine: the cheapest race (one configuration each on a short first rung, then one finalist "
            f"over {setup.seeds} seed{s}) needs about {minutes(need / race_plan.SAFETY)} (estimate). Raise --budget, or "
            "name fewer methods with --methods")


def _ask(study: Any, dists: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    trial = study.ask(dists)
    return trial.number, dict(trial.params)


def _tell(store: Store, state: dict[str, Any], scores: dict[str, float]) -> None:
    """Give each study its candidates' first-rung scores (all at the same budget): its record of
    what each configuration scored, as tuning leaves it."""
    import optuna

    from peftlab.tune.study import storage

    st = storage(store.root)
    studies: dict[str, Any] = {}
    for c in state["candidates"]:
        if c["study"] not in studies:
            studies[c["study"]] = optuna.load_study(study_name=c["study"], storage=st)
        study = studies[c["study"]]
        v = scores.get(c["label"])
        if v is None:
            study.tell(c["number"], state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(c["number"], v, skip_if_finished=True)


def decide(runs: dict[str, Run], cands: dict[str, dict[str, Any]], main: str, higher: bool,
           task_generative: bool, last: bool) -> dict[str, Any]:
    """One rung's scores and decisions: {scores, dropped: {label: why}, survivors: [labels, best
    first], leader, order}. Cutting for the budget comes after (`race`) and keeps the survivors'
    first: before the last rung they are ordered by validation loss, whose every step of learning
    shows, where the main metric is a step function of the predictions that after a few steps
    (most classifiers still on the majority class) orders candidates by noise; at the last rung,
    a trial's full budget, by the main metric, as tuning chooses."""
    from peftlab.report.significance import significance

    scores: dict[str, float] = {}
    dropped: dict[str, str] = {}
    for label, run in runs.items():
        v = (run.metrics or {}).get(main)
        if run.status == "done" and isinstance(v, int | float) and math.isfinite(v):
            scores[label] = float(v)
        else:
            dropped[label] = f"{run.status}" + (f": {run.error}" if run.error else f": no validation {main}")
    order = sorted(scores, key=lambda x: (-scores[x] if higher else scores[x], x))
    if not order:
        return {"scores": scores, "dropped": dropped, "survivors": [], "leader": None, "order": main, "losses": {}}
    flags = {x: _collapsed(runs[x], task_generative) for x in order}
    leader = order[0]
    sig = significance({x: [runs[x]] for x in order}, main, higher, metrics=(main,)) if len(order) > 1 else {}
    for x in order[1:]:
        g = sig.get(x, {})
        if g.get("rank_group") not in (None, 1):
            p = g.get("p_vs_best")
            dropped[x] = ((f"collapsed ({flags[x]}) and " if flags[x] else "")
                          + f"significantly worse than {cands[leader]['method']} on validation: {main} "
                          f"{scores[x]:.2f} vs {scores[leader]:.2f}" + (f" (Holm-adjusted p = {p:.2g})" if p is not None
                                                                        else ""))
        elif flags[x] and last and not flags[leader]:
            # only after a trial's full budget: a short rung leaves most classifiers on one class
            dropped[x] = f"collapsed after a trial's full budget: {flags[x]}"
    kept = [x for x in order if x not in dropped]
    loss = {x: (runs[x].metrics or {}).get("eval_loss") for x in kept}
    by_loss = not last and all(isinstance(v, int | float) and math.isfinite(v) for v in loss.values())
    if by_loss:
        kept.sort(key=lambda x: (loss[x], x))
    return {"scores": scores, "dropped": dropped, "survivors": kept, "leader": leader,
            "order": "eval_loss" if by_loss else main, "losses": {x: loss[x] for x in kept} if by_loss else {}}


def _collapsed(run: Run, generative: bool) -> str | None:
    if not generative:
        from peftlab.report.baselines import _collapsed as one_class

        return one_class(run)
    h = (run.info or {}).get("health") or {}
    if (h.get("hit_max_pct") or 0) >= COLLAPSED_PCT:
        return f"{h['hit_max_pct']:.0f}% of its outputs never stopped"
    if (h.get("empty_pct") or 0) >= COLLAPSED_PCT:
        return f"{h['empty_pct']:.0f}% of its outputs are empty"
    return None


def _finals(store: Store, state: dict[str, Any], cands: dict[str, dict[str, Any]], by_name: dict[str, MethodEntry],
            alive: list[str], clock: Clock, costs: Any, seeds: int, echo: Any) -> dict[str, MethodEntry]:
    """Each surviving method's best configuration (the first of `alive`, which is best first), as
    many methods as the budget left trains over every seed."""
    if state["finalists"] is None:
        best: dict[str, str] = {}
        for label in alive:
            best.setdefault(cands[label]["method"], label)
        last = state["rungs"][-1] if state["rungs"] else {"scores": {}, "dropped": {}}
        methods = list(best)
        k = race_plan.finalists_affordable(costs(), methods, state["plan"]["budget"] - clock.spent(), seeds)
        for m in methods[k:]:
            last["dropped"][best[m]] = (f"cut for the budget: its method ranked {methods.index(m) + 1} of "
                                        f"{len(methods)}, and the budget left trains {k} over every seed")
        state["finalists"] = {m: {"candidate": best[m], "params": cands[best[m]]["params"],
                                  "validation": last["scores"].get(best[m]), "rung": len(state["rungs"]) - 1}
                              for m in methods[:k]}
        state["spent"] = clock.spent()
        save(store.root, state)
    fin = state["finalists"]
    echo(f"race: {len(fin)} finalist{'s' if len(fin) != 1 else ''} ({', '.join(fin) or 'none'}) after "
         f"{minutes(state['spent'])} of {minutes(state['plan']['budget'])}")
    if not fin:
        raise PeftlabError("race: no method finished a rung with a validation score; see `peftlab show` of the "
                           "first rung's runs for their errors")
    return {m: apply_params(by_name[m], f["params"], m) for m, f in fin.items()}


