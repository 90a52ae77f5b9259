"""Forgetting: how far a run has moved the base model away from what it did before, on material
that is not the task's (issue 29).

For each item of the reference set (`evaluate.reference`: by default general prompts continued by
the base model itself) the run's mean loss per completion token is taken minus the base model's on
the same tokens; forgetting is the mean of these per-example differences, in nats per token, with
a 95% bootstrap interval over the examples (over seeds and examples where a row has several seeds:
`report.forgetting`). On the default set the completions are samples from the base, so the mean is
a Monte Carlo estimate of KL(base || run) per token on general prompts: 0 when the run answers them
as the base did, larger the more it has moved. The zero-shot row is the base model itself: its
losses are the base losses the set was made with, and its forgetting is 0 by construction.

Measured on every generative run (causal-lm, seq2seq), after its test evaluation; never on a
tuning trial, and it reads no test data. Classification runs are not measured (`NOT_MEASURED`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

UNIT = "nats/token"
NOT_MEASURED = ("not measured for classification: the classification head is new, so the base model has no "
                "answer of its own to compare the run's with")


def measured(cfg: Any) -> bool:
    """Whether the experiment's runs measure forgetting: a generative task, and not switched off."""
    from peftlab.tasks.spec import spec

    return cfg.evaluation.forgetting is not False and spec(cfg.task).generative


def reference_for(ctx: Any, rm: Any) -> dict[str, Any]:
    """The run's reference set, made from a freshly loaded base model when the store has none for
    this base yet (`reference.load_or_make`)."""
    from peftlab.evaluate import reference as ref

    cfg = ctx.cfg
    name, digest, rows = ref.source_rows(cfg.evaluation.forgetting, ctx.base_dir)
    key = ref.reference_key(cfg, rm.path, digest)

    def make() -> dict[str, Any]:
        import torch

        from peftlab.models import load_model

        ctx.phase("making the forgetting reference set")
        t0 = time.perf_counter()
        # its own random state: the run trains from the same seed state whether or not it made the set
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            model = load_model(rm, cfg.model, cfg.task, ctx.data.labels)
            ctx.task.prepare_model(model)
            if torch.cuda.is_available():
                model.to("cuda")
            items = ref.build(model, ctx.task, rows)
        del model  # before the run's own model loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        ctx.mem.reset()  # the run's peak memory is its own, not the reference model's
        return {"key": key, "source": name, "digest": digest, "model": rm.path, "items": items,
                "seconds": round(time.perf_counter() - t0, 2), "made_at": time.time()}

    return ref.load_or_make(ref.cache_path(ctx.store.root, key), make, ref.shared_path(key))


def measure(model: Any, task: Any, reference: dict[str, Any], out_file: Path, is_base: bool) -> dict[str, Any]:
    """The run's forgetting on `reference`: per-example values written to `out_file` (one JSON row
    each: the run's loss, the base's, their difference) and the summary the store records.
    `is_base`: the run is the untouched base model (zero-shot): its losses are the base's."""
    from peftlab.evaluate import reference as ref
    from peftlab.stats.intervals import mean_ci

    t0 = time.perf_counter()
    items = reference["items"]
    base = [float(it["base_nll"]) for it in items]
    nll = base if is_base else ref.example_nll(model, task, items)
    diffs = [a - b for a, b in zip(nll, base, strict=True)]
    with open(out_file, "w", encoding="utf-8") as f:
        for it, a, b, d in zip(items, nll, base, diffs, strict=True):
            f.write(json.dumps({"where": it.get("where"), "nll": a, "base_nll": b, "diff": d}) + "\n")
    ci = mean_ci(diffs)
    return {"mean": ci.value, "ci_low": ci.low, "ci_high": ci.high, "n": len(diffs), "unit": UNIT,
            "reference": reference["key"], "source": reference["source"],
            "tokens": sum(len(it["completion_ids"]) for it in items), "seconds": round(time.perf_counter() - t0, 2)}


def per_example(path: Path | None) -> list[float] | None:
    """A run's per-example differences (run - base), from its `forgetting.jsonl`; None when absent."""
    if path is None or not path.is_file():
        return None
    try:
        return [float(json.loads(line)["diff"]) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError, KeyError):
        return None
