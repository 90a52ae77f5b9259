"""A resumed run is the run it would have been: stopped inside the first epoch, right after it, in
a later epoch, or during its test evaluation, it resumes to the same curves and metrics as an
uninterrupted run with the same seed (length-grouped batches and periodic validation on).

The stop is a KeyboardInterrupt raised where a kill would land (after a checkpoint, or inside the
evaluation), in-process: each run re-seeds like a fresh process does, which is what made the
length-grouped order of later epochs differ before (transformers builds that sampler from the
global RNG)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import needs_shared, tiny_causal, write_experiment
from transformers import TrainerCallback

from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


def _exp(tmp_path: Path) -> Path:
    body = tiny_causal(["lora"], max_steps=None, epochs=3, checkpoint_every=2, eval_every=3, batch_size=8,
                       group_by_length=True)
    body["training"].pop("max_steps")
    body["data"].update(max_train_examples=32, max_validation_examples=6)  # 4 steps an epoch, 12 in all
    return write_experiment(tmp_path, body)


def _run(exp: Path, store: Store):  # noqa: ANN202
    return run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)


class _StopAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kw):  # noqa: ANN001, ANN201
        if state.global_step == self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("ref")
    store = Store(tmp / "store")
    [run] = _run(_exp(tmp), store)
    assert run.status == "done", run.error
    return run, store.curves(run.id)


@pytest.mark.parametrize("stop", ["step 2 (inside epoch 1)", "step 4 (end of epoch 1)", "step 6 (inside epoch 2)",
                                  "step 8 (end of epoch 2)", "test evaluation"])
def test_resumed_run_equals_uninterrupted(tmp_path: Path, reference: tuple, stop: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.tasks.causal_lm import CausalLMTask
    from peftlab.train import trainer as trainer_mod

    exp, store = _exp(tmp_path), Store(tmp_path / "store")
    if stop == "test evaluation":
        real = CausalLMTask.evaluate

        def fail_once(self, model, examples, desc="test"):  # noqa: ANN001, ANN202
            if desc.endswith("test"):
                monkeypatch.setattr(CausalLMTask, "evaluate", real)
                raise KeyboardInterrupt
            return real(self, model, examples, desc)

        monkeypatch.setattr(CausalLMTask, "evaluate", fail_once)
    else:
        step = int(stop.split()[1])
        real_cls = trainer_mod.PeftlabTrainer

        class Stopping(real_cls):  # type: ignore[misc, valid-type]
            def __init__(self, *a, **kw):  # noqa: ANN002, ANN003
                super().__init__(*a, **kw)
                self.add_callback(_StopAfterSave(step))

        monkeypatch.setattr(trainer_mod, "PeftlabTrainer", Stopping)
    with pytest.raises(KeyboardInterrupt):
        _run(exp, store)
    assert store.runs()[0].status == "interrupted"
    monkeypatch.undo()
    [run] = _run(exp, store)
    ref_run, ref_curves = reference
    assert run.status == "done", run.error
    curves = store.curves(run.id)
    for name in ("train_loss", "eval_loss", "val_rougeL", "learning_rate"):
        assert [s for s, _ in curves[name]] == [s for s, _ in ref_curves[name]], name
        for (s, a), (_, b) in zip(curves[name], ref_curves[name], strict=True):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (stop, name, s, a, b)
    for k, v in ref_run.metrics.items():
        assert math.isclose(run.metrics[k], v, rel_tol=1e-6, abs_tol=1e-6), (stop, k, run.metrics[k], v)
    assert run.cost["train_tokens"] == ref_run.cost["train_tokens"]
