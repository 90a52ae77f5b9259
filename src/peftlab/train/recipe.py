"""One run, top to bottom: data -> model -> method -> train -> save -> evaluate -> record.

`execute_run(store, run_id)` is the whole flow for one method on one experiment. It is
called in a worker subprocess by `peftlab run` (so each run's peak memory is its own and a
crash cannot take the others down), or in-process by tests and the library API.

The run's state travels as one `RunContext` (`context.py`), which each numbered step of `_run`
reads and fills in. A new phase of a run goes here, as a step; a change to the training step
goes in `trainer.py`; what runs in which order (preflight, skipping, resuming) in `runner.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.data.prepare import prepare_data
from peftlab.device import describe, resolve_precision
from peftlab.errors import DivergedError, PeftlabError
from peftlab.evaluate import forgetting
from peftlab.evaluate.health import generation_health
from peftlab.evaluate.metrics import example_scores
from peftlab.methods import MethodContext, get_method
from peftlab.methods.common import merged_for_inference, save_artifact
from peftlab.models import ResolvedModel, load_model, resolve_model
from peftlab.scale.devices import rank
from peftlab.store import Store
from peftlab.tasks.base import Prediction
from peftlab.tasks.build import load_task
from peftlab.train.context import RunContext
from peftlab.train.cost import dir_bytes, parameter_counts


def execute_run(store: Store, run_id: int) -> str:
    """Run (or resume) one claimed run to the end. Returns the final status."""
    run = store.run(run_id)
    assert run is not None, f"no run {run_id}"
    cfg = ExperimentConfig.model_validate(run.config["experiment"])
    entry = MethodEntry.model_validate(run.config["entry"])
    base = Path(run.config["base_dir"]) if run.config.get("base_dir") else None
    out_dir = store.run_dir(cfg.name, entry.run_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(store, run_id, cfg, entry, base, out_dir, role=run.config.get("role", "final"),
                     data_seed=run.config.get("data_seed"), trial=run.config.get("trial"))
    store.log(run_id, f"run {entry.run_name} ({entry.name}) started")
    try:
        with ctx.mem:
            result = _run(ctx)
        if result is None:  # another process of a run over several devices: the first records
            return "done"
        result["cost"]["peak_memory_mb"] = round(ctx.mem.peak_mb, 1)
        store.finish(run_id, "done", metrics=result["metrics"], cost=result["cost"], info=result["info"],
                     resolved=result["resolved"], progress={"phase": "done"})
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        store.log(run_id, "run finished")
        return "done"
    except DivergedError as e:
        store.finish(run_id, "diverged", error=str(e), diverged_step=e.step)
        store.log(run_id, f"diverged: {e}", "error")
        return "diverged"
    except KeyboardInterrupt:
        store.mark_interrupted(run_id, "stopped by the user (Ctrl-C or SIGTERM); run again to resume")
        raise
    except PeftlabError as e:
        store.finish(run_id, "failed", error=f"{type(e).__name__}: {e}")
        store.log(run_id, str(e), "error")
        return "failed"
    except Exception as e:  # noqa: BLE001 - record, never lose, any failure
        msg = f"{type(e).__name__}: {e}"
        # torch.save reports a full disk as a RuntimeError ("file write failed")
        if (isinstance(e, OSError) and e.errno == 28) or any(
            t in str(e) for t in ("No space left on device", "file write failed")
        ):
            msg = f"disk full while writing ({e}); earlier checkpoints are kept, free space and run again"
        store.finish(run_id, "failed", error=msg)
        store.log(run_id, f"{msg}\n{traceback.format_exc()}", "error")  # the trace, for a bug report
        return "failed"


def _run(ctx: RunContext) -> dict[str, Any] | None:
    """The run's steps, in order: each puts what it resolves on `ctx` for the steps after it.
    Returns what the store records: metrics, cost, info and the resolved settings."""
    cfg, tcfg = ctx.cfg, ctx.cfg.training
    # 0. The method and its options; threads, seed and precision.
    ctx.method = get_method(ctx.entry.name)
    ctx.opts = ctx.method.parse_options(ctx.entry.options)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed)
    ctx.precision = resolve_precision(tcfg.precision)
    ctx.eval_precision = resolve_precision(cfg.evaluation.precision)  # every answer of the run (issue 26)
    ctx.phase("loading data")

    # 1. Data: read, check, split, limit. Fails here, before any model loads. A tuning trial never
    #    reads the test split: it is scored on the validation split.
    seed = tcfg.seed if ctx.data_seed is None else ctx.data_seed
    ctx.data = data = prepare_data(cfg.data, cfg.task, seed, ctx.base_dir, read_test=not ctx.is_trial)
    scored = data.validation if ctx.is_trial else data.test

    # 2. Tokenizer / processor and the task's encoding.
    rm = resolve_model(cfg.model, ctx.base_dir)
    ctx.task = task = load_task(cfg, rm, data.labels, ctx.eval_precision)

    # 2b. The forgetting reference set (generative final runs): made from the base model by the first
    #     run of this base that needs it, before this run's own model loads (`evaluate.forgetting`).
    reference = None
    if forgetting.measured(cfg) and not ctx.is_trial and rank() == 0:
        reference = forgetting.reference_for(ctx, rm)

    # 3. Steps, then the base model (some methods change how it loads: 4-bit for qlora).
    ctx.total_steps = tcfg.total_steps(len(data.train))
    model, mctx = _load_model(ctx, rm)

    # 4. Method: wrap the model (or leave it: zero-shot); record the settings the run resolved.
    model, trainable, total = _apply_method(ctx, model, mctx)
    ctx.learning_rate = ctx.entry.learning_rate or tcfg.learning_rate or ctx.method.learning_rate(cfg.task)
    resolved = _resolved(ctx, model)
    ctx.update(resolved=resolved)

    # 5. Train (in place). Over several devices, the other processes stop here: the first saves,
    #    evaluates and records (`scale.devices`).
    train_seconds, tokens, train_rows = _train(ctx, model) if ctx.method.trains else (0.0, 0, 0)
    if rank() > 0:
        return None

    # 6. Save the trained artifact: the adapter, or the whole model with its tokenizer.
    save_dir, artifact_bytes = _save(ctx, model) if ctx.method.trains and not ctx.is_trial else (None, 0)
    train_peak = ctx.mem.peak_mb

    # 7. Evaluate on the test split (a trial: the validation split): loss, predictions, metrics.
    ctx.phase("evaluating")
    t0, c0 = time.perf_counter(), time.process_time()
    with merged_for_inference(model, restore=False):  # the adapter is saved: fold it in, generation is faster
        test_loss, preds = task.evaluate(model, scored, desc=f"{ctx.run_name}: {'validation' if ctx.is_trial else 'test'}")
    predict_seconds = time.perf_counter() - t0  # the model's part: test loss and outputs
    metrics = task.score(scored, preds)
    eval_seconds = time.perf_counter() - t0  # + metric scoring (the first call imports ROUGE/BLEU)
    eval_cpu_seconds = time.process_time() - c0
    per_class = metrics.pop("_per_class", None)
    metrics["eval_loss"] = test_loss
    pred_path = _write_predictions(ctx.out_dir / "predictions.jsonl", preds)
    scores_path = _write_rows(ctx.out_dir / "scores.jsonl", example_scores(preds))  # per example, for the statistics
    forgot = None
    if reference is not None:  # 7b. Forgetting: the run against the base on the reference set
        ctx.phase("measuring forgetting")
        is_base = ctx.method.is_baseline and not ctx.method.trains
        forgot = forgetting.measure(model, task, reference, ctx.out_dir / "forgetting.jsonl", is_base)
        metrics["forgetting"] = forgot["mean"]

    # 8. Record: what the run produced (predictions, health, artifact) and what it cost.
    info = _info(ctx, preds, pred_path, save_dir, per_class)
    info["scores"] = ctx.store.relative(scores_path)
    if forgot is not None:
        info["forgetting"] = forgot
        info["forgetting_examples"] = ctx.store.relative(ctx.out_dir / "forgetting.jsonl")  # per example
    if task.truncated:
        ctx.log(f"{task.truncated} of {train_rows} training rows were longer than the max length and truncated",
                "warning")
    cost = {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total if total else 0.0,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / train_seconds, 1) if train_seconds else None,
        "train_peak_memory_mb": round(train_peak, 1),
        "adapter_bytes": artifact_bytes,
        "eval_examples_per_second": round(len(scored) / eval_seconds, 2) if eval_seconds else None,
        **({"forgetting_seconds": forgot["seconds"]} if forgot else {}),  # apart from eval_seconds
        **_measured_under(ctx, eval_cpu_seconds),
    }
    return {"metrics": metrics, "cost": cost, "info": info, "resolved": resolved}


def _measured_under(ctx: RunContext, eval_cpu_seconds: float) -> dict[str, Any]:
    """What the run's times were measured under, so costs measured beside other jobs can be told
    from costs measured alone: CPU seconds (user + sys, every thread) of training and evaluation,
    the 1-minute load average at training's start and end and evaluation's end, threads, CPUs."""
    m = dict(ctx.measured_under) or {"train_cpu_seconds": 0.0, "load_avg": {}, "threads": torch.get_num_threads(),
                                     "cpus": os.cpu_count(), "resumed": False}
    m["load_avg"] = {**m["load_avg"], "eval_end": round(os.getloadavg()[0], 2)}
    m["eval_cpu_seconds"] = round(eval_cpu_seconds, 2)
    return m


def _load_model(ctx: RunContext, rm: ResolvedModel) -> tuple[Any, MethodContext]:
    """Step 3: the base model, loaded as the method asks, fixed up for the task, on the GPU if
    there is one; and what the method is told about the run (`MethodContext`)."""
    cfg, data, task = ctx.cfg, ctx.data, ctx.task
    mctx = MethodContext(
        task=cfg.task, model_type="", total_steps=ctx.total_steps, tokenizer_path=rm.path,
        prompt_text=data.prompt_text, precision=ctx.precision, tokenizer=task.tok,
    )
    mctx.calibration = lambda: _calibration_batches(ctx, model)
    ctx.phase("loading model")
    extra = ctx.method.load_kwargs(ctx.opts, mctx) if ctx.method.load_kwargs else {}
    model = load_model(rm, cfg.model, cfg.task, data.labels, **extra)
    task.prepare_model(model)
    mctx.model_type = model.config.model_type
    mctx.head_modules = task.head_modules(model)
    if torch.cuda.is_available() and not extra:
        model.to("cuda")
    return model, mctx


def _calibration_batches(ctx: RunContext, model: Any, n: int = 16) -> Any:
    """Collated training batches on the model's device, for the data-driven initialisations
    (EVA, CorDA, LoRA-GA: `MethodContext.calibration`). Drawn from the first training rows in
    their own pass: training's order and its truncation count are untouched."""
    task, bs = ctx.task, ctx.cfg.training.batch_size
    dev = next(model.parameters()).device
    before = task.truncated
    feats = [task.encode(e) for e in ctx.data.train[: n * bs]]
    task.truncated = before
    for i in range(0, len(feats), bs):
        yield {k: v.to(dev) for k, v in task.collate(feats[i : i + bs]).items()}


