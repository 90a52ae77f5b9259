"""Racing within a budget (`tuning.budget`, `peftlab run --budget`), on real tiny runs: a clearly
worse method drops out and a tied one stays; the test split is never opened before the finals;
a race killed mid-rung resumes without losing a rung; the budget is held; a budget too small is
refused before anything runs, or, on a fresh store, once the first run has shown the estimate
too cheap. The planner's arithmetic is checked on made-up costs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import DATA, MINILM, needs_shared, tiny_causal, write_experiment

from peftlab.config.schema import parse_duration
from peftlab.errors import ConfigError, DataError
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment
from peftlab.tune import race_plan
from peftlab.tune.race_state import load_state


def test_durations_read_as_people_write_them() -> None:
    assert [parse_duration(x) for x in ("45m", "1h30m", "90s", "1.5h", "900", "2h 5m 3s")] == \
        [2700, 5400, 90, 5400, 900, 7503]
    for bad in ("", "45 minutes please", "1h30x", "m"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def _costs(methods: list[str], fixed: float = 10.0, per_step: float = 1.0, final: float = 100.0) -> race_plan.Costs:
    return race_plan.Costs({m: fixed for m in methods}, {m: per_step for m in methods}, {m: final for m in methods}, 0.0)


def test_the_plan_keeps_the_most_configurations_then_rungs_that_fit() -> None:
    ms = [f"m{i}" for i in range(9)]
    costs = _costs(ms)
    roomy = race_plan.choose(costs, ms, 90, budget=36000, eta=3, trials=4, seeds=3)
    assert roomy is not None and roomy.candidates == 4 and roomy.steps == [10, 30, 90] and roomy.caps == [36, 12, 4]
    assert roomy.expected <= race_plan.SAFETY * 36000
    tight = race_plan.choose(costs, ms, 90, budget=1500, eta=3, trials=4, seeds=3)
    assert tight is not None and tight.candidates < 4 and tight.expected <= race_plan.SAFETY * 1500
    assert race_plan.choose(costs, ms, 90, budget=200, eta=3, trials=4, seeds=3) is None  # 9 first rungs: 180 s
    assert race_plan.cheapest(costs, ms, 90, eta=3, seeds=3) == pytest.approx(9 * 20 + 300)
    # during the race: how many of the survivors the budget left carries
    assert race_plan.affordable(costs, ms, [30, 90], remaining=10_000, eta=3, seeds=1, n_methods=9) == 9
    assert race_plan.affordable(costs, ms, [30, 90], remaining=300, eta=3, seeds=1, n_methods=9) == 2
    assert race_plan.affordable(costs, ms, [30, 90], remaining=30, eta=3, seeds=1, n_methods=9) == 0
    assert race_plan.finalists_affordable(costs, ms, remaining=250, seeds=1) == 2
    # once every method's first configuration is measured: how many per method the rest carries
    assert race_plan.configurations_affordable(costs, ms, [10, 30, 90], 4, remaining=10_000, eta=3, seeds=1) == 4
    assert race_plan.configurations_affordable(costs, ms, [10, 30, 90], 4, remaining=800, eta=3, seeds=1) == 2
    assert race_plan.configurations_affordable(costs, ms, [10, 30, 90], 4, remaining=10, eta=3, seeds=1) == 1
    assert race_plan.finalists_affordable(costs, ms, remaining=10, seeds=1) == 1  # one finalist, always


def test_before_the_last_rung_the_survivors_go_on_in_order_of_validation_loss() -> None:
    """After a short rung most classifiers still predict the majority class: their macro-F1 differ
    by an example or two, noise, and the budget's cut would keep whichever the noise favours. The
    validation loss shows the learning the predictions do not show yet: before the last rung the
    survivors are ordered by it; at the last rung (a trial's full budget) by the main metric."""
    from types import SimpleNamespace

    from peftlab.tune.race import decide
    from peftlab.tune.race_state import said

    def run(f1: float, loss: float) -> SimpleNamespace:
        return SimpleNamespace(status="done", error=None, info={}, file=lambda _: None,
                               metrics={"macro_f1": f1, "eval_loss": loss})

    runs = {"slow.c0": run(24.6, 1.06), "fast.c0": run(24.5, 0.98), "mid.c0": run(23.5, 1.00)}
    cands = {k: {"method": k.split(".")[0]} for k in runs}
    early = decide(runs, cands, "macro_f1", True, task_generative=False, last=False)
    assert early["survivors"] == ["fast.c0", "mid.c0", "slow.c0"] and early["order"] == "eval_loss"
    assert early["leader"] == "slow.c0"  # the significance tests still compare with the best macro-F1
    assert "first by validation loss fast.c0 (0.9800, macro_f1 24.50)" in said({**early, "rung": 0, "seconds": 9}, 3,
                                                                              "macro_f1")
    last = decide(runs, cands, "macro_f1", True, task_generative=False, last=True)
    assert last["survivors"] == ["slow.c0", "fast.c0", "mid.c0"] and last["order"] == "macro_f1"
    runs["mid.c0"].metrics.pop("eval_loss")  # a run without a loss: the main metric orders them all
    assert decide(runs, cands, "macro_f1", True, task_generative=False, last=False)["order"] == "macro_f1"


def _fpb(tmp_path: Path) -> dict:
    """Three configurations of LoRA on financial_phrasebank with MiniLM: `good` and its exact
    `twin` (tied), and `frozen`, whose learning rate leaves the untrained head as it is (clearly
    worse: one class)."""
    for split in ("train", "validation", "test"):  # a private copy: the test corrupts the test file
        shutil.copy(DATA / "financial_phrasebank" / f"{split}.jsonl", tmp_path / f"{split}.jsonl")
    return {"name": "fpb", "model": str(MINILM), "task": "classification",
            "data": {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "validation.jsonl"),
                     "test": str(tmp_path / "test.jsonl"), "input": "text", "label": "label",
                     "max_train_examples": 256, "max_validation_examples": 120, "max_test_examples": 60},
            "methods": ["zero-shot", {"name": "lora", "label": "good", "search": {"learning_rate": [0.003]}},
                        {"name": "lora", "label": "twin", "search": {"learning_rate": [0.003]}},
                        {"name": "lora", "label": "frozen", "search": {"learning_rate": [1e-7]}}],
            "training": {"epochs": 1, "batch_size": 16, "max_source_length": 64, "precision": "fp32"},
            "evaluation": {"batch_size": 64}, "tuning": {"trials": 1, "budget": "20m"}}


