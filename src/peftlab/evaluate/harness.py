"""Standard benchmarks on a run through lm-evaluation-harness (`peftlab evaluate EXP RUN --lm-eval
TASKS`): what a method gained or lost on tasks beside the user's own, each beside the zero-shot
row's score on the same task.

lm-eval runs its own Hugging Face model on the run: the base model with the run's adapter
(`peft=`), or the fully fine-tuned model, in float32 on the CPU (a run answers in fp32 by default:
`evaluation.precision`), so the scores are the ones a user gets from the download. Task names
are lm-eval's (`lm_eval ls tasks`; their data comes from the hub where it is reachable), and
`include` adds a folder of local task files (YAML with `dataset_path: json`), for offline use.
Each task's metrics and standard errors are recorded under the run (`info.evaluations`, named
`lm-eval/<task>`), as `peftlab evaluate --test` records its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.store import Run, Store


def model_args(run: Run) -> dict[str, Any]:
    """lm-eval's `hf` model arguments for the run (what `--model_args` would hold)."""
    import torch

    from peftlab.methods import get_method
    from peftlab.models import resolve_model
    from peftlab.models.trained import run_config
    from peftlab.tasks import spec

    if run.status != "done":
        raise PeftlabError(f"run {run.name!r} is {run.status}; only done runs can be evaluated")
    cfg, _, base = run_config(run)
    if not spec(cfg.task).generative:
        raise PeftlabError(f"run {run.name!r} is a {cfg.task} run: lm-evaluation-harness scores language models "
                           "(causal-lm, seq2seq); a classifier's head answers labels, not text")
    method = get_method(run.method)
    art = run.file("artifact")
    if not method.is_baseline and art is None:
        raise PeftlabError(f"run {run.name!r}: its saved {'model' if method.is_full else 'adapter'} is missing")
    args: dict[str, Any] = {"pretrained": str(art) if method.is_full else resolve_model(cfg.model, base).path,
                            "dtype": "float32", "device": "cuda" if torch.cuda.is_available() else "cpu"}
    if cfg.task == "seq2seq":
        args["backend"] = "seq2seq"
    if not method.is_baseline and not method.is_full:
        args["peft"] = str(art)
    return args


def run_tasks(run: Run, tasks: list[str], include: Path | None = None, limit: int | None = None,
              batch_size: int = 1) -> dict[str, dict[str, Any]]:
    """lm-eval's results for each task on the run: {task: record}; a record holds the task's
    metrics, their standard errors, the samples scored and lm-eval's version."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise PeftlabError("lm-evaluation-harness is not installed: pip install 'lm_eval'") from None
    if include is not None and not Path(include).is_dir():
        raise PeftlabError(f"--lm-eval-include {include}: not a folder (give the folder that holds the task YAML files)")
    manager = TaskManager(include_path=str(include) if include else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise PeftlabError(f"lm-eval knows no task {', '.join(map(repr, unknown))}: see `lm_eval ls tasks`, or give "
                           "the folder of your task files with --lm-eval-include")
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=model_args(run), tasks=tasks, task_manager=manager,
                                  limit=limit, batch_size=batch_size)
    seconds = round(time.perf_counter() - t0, 1)
    records = {}
    for task in tasks:
        res = out["results"].get(task) or {}
        metrics = {k.split(",")[0]: v for k, v in res.items()
                   if "," in k and "_stderr" not in k and isinstance(v, int | float)}
        stderr = {k.split(",")[0].replace("_stderr", ""): v for k, v in res.items()
                  if "_stderr," in k and isinstance(v, int | float)}
        records[task] = {"name": f"lm-eval/{task}", "source": "lm-evaluation-harness", "task": task,
                         "lm_eval_version": getattr(lm_eval, "__version__", None), "metrics": metrics,
                         "stderr": stderr, "samples": (out.get("n-samples") or {}).get(task, {}).get("effective"),
                         "limit": limit, "model_args": {k: v for k, v in model_args(run).items() if k != "device"},
                         "seconds": seconds, "recorded_at": time.time()}
    return records


def record(store: Store, run: Run, records: dict[str, dict[str, Any]]) -> None:
    for rec in records.values():
        if not store.record_evaluation(run.id, rec["name"], rec):
            raise PeftlabError(f"run {run.name!r} is no longer done; its scores were not recorded")


def beside_zero_shot(store: Store, run: Run, name: str) -> dict[str, Any] | None:
    """The zero-shot row's record of the same evaluation, when the experiment has one."""
    base = next((r for r in store.runs(run.experiment) if r.method == "zero-shot" and r.status == "done"), None)
    if base is None or base.id == run.id:
        return None
    return ((base.info or {}).get("evaluations") or {}).get(name)
