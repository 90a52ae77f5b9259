"""Evaluation levers, measured on a done run: re-evaluate its saved adapter on the test split
with each lever on and off, in one process, and compare with the run's own training time.

    python benchmarks/eval_levers.py --store /work/runs/statista-store statista-smollm2 lora [--n 50]
    python benchmarks/eval_levers.py --tiny [--json out.json]   # trains a tiny lora here: checks it runs

Variants: `plain`, `prefix` (shared prompt prefix), `merge` (adapter folded in), `prune`
(stopped rows leave the batch), combined with `+`; `peft-generate` gives prompt-learning adapters peft's own generate and a separate
loss pass instead of their virtual tokens heading the cache; `usual` is the usual recipe's
evaluation (benchmarks/speed.py): `generate` one example at a time, generation only, no loss.

Prints one JSON line per variant (seconds, examples/s, test loss, outputs identical to the
first variant) and, last, a summary with eval/train ratios scaled to the whole test split.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes (the usual evaluation), tiny

from peftlab.data.prepare import prepare_data  # noqa: E402
from peftlab.methods.common import can_merge, merged_for_inference  # noqa: E402
from peftlab.models.trained import load_trained, run_config  # noqa: E402
from peftlab.store import Store  # noqa: E402
from peftlab.tasks import generation  # noqa: E402


@contextlib.contextmanager
def shared_prefix(on: bool) -> Iterator[None]:
    keep = generation.MIN_SHARED_PREFIX
    generation.MIN_SHARED_PREFIX = keep if on else 10**9
    try:
        yield
    finally:
        generation.MIN_SHARED_PREFIX = keep


@contextlib.contextmanager
def prune_stopped(on: bool) -> Iterator[None]:
    """Off: one `generate` call per batch, stopped rows decoded as padding to the end."""
    keep = generation.PRUNE_AT
    generation.PRUNE_AT = keep if on else 0
    try:
        yield
    finally:
        generation.PRUNE_AT = keep


@contextlib.contextmanager
def virtual_head(on: bool) -> Iterator[None]:
    """Off: prompt-learning adapters take peft's own `generate` and a separate loss pass
    (the path before their virtual tokens headed the cache)."""
    keep = generation.virtual_cache_ok
    if not on:
        generation.virtual_cache_ok = lambda model: False
    try:
        yield
    finally:
        generation.virtual_cache_ok = keep


def one_at_a_time(tr: Any, test: list[Any]) -> list[Any]:
    """The usual recipe's evaluation: plain `generate` per example (batch 1, no padding)."""
    from recipes import _predict_usual  # benchmarks/ is on sys.path when run as a script

    s = SimpleNamespace(task=tr.task, tok=tr.task.tok, model=tr.model, cfg=tr.cfg,
                        data=SimpleNamespace(test=test), device=next(tr.model.parameters()).device)
    return _predict_usual(s)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store")
    ap.add_argument("experiment", nargs="?")
    ap.add_argument("run", nargs="?")
    ap.add_argument("--n", type=int, default=0, help="test examples (default: the run's whole test split)")
    ap.add_argument("--variants", default="plain,prefix,prefix+merge,prefix+merge+prune")
    ap.add_argument("--tiny", action="store_true",
                    help="train a lora on stories260k in a temporary store and measure every variant on it "
                         "(seconds; the test suite runs it): checks the benchmark runs, measures nothing")
    ap.add_argument("--json", type=Path, help="also write the summary (with every variant's line) here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="peftlab-eval-levers-") as tmp:
        if args.tiny:
            from tiny import build_store, experiment

            args.store = str(build_store(Path(tmp) / "store", experiment("levers", [{"name": "lora"}],
                                                                         precision="fp32")))
            args.experiment, args.run = "levers", "lora"
            args.variants = "plain,prefix,prefix+merge,prefix+merge+prune,peft-generate,usual"
        elif not (args.store and args.experiment and args.run):
            ap.error("give --store, EXPERIMENT and RUN (or --tiny)")
        return measure(args)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    run = Store(args.store).find_run(args.experiment, args.run)
    assert run is not None and run.status == "done", f"{args.experiment}/{args.run} is not a done run"
    cfg, _, base = run_config(run)
    test = prepare_data(cfg.data, cfg.task, cfg.training.seed, base).test
    test = test[: args.n] if args.n else test
    tr = load_trained(run)
    if can_merge(tr.model):
        tr.model.unmerge_adapter()  # load_trained folds the adapter in; the variants choose
    first: list[str] | None = None
    out = {}
    for v in args.variants.split(","):
        merge = merged_for_inference(tr.model) if "merge" in v else contextlib.nullcontext()
        with shared_prefix("prefix" in v), virtual_head("peft-generate" not in v), prune_stopped("prune" in v), merge:
            t0 = time.perf_counter()
            if v == "usual":
                loss, preds = float("nan"), one_at_a_time(tr, test)
            else:
                loss, preds = tr.task.evaluate(tr.model, test, desc=v)
            dt = time.perf_counter() - t0
        texts = [p.output for p in preds]
        first = first or texts
        out[v] = {"variant": v, "seconds": round(dt, 2), "examples_per_second": round(len(test) / dt, 3),
                  "test_loss": round(loss, 5) if loss == loss else None,  # usual: no loss (NaN)
                  "same_outputs": texts == first,
                  "differing_outputs": sum(a != b for a, b in zip(texts, first, strict=True))}
        print(json.dumps(out[v]), flush=True)
    train_s = (run.cost or {})["train_seconds"]
    full_n = (run.info or {})["data"]["test"]
    summary = {"train_seconds": train_s, "test_examples": full_n, "measured_on": len(test),
               "eval_over_train": {v: round(r["seconds"] * full_n / len(test) / train_s, 3) for v, r in out.items()}}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "variants": out}, indent=1))
    return summary


if __name__ == "__main__":
    main()