def _apply_method(ctx: RunContext, model: Any, mctx: MethodContext) -> tuple[Any, int, int]:
    """Step 4: the model with the method applied, its trainable and total parameters."""
    method = ctx.method
    if method.apply is not None:
        model = method.apply(model, ctx.opts, mctx)
    trainable, total = parameter_counts(model)
    if not method.trains:
        trainable = 0
    if method.trains and trainable == 0:
        raise PeftlabError(f"method {ctx.entry.name}: no trainable parameters after applying it")
    return model, trainable, total


def _resolved(ctx: RunContext, model: Any) -> dict[str, Any]:
    trains = ctx.method.trains
    return {
        "method": ctx.entry.name,
        "options": ctx.opts.model_dump(),
        "learning_rate": ctx.learning_rate if trains else None,
        "total_steps": ctx.total_steps if trains else 0,
        "precision": ctx.precision,
        "eval_precision": ctx.eval_precision,
        "peft_config": _peft_config(model),
        "experiment": ctx.cfg.model_dump(mode="json"),
    }


def _train(ctx: RunContext, model: Any) -> tuple[float, int, int]:
    """Step 5: encode the splits and train. Returns (train seconds, real tokens, training rows),
    the first two for the whole run (a resumed run adds what its checkpoint recorded)."""
    ctx.phase("tokenizing")
    task, data = ctx.task, ctx.data
    train_feats = [task.encode(e) for e in data.train]
    val_feats = [task.encode(e) for e in data.validation] if ctx.cfg.training.eval_every else None
    from peftlab.train.trainer import train_model

    train_seconds, tokens = train_model(ctx, model, train_feats, val_feats)
    # Under bf16/fp16 the Trainer (accelerate) leaves the model's forward wrapped in autocast: without
    # this the test evaluation would run at the training precision whatever evaluation.precision says,
    # and its outputs would not be the ones the saved model gives when loaded (issue 26).
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)
    model.eval()
    return train_seconds, tokens, len(train_feats)


