"""A finished run on a new file: `peftlab predict` (outputs for rows without targets) and
`peftlab evaluate` (scores on a labelled file the run never saw, recorded under the run).

Both load the run as its own test evaluation ran it (`models.trained.load_trained`: base model,
adapter folded in where it can be) and read the file with the run's own data settings
(`data.inputs.read_examples`: its columns or chat format, prompt template, system prompt), so
the model sees exactly the token sequences it was trained and tested on. Generation is the
task's own batched path (`generate_batched`: sorted batches, the shared prompt prefix computed
once, greedy decoding pruned as rows stop), with the run's generation settings; the test loss of
`evaluate` comes from the same prompt pass (`CausalLMTask.evaluate`).

An evaluation is kept in `runs/<experiment>/<run>/evaluations/<name>/` (predictions.jsonl,
scores.jsonl, metrics.json) and recorded in the run's info under `evaluations.<name>`, with
95% bootstrap intervals from `report.significance`, so `peftlab show` lists it.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config.schema import NAME_RE, ExperimentConfig
from peftlab.errors import PeftlabError
from peftlab.store import Run, Store

OUTPUT_COLUMN = "output"
SPARE_OUTPUT_COLUMN = "prediction"  # when the input already has an `output` column (alpaca's reference)


@dataclass
class PredictResult:
    run: str
    path: Path
    rows: int
    column: str  # the column the outputs were written to
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _loaded(run: Run, batch_size: int | None, on_bad_rows: str | None) -> Any:
    """The run loaded for inference, with the CLI's batch size / bad-row policy in its settings."""
    from peftlab.models.trained import load_trained

    trained = load_trained(run)
    cfg: ExperimentConfig = trained.cfg
    if on_bad_rows is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_bad_rows": on_bad_rows})})
    if batch_size is not None:
        trained.task.evaluation = trained.task.evaluation.model_copy(update={"batch_size": batch_size})
    trained.cfg = cfg
    return trained


def predict_file(run: Run, source: str, output: Path, batch_size: int | None = None,
                 on_bad_rows: str | None = None) -> PredictResult:
    """Outputs of `run` for every usable row of `source`, written to `output` (JSONL, or CSV by
    its suffix) as the input row's columns plus `output` (and `stopped`, `confidence` where the
    task gives them). Targets may be missing; bad rows follow data.on_bad_rows (or `on_bad_rows`)."""
    from peftlab.data.inputs import read_examples

    trained = _loaded(run, batch_size, on_bad_rows)
    cfg = trained.cfg
    inp = read_examples(cfg.data, cfg.task, source, need_target=False, labels=trained.task.labels)
    t0 = time.perf_counter()
    preds = trained.task.predict(trained.model, inp.examples, desc=f"{run.name}: predict")
    seconds = time.perf_counter() - t0
    column = SPARE_OUTPUT_COLUMN if any(OUTPUT_COLUMN in r for r in inp.rows) else OUTPUT_COLUMN
    notes = list(inp.notes)
    if column != OUTPUT_COLUMN:
        notes.append(f"the input has an {OUTPUT_COLUMN!r} column: outputs are written to {column!r}")
    out_rows = []
    for row, p in zip(inp.rows, preds, strict=True):
        r = {k: v for k, v in row.items() if k != "__line__"}
        r[column] = p.output
        if p.stopped is not None:
            r["stopped"] = p.stopped
        if "confidence" in p.extra:
            r["confidence"] = p.extra["confidence"]
        out_rows.append(r)
    write_rows(output, out_rows)
    return PredictResult(run.name, output, len(out_rows), column, inp.skipped, notes, round(seconds, 2))


SPLITS = ("train", "validation", "test")


def evaluation_name(source: str, name: str | None) -> str:
    """The evaluation's name: given, or 'file-' and the file's stem made safe for a folder name.

    Never a split's name: a held-out `test.jsonl` scored with `peftlab evaluate` is recorded as
    'file-test', which cannot be taken for the run's own test split."""
    if name is not None:
        if not NAME_RE.fullmatch(name):
            raise PeftlabError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only (it names a folder)")
        if name.lower() in SPLITS:
            raise PeftlabError(f"--name {name!r} would read as the run's own {name.lower()} split; choose another "
                               f"name, e.g. --name heldout-{name.lower()}")
        return name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source.split(":", 1)[-1] if "://" in source else source).stem)
    stem = "file-" + (stem.strip("-.") or "evaluation")
    return stem[:100] if NAME_RE.fullmatch(stem[:100]) else "file-evaluation"


def evaluate_file(store: Store, run: Run, source: str, name: str | None = None, batch_size: int | None = None,
                  on_bad_rows: str | None = None) -> dict[str, Any]:
    """Score `run` on the labelled file `source`: test loss, the task's metrics with 95% intervals,
    per-example scores and predictions, kept under the run and recorded in its info. Returns the
    record (what `peftlab show` shows under info.evaluations.<name>)."""
    from peftlab.data.inputs import read_examples
    from peftlab.evaluate.metrics import example_scores
    from peftlab.report.significance import intervals_of, scores_of

    name = evaluation_name(source, name)
    trained = _loaded(run, batch_size, on_bad_rows)
    cfg, task = trained.cfg, trained.task
    inp = read_examples(cfg.data, cfg.task, source, need_target=True, labels=task.labels)
    t0 = time.perf_counter()
    loss, preds = task.evaluate(trained.model, inp.examples, desc=f"{run.name}: {name}")
    metrics = task.score(inp.examples, preds)
    seconds = time.perf_counter() - t0
    per_class = metrics.pop("_per_class", None)
    metrics["eval_loss"] = loss
    pred_rows = [p.as_dict() for p in preds]
    scores = example_scores(preds)
    es = scores_of(pred_rows, scores, len(task.labels or []))
    folder = store.run_dir(run.experiment, run.name) / "evaluations" / name
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(folder / "predictions.jsonl", pred_rows)
    write_rows(folder / "scores.jsonl", scores)
    record: dict[str, Any] = {
        "name": name, "source": inp.source, "format": inp.format, "examples": len(preds),
        "skipped_rows": len(inp.skipped), "skipped": inp.skipped[:100], "notes": inp.notes,
        "main_metric": task.main_metric, "metrics": metrics,
        "intervals": intervals_of(es) if es is not None else {},
        "seconds": round(seconds, 2), "created_at": time.time(),
        "predictions": store.relative(folder / "predictions.jsonl"), "scores": store.relative(folder / "scores.jsonl"),
    }
    if per_class:
        record["per_class"] = per_class
    if task.generative:
        from peftlab.evaluate.health import generation_health

        record["health"] = generation_health([p.output for p in preds], [p.stopped for p in preds],
                                             [e.references[0] for e in inp.examples])
    (folder / "metrics.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    if not store.record_evaluation(run.id, name, record):
        raise PeftlabError(f"run {run.name!r} is no longer done (re-run meanwhile?); the evaluation is in {folder} "
                           "but not recorded")
    return record


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """JSON Lines, or CSV for a .csv path (lists and dicts JSON-encoded in their cells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        cols: dict[str, None] = {}
        for r in rows:
            cols.update(dict.fromkeys(r))
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(cols))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                            for k, v in r.items()})
        return
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
