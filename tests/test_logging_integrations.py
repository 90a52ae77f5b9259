"""training.report_to: runs are logged to TensorBoard (and MLflow, when installed) via the Trainer.

One tiny in-process run with report_to [tensorboard(, mlflow)], then the logs are read back
with each tool's own reader: the train loss must be there, step by step.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
STEPS = 3


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("logging")
    report_to = ["tensorboard"] + (["mlflow"] if HAS_MLFLOW else [])
    with pytest.MonkeyPatch.context() as mp:
        # The trainer points TensorBoard at the run folder unless the user chose a folder.
        mp.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", (tmp / "mlruns").as_uri())
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "peftlab-logging-test")
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses the file store unless asked
        body = tiny_causal(["lora"], max_steps=STEPS, report_to=report_to)
        body["name"] = "logging"
        store = Store(tmp / "store")
        runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert runs[0].status == "done", runs[0].error
    return {"store": store, "run": runs[0], "tmp": tmp}


@needs_shared
def test_tensorboard_event_files_hold_the_train_loss(logged_run: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store, run = logged_run["store"], logged_run["run"]
    tb = store.run_dir(run.experiment, run.name) / "tensorboard"
    events = list(tb.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {tb}"
    losses = []
    for ev in events:
        acc = EventAccumulator(str(ev.parent))
        acc.Reload()
        if "train/loss" in acc.Tags()["scalars"]:
            losses += [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert losses, "no train/loss scalar in the event files"
    assert {s for s, _ in losses} >= set(range(1, STEPS + 1))  # logging_steps=1: one point per step
    assert all(math.isfinite(v) and v > 0 for _, v in losses)
    # The same losses the store recorded.
    stored = dict(store.curves(run.id)["train_loss"])
    for step, value in losses:
        assert value == pytest.approx(stored[step], rel=1e-4)


@needs_shared
@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed (pip install -e .[report])")
def test_mlflow_file_store_holds_the_train_loss(logged_run: dict) -> None:
    from mlflow.tracking import MlflowClient

    uri = (Path(logged_run["tmp"]) / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("peftlab-logging-test")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, STEPS + 1))
    stored = dict(logged_run["store"].curves(logged_run["run"].id)["train_loss"])
    for m in history:
        assert m.value == pytest.approx(stored[m.step], rel=1e-4)
    assert runs[0].data.params.get("learning_rate") is not None  # the Trainer logs its arguments too