@needs_shared
def test_a_race_drops_the_clearly_worse_keeps_the_tied_and_tests_only_the_finalists(tmp_path: Path) -> None:
    from peftlab.report.html import build_report
    from peftlab.report.leaderboard import rows

    body = _fpb(tmp_path)
    exp = write_experiment(tmp_path, body)
    test_file = Path(body["data"]["test"])
    kept = test_file.read_bytes()
    test_file.write_text('{"text": "x", "label": \n', encoding="utf-8")  # corrupt: the finals' preflight fails
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match="test.jsonl"):
        run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    state = load_state(store.root, "fpb")
    assert state is not None and state["plan"]["steps"] == [5, 16] and len(state["rungs"]) == 2
    rung_runs = [r for r in store.runs("fpb") if (r.config or {}).get("race")]
    assert rung_runs and all(r.info["scored_split"] == "validation" and r.info["data"]["test"] == 0 for r in rung_runs)
    assert not [r for r in store.runs("fpb") if not (r.config or {}).get("race")]  # no final run yet
    assert set(state["finalists"]) == {"good", "twin"}  # the exact twin is tied: it stays
    why = {**state["rungs"][0]["dropped"], **state["rungs"][1]["dropped"]}["frozen.c0"]
    assert why.startswith(("collapsed after a trial's full budget: ", "collapsed (", "significantly worse than good")), why

    test_file.write_bytes(kept)  # mended: the same command resumes, to the finals only
    finished = {r.name: r.finished_at for r in rung_runs}
    said: list[str] = []
    finals = run_experiment(plan(exp), store, isolation="inprocess", echo=said.append)
    assert {r.name: r.status for r in finals} == {"zero-shot": "done", "good": "done", "twin": "done"}
    assert {r.name: r.finished_at for r in store.runs("fpb") if (r.config or {}).get("race")} == finished
    state = load_state(store.root, "fpb")
    assert state["total_seconds"] is not None and state["total_seconds"] <= 20 * 60
    board = {r["run"]: r for r in rows(store, "fpb")}
    assert board["frozen"]["status"] == "dropped" and board["frozen"]["rank"] is None
    assert board["frozen"]["dropped"]["rung"] in (1, 2) and board["frozen"]["dropped_text"].startswith("dropped at rung")
    assert board["good"]["rank"] is not None and board["twin"]["rank"] is not None
    page = build_report(store, ["fpb"], out=tmp_path / "r.html").path.read_text(encoding="utf-8")
    assert 'id="race"' in page and "frozen" in page and "dropped at rung" in page and "Budget 20.0 min" in page


def _tiny(tmp_path: Path, name: str, methods: list, budget: float, trials: int = 2) -> Path:
    body = tiny_causal(methods, max_steps=36)
    body["name"] = name
    body["data"]["max_validation_examples"] = 24
    body["tuning"] = {"trials": trials, "budget": budget, "seed": 3}
    return write_experiment(tmp_path, body, f"{name}.yaml")