def _save(ctx: RunContext, model: Any) -> tuple[Path, int]:
    """Step 6: the artifact's folder and its size in bytes."""
    whole = ctx.method.artifact == "model"
    save_dir = ctx.out_dir / ("model" if whole else "adapter")
    shutil.rmtree(save_dir, ignore_errors=True)
    save_artifact(model, save_dir)  # a LoRA whose init rewrote the base is saved as a plain LoRA
    for extra_obj in (ctx.task.tok, ctx.task.processor):
        if extra_obj is not None and whole:  # a whole model travels with its tokenizer
            extra_obj.save_pretrained(save_dir)
    return save_dir, dir_bytes(save_dir)


def _write_predictions(path: Path, preds: list[Prediction]) -> Path:
    return _write_rows(path, [p.as_dict() for p in preds])


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _info(ctx: RunContext, preds: list[Prediction], pred_path: Path, save_dir: Path | None,
          per_class: Any) -> dict[str, Any]:
    """Step 8: what the store keeps about the run besides metrics and cost."""
    data, task = ctx.data, ctx.task
    info: dict[str, Any] = {
        "versions": versions(),
        "machine": describe(),
        "seed": ctx.cfg.training.seed,
        "data": {**data.counts(), "skipped_rows": len(data.skipped), "skipped": data.skipped[:100],
                 "truncated_train_rows": task.truncated, "notes": data.notes, "format": data.format,
                 "format_notes": data.format_notes},
        "main_metric": task.main_metric,
        "predictions": ctx.store.relative(pred_path),  # relative to the store root (Run.file)
        "artifact": ctx.store.relative(save_dir) if save_dir else None,
        "labels": data.labels,
    }
    if per_class:
        info["per_class"] = per_class
    if task.generative:
        info["health"] = generation_health(
            [p.output for p in preds], [p.stopped for p in preds],
            [e.references[0] for e in (data.validation if ctx.is_trial else data.test)]
        )
    if ctx.is_trial:
        info["scored_split"] = "validation"
        info["pruned"] = ctx.pruned
    return info


def _peft_config(model: Any) -> dict[str, Any] | None:
    cfg = getattr(model, "peft_config", None)
    if not cfg:
        return None
    c = cfg.get("default")
    d = c.to_dict() if hasattr(c, "to_dict") else {}
    return json.loads(json.dumps(d, default=str))


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("peftlab", "torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out
