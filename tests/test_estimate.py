"""The estimate before launch is calibrated by what the store has measured on the same model:
within reach of the real run time, with a range, a total and its basis."""

from __future__ import annotations

from pathlib import Path

from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.store import Store
from peftlab.tasks.build import load_task
from peftlab.train.estimate import estimate
from peftlab.train.runner import plan, preflight, run_experiment

pytestmark = needs_shared


def _estimate(p, store: Store, final: bool = True) -> dict:  # noqa: ANN001
    checked = preflight(p)
    return estimate(p.cfg, checked.model, checked.data, load_task(p.cfg, checked.model, checked.data.labels),
                    cuda=False, store=store, final=final)


def _forgetting_gap(p, store: Store) -> dict[str, float]:  # noqa: ANN001
    """Seconds a final run is expected to take beyond a trial of the same settings: forgetting."""
    final, trial = _estimate(p, store), _estimate(p, store, final=False)
    t = {r["name"]: r["seconds"] for r in trial["methods"]}
    return {r["name"]: round(r["seconds"] - t[r["name"]], 1) for r in final["methods"]}


def test_estimate_is_calibrated_by_runs_of_the_same_model(tmp_path: Path) -> None:
    p = plan(write_experiment(tmp_path, tiny_causal(["zero-shot", "lora", "ia3"], max_steps=6)))
    store = Store(tmp_path / "store")
    before = _estimate(p, store)
    assert {r["basis"] for r in before["methods"]} == {"this machine's measured matmul rate"}
    gap = _forgetting_gap(p, store)  # a final generative run that trains measures forgetting; a trial does not
    assert gap["zero-shot"] == 0 and gap["lora"] > 0 and gap["ia3"] > 0, gap
    runs = {r.name: r for r in run_experiment(p, store, isolation="inprocess", echo=lambda *_: None)}
    after = _estimate(p, store)
    assert after["total"]["runs"] == 3 and after["total"]["seconds_low"] <= after["total"]["seconds"] <= after["total"]["seconds_high"]
    for row in after["methods"]:
        assert row["basis"] == "measured on 3 finished runs of this model"
        assert row["seconds_low"] <= row["seconds"] <= row["seconds_high"]
        r = runs[row["name"]]
        actual = r.finished_at - r.started_at
        assert actual / 3 <= row["seconds"] <= actual * 3, (row["name"], row["seconds"], actual)
        assert row["trainable_params"] == r.cost["trainable_params"]
    from peftlab.train.estimate import measured

    took = sorted(r.cost["forgetting_seconds"] for r in runs.values() if r.name != "zero-shot")
    assert sorted(measured(store, p.cfg).forgetting) == took and len(took) == 2
    gap = _forgetting_gap(p, store)  # now the measured median
    assert gap["zero-shot"] == 0 and abs(gap["lora"] - took[len(took) // 2]) <= 0.15, (gap, took)
