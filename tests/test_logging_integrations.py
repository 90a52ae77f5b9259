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
        body = tiny_causal(["lora", "ia3"], max_steps=STEPS, report_to=report_to)
        body["name"] = "logging"
        store = Store(tmp / "store")
        runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    return {"store": store, "run": runs[0], "runs": runs, "tmp": tmp}


def _tb_losses(folder: Path) -> list[list[tuple[int, float]]]:
    """train/loss (step, value) points of each event file under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(folder.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {folder}"
    out = []
    for ev in events:
        acc = EventAccumulator(str(ev))
        acc.Reload()
        if "train/loss" in acc.Tags()["scalars"]:
            out.append([(e.step, e.value) for e in acc.Scalars("train/loss")])
    return out


def _same(points: list[tuple[int, float]], stored: dict[int, float]) -> bool:
    return sorted(s for s, _ in points) == sorted(stored) and all(
        math.isclose(v, stored[s], rel_tol=1e-4) for s, v in points)


@needs_shared
def test_tensorboard_event_files_hold_the_train_loss(logged_run: dict) -> None:
    store, run = logged_run["store"], logged_run["run"]
    per_file = _tb_losses(store.run_dir(run.experiment, run.name) / "tensorboard")
    assert per_file, "no train/loss scalar in the event files"
    stored = dict(store.curves(run.id)["train_loss"])
    assert sorted(stored) == list(range(1, STEPS + 1))  # logging_steps=1: one point per step
    # One event file holds exactly the losses the store recorded for this run.
    assert any(_same(points, stored) for points in per_file), (per_file, stored)


@needs_shared
def test_tensorboard_second_run_in_a_process_logs_to_its_own_folder(logged_run: dict) -> None:
    store, second = logged_run["store"], logged_run["runs"][1]
    tb = store.run_dir(second.experiment, second.name) / "tensorboard"
    assert tb.is_dir(), f"{second.name}: no TensorBoard folder of its own"
    stored = dict(store.curves(second.id)["train_loss"])
    assert any(_same(points, stored) for points in _tb_losses(tb))


@needs_shared
@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed (pip install -e .[report])")
def test_mlflow_file_store_holds_the_train_loss(logged_run: dict) -> None:
    from mlflow.tracking import MlflowClient

    uri = (Path(logged_run["tmp"]) / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("peftlab-logging-test")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2  # one MLflow run per peftlab run
    store = logged_run["store"]
    by_lr = {r.resolved["learning_rate"]: dict(store.curves(r.id)["train_loss"]) for r in logged_run["runs"]}
    for ml in runs:
        history = client.get_metric_history(ml.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(1, STEPS + 1))
        stored = by_lr[float(ml.data.params["learning_rate"])]  # the Trainer logs its arguments too
        for m in history:
            assert m.value == pytest.approx(stored[m.step], rel=1e-4)


@needs_shared
@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed (pip install -e .[report])")
def test_mlflow_records_go_into_the_store_named_after_the_experiment(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)  # where MLflow would otherwise write ./mlflow.db
    body = tiny_causal(["lora"], max_steps=2, report_to=["mlflow"])
    body["name"] = "mlflow-home"
    store = Store(tmp_path / "store")
    [run] = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    assert (store.root / "mlflow.db").is_file() and not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{(store.root / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("mlflow-home")
    assert exp is not None
    [ml] = client.search_runs([exp.experiment_id])
    assert ml.info.run_name == "mlflow-home/lora"
    assert "MLFLOW_TRACKING_URI" not in __import__("os").environ  # put back after the run