@needs_shared
def test_a_race_killed_mid_rung_resumes_without_losing_a_rung_then_holds_a_tight_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.train import runs

    store = Store(tmp_path / "store")
    exp = _tiny(tmp_path, "kill", ["zero-shot", "lora", "ia3"], budget=900)
    real = runs._execute
    ran: list[int] = []
    stopped: list[int] = []

    def stop_fifth(store_: Store, run_id: int, isolation: str) -> str:
        ran.append(run_id)
        if len(ran) == 5 and not stopped:  # the first run of the second rung
            stopped.append(run_id)
            store_.mark_interrupted(run_id, "stopped for the test")
            raise KeyboardInterrupt
        return real(store_, run_id, isolation)

    monkeypatch.setattr(runs, "_execute", stop_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    before = load_state(store.root, "kill")
    assert before is not None and len(before["rungs"]) == 1  # the first rung decided and kept
    cal = before["calibration"]  # a fresh store: the first run was timed before the plan was made again
    assert cal["status"] == "done" and cal["run"] == "lora.r0.c0" and cal["seconds"] > 0, cal
    first = {r.name: r.finished_at for r in store.runs("kill") if (r.config or {}).get("race", {}).get("rung") == 0}
    assert len(first) == 4
    ran.clear()
    run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    after = load_state(store.root, "kill")
    assert after["candidates"] == before["candidates"] and after["rungs"][0] == before["rungs"][0]
    assert len(after["rungs"]) == 3 and after["finalists"]
    assert {r.name: r.finished_at for r in store.runs("kill")
            if (r.config or {}).get("race", {}).get("rung") == 0} == first  # not one first-rung run again
    first_ids = {r.id for r in store.runs("kill") if (r.config or {}).get("race", {}).get("rung") == 0}
    assert ran and not set(ran) & first_ids  # the resumed race executed none of them

    # the store now knows what these runs take: a tight budget over more methods is held
    monkeypatch.setattr(runs, "_execute", real)
    budget = 45.0
    tight = _tiny(tmp_path, "tight", ["zero-shot", "lora", "ia3", "vera", "prompt-tuning", "loha"], budget=budget)
    t0 = time.time()
    run_experiment(plan(tight), store, isolation="inprocess", echo=lambda *_: None)
    took = time.time() - t0
    state = load_state(store.root, "tight")
    assert state["calibration"] is None  # the store had measured runs of this model
    assert took <= 1.15 * budget, (took, state["plan"])
    assert state["total_seconds"] <= 1.15 * budget
    cut = [w for r in state["rungs"] for w in r["dropped"].values() if w.startswith(("cut for the budget",
                                                                                   "not trained"))]
    assert state["plan"]["candidates"] < 2 or len(state["plan"]["steps"]) < 3 or cut  # the budget shaped the race
    from peftlab.report.leaderboard import rows

    board = rows(store, "tight")  # every method shows: a finalist's row, or a dropped row saying where and why
    trained = {"lora", "ia3", "vera", "prompt-tuning", "loha"}
    assert {r["run"] for r in board if r["status"] == "dropped"} == trained - set(state["finalists"])
    assert all(r["dropped_text"].startswith("dropped at rung") for r in board if r["status"] == "dropped")


@needs_shared
def test_a_budget_too_small_is_refused_before_anything_runs(tmp_path: Path) -> None:
    exp = _tiny(tmp_path, "small", ["lora", "ia3", "vera"], budget=2)
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"small.yaml:\d+: a budget \(tuning.budget, --budget\) of 2 s cannot "
                       r"compare these 3 methods.*Raise --budget"):
        run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    assert store.runs("small") == []


@needs_shared
def test_on_a_fresh_store_a_budget_the_first_run_shows_too_small_stops_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate of a store with no measured runs is the machine's matmul rate: made absurdly
    fast here, it plans a 2 s race; the first run measured says otherwise and the race stops,
    saying what it measured and the budget it needs, with the run kept and no race state left."""
    from peftlab.train import estimate, throughput
    from peftlab.tune.race_state import state_file

    monkeypatch.setattr(throughput, "machine_rates", lambda *a, **k: (1e18, 1e18))
    monkeypatch.setattr(estimate, "INPROCESS_STARTUP_SECONDS", 0.0)
    exp = _tiny(tmp_path, "small", ["lora", "ia3", "vera"], budget=2)
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"small.yaml:\d+: lora.r0.c0 took \d+ s where the estimate said 0 s "
                       r"\(this store had measured no run of the model\); by that measure a budget .* of 2 s cannot "
                       r"compare these 3 methods: the cheapest race needs about .*Raise --budget \(the run just "
                       r"measured is kept"):
        run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    assert {r.name: r.status for r in store.runs("small")} == {"lora.r0.c0": "done"}
    assert not state_file(store.root, "small").exists()
