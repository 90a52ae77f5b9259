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


def _estimate(p, store: Store) -> dict:  # noqa: ANN001
    checked = preflight(p)
    return estimate(p.cfg, checked.model, checked.data, load_task(p.cfg, checked.model, checked.data.labels),
                    cuda=False, store=store)


def test_estimate_is_calibrated_by_runs_of_the_same_model(tmp_path: Path) -> None:
    p = plan(write_experiment(tmp_path, tiny_causal(["zero-shot", "lora", "ia3"], max_steps=6)))
    store = Store(tmp_path / "store")
    before = _estimate(p, store)
    assert {r["basis"] for r in before["methods"]} == {"this machine's measured matmul rate"}
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
