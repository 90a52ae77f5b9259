"""The estimate of a tuned experiment (#25): its trials (scored on the validation split), the
final runs per seed (scored on the test split, which the tuning never reads), the validation
passes while training; and a memory estimate within reach of the measured peak."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import DATA, MINILM, STORIES, needs_shared, tiny_causal, write_experiment

from peftlab.store import Store
from peftlab.train.runner import plan
from peftlab.tune.estimate import plan_cost

pytestmark = needs_shared


def _measured_store(root: Path) -> Store:
    """A store that has measured the model: a lora run (1,000 training tokens/s, 10 examples/s
    scored, 3 s outside training and scoring, 1 s measuring forgetting) and a zero-shot run."""
    store = Store(root)
    store.save_experiment("calib", "causal-lm", str(STORIES), {}, None, None)
    for name, cost, fixed in (("lora", {"train_tokens_per_second": 1000.0, "train_seconds": 5.0,
                                        "forgetting_seconds": 1.0}, 3.0),
                              ("zero-shot", {}, 1.0)):
        run, _ = store.upsert_run("calib", name, name, "h", {"experiment": {"training": {}}})
        cost = {**cost, "eval_examples_per_second": 10.0, "eval_seconds": 2.0}
        store.finish(run.id, "done", cost=cost, started_at=time.time() - 10)
        got = store.run(run.id)
        store.update(run.id, finished_at=got.started_at + cost.get("train_seconds", 0) + cost.get("forgetting_seconds", 0)
                     + 2.0 + fixed)
    return store


def test_a_tuned_plan_counts_what_its_trials_and_final_runs_score(tmp_path: Path) -> None:
    """At the measured rates: a trial scores the validation split (12 rows), a final run the test
    split (8 rows; the old estimate saw none in a tuned plan) and measures forgetting (1 s, as
    measured: a trial does not), and every run scores the validation split at each of its
    eval_every passes (4 steps: 4 x 12 rows; never counted)."""
    store = _measured_store(tmp_path / "store")

    def cost(eval_every: int | None) -> dict:
        body = tiny_causal(["zero-shot", "lora"], max_steps=4, **({"eval_every": eval_every} if eval_every else {}))
        body["data"]["max_validation_examples"] = 12
        body["tuning"] = {"trials": 2}
        out = plan_cost(plan(write_experiment(tmp_path, body), seeds=2), store)
        return {r["run"]: r for r in out["rows"]} | {"total": out["seconds"], "runs": out["runs"]}

    plain, passes = cost(None), cost(1)
    lora = plain["lora"]
    assert lora["trials"] == 2 and lora["final_runs"] == 2 and plain["runs"] == 5
    assert lora["seconds_per_final_run"] - lora["seconds_per_trial"] == pytest.approx((8 - 12) / 10 + 1.0, abs=0.11)
    for key in ("seconds_per_trial", "seconds_per_final_run"):
        assert passes["lora"][key] - lora[key] == pytest.approx(4 * 12 / 10, abs=0.11)
    assert passes["total"] == pytest.approx(sum(r["seconds"] for k, r in passes.items() if k in ("lora", "zero-shot")))


@pytest.mark.parametrize(("method", "measured_mb"), [("lora", (1038, 1421)), ("full", (1266, 1600))])
def test_memory_estimate_is_within_1_5x_of_the_measured_peak(tmp_path: Path, method: str,
                                                             measured_mb: tuple[int, int]) -> None:
    """Peaks measured on this 2-core CPU machine (the runs' cost.peak_memory_mb), MiniLM on
    financial_phrasebank as examples/financial-phrasebank-minilm.yaml trains it: 200 training rows
    and 20 steps (the low figure), 1,000 rows and one epoch (#25's, the high one)."""
    body = {"name": "fp", "model": str(MINILM), "task": "classification",
            "data": {"train": str(DATA / "financial_phrasebank" / "train.jsonl"),
                     "validation": str(DATA / "financial_phrasebank" / "validation.jsonl"),
                     "test": str(DATA / "financial_phrasebank" / "test.jsonl"), "input": "text", "label": "label",
                     "max_train_examples": 1000, "max_validation_examples": 200},
            "methods": [method], "training": {"epochs": 1, "batch_size": 16, "max_source_length": 96,
                                              "eval_every": 21}, "evaluation": {"batch_size": 64},
            "tuning": {"trials": 2}}
    cost = plan_cost(plan(write_experiment(tmp_path, body), seeds=2), Store(tmp_path / "store"))
    [row] = cost["rows"]
    low, high = measured_mb
    assert high / 1.5 <= row["memory_mb"] <= low * 1.5, row["memory_mb"]


def test_the_plan_leaves_out_the_runs_the_store_has_done(tmp_path: Path) -> None:
    """A second `peftlab run` skips what the store has done with the same configuration; the dry
    run's total leaves those out too (#25: it counted 16 runs, 18.9 min, for 2 new runs taking
    147 s), and counts them again under --force or when the budget changes."""
    from peftlab.train.runner import run_experiment
    from peftlab.tune.estimate import describe_plan

    store = Store(tmp_path / "store")

    def body(steps: int) -> dict:
        b = tiny_causal(["zero-shot", "lora"], max_steps=steps)
        b["data"]["max_validation_examples"] = 10
        b["tuning"] = {"trials": 2}
        return b

    p = plan(write_experiment(tmp_path, body(2)), seeds=2)
    before = plan_cost(p, store)
    assert (before["planned"], before["runs"], before["done"]) == (5, 5, 0)  # 2 trials, 2 seeds, zero-shot
    results = run_experiment(p, store, force=False, replace=False, isolation="inprocess", echo=lambda s: None)
    assert all(r.status == "done" for r in results)
    after = plan_cost(p, store)
    assert (after["runs"], after["done"], after["seconds"]) == (0, 5, 0)
    assert "0 runs to make" in describe_plan(p, store) and "5 of the 5 planned runs are done" in describe_plan(p, store)
    assert plan_cost(p, store, force=True)["runs"] == 5
    # one more seed: only its final run is new
    more = plan_cost(plan(write_experiment(tmp_path, body(2)), seeds=3), store)
    lora = next(r for r in more["rows"] if r["run"] == "lora")
    assert (more["runs"], lora["trials_done"], lora["final_runs_done"]) == (1, 2, 2)
    assert more["seconds"] == pytest.approx(lora["seconds_per_final_run"])
    # another training budget: a new study and new final runs (and `peftlab run` redoes zero-shot too:
    # its configuration hash holds the training section)
    other = plan_cost(plan(write_experiment(tmp_path, body(3)), seeds=2), store)
    assert (other["runs"], other["done"]) == (5, 0)


@pytest.mark.parametrize(("method", "measured_mb"), [("zero-shot", (677, 677)), ("lora", (830, 862)),
                                                     ("ia3", (757, 790))])
def test_memory_estimate_of_a_tiny_generative_model_is_within_1_5x(tmp_path: Path, method: str,
                                                                   measured_mb: tuple[int, int]) -> None:
    """Peaks measured on the 2-core CPU machine (cost.peak_memory_mb), stories260k on E2E as
    `peftlab run examples/quickstart.yaml --methods zero-shot,lora,ia3 --tune 2 --set
    tuning.max_train_examples_per_trial=500 --set data.max_train_examples=1000` trains it (trials
    and final runs). The estimate once counted an S x S attention matrix per head and layer, which
    SDPA never keeps: 1,391 MB for lora's 860."""
    import yaml

    body = yaml.safe_load((Path(__file__).parents[1] / "examples" / "quickstart.yaml").read_text(encoding="utf-8"))
    body["model"] = str(STORIES)
    for split in ("train", "validation", "test"):
        body["data"][split] = str(DATA / body["data"][split])
    body["data"]["max_train_examples"] = 1000
    body["methods"] = [m for m in body["methods"] if (m if isinstance(m, str) else m["name"]) == method]
    cost = plan_cost(plan(write_experiment(tmp_path, body)), Store(tmp_path / "store"))
    [row] = cost["rows"]
    low, high = measured_mb
    assert high / 1.5 <= row["memory_mb"] <= low * 1.5, row["memory_mb"]
