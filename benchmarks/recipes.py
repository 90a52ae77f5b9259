"""What the benchmark runs in a child process (one per measurement, so each peak memory is
its own): the usual recipe, the FLOP count of peftlab's training step, and the lever ablation.

    python benchmarks/recipes.py usual|flops|ablation EXPERIMENT.yaml OUT.json

Every mode builds the model, the LoRA adapter and the token ids with peftlab's own code
(same examples, same chat template, same completion-only labels, same adapter config), so
the two recipes differ only in what the speed levers change: padding, batching, which
logits are computed, and how generation is batched.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import (  # noqa: E402
    USUAL_LORA_DROPOUT,
    USUAL_MAX_LENGTH,
    USUAL_MICRO_BATCH,
    USUAL_SEQ2SEQ_TARGET_LENGTH,
)

from peftlab.config.load import load_experiment  # noqa: E402
from peftlab.data.prepare import prepare_data  # noqa: E402
from peftlab.device import autocast, resolve_precision  # noqa: E402
from peftlab.methods import MethodContext, get_method  # noqa: E402
from peftlab.models import load_model, load_tokenizer, resolve_model  # noqa: E402
from peftlab.tasks.base import Prediction  # noqa: E402
from peftlab.tasks.build import build_task  # noqa: E402
from peftlab.tasks.causal_lm import stop_ids  # noqa: E402
from peftlab.train.cost import PeakMemory  # noqa: E402


class Setup:
    """The experiment's data, task, model and adapter, built the way peftlab's recipe does."""

    def __init__(self, path: Path, lora_dropout: float | None = None) -> None:
        self.cfg = cfg = load_experiment(path).cfg
        self.entry = cfg.methods[0]
        torch.manual_seed(cfg.training.seed)
        self.data = prepare_data(cfg.data, cfg.task, cfg.training.seed, path.parent)
        rm = resolve_model(cfg.model, path.parent)
        self.tok = load_tokenizer(rm, cfg.model, cfg.task)
        self.task = build_task(cfg, self.tok, None, self.data.labels, "fp32")  # the usual recipe trains in fp32
        model = load_model(rm, cfg.model, cfg.task, self.data.labels)
        self.task.prepare_model(model)
        self.method = get_method(self.entry.name)
        n_steps = math.ceil(len(self.data.train) / cfg.training.batch_size)
        ctx = MethodContext(task=cfg.task, model_type=model.config.model_type, total_steps=n_steps,
                            tokenizer_path=rm.path, prompt_text=self.data.prompt_text, precision="fp32")
        ctx.head_modules = self.task.head_modules(model)
        options = dict(self.entry.options)
        if lora_dropout is not None and "dropout" in self.method.options.model_fields:
            options["dropout"] = lora_dropout
        self.model = self.method.apply(model, self.method.parse_options(options), ctx)
        self.lr = self.entry.learning_rate or cfg.training.learning_rate or self.method.learning_rate(cfg.task)
        self.total_steps = n_steps
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def usual_micro_batch(batch_size: int) -> int:
    """On CPU, 16 x 512 in one pass was OOM-killed (see cases.py): the usual users accumulate.
    A GPU holds it, so there the usual recipe takes the whole batch in one pass."""
    return batch_size if torch.cuda.is_available() else min(batch_size, USUAL_MICRO_BATCH)


def pad_usual(task_name: str, f: dict[str, Any], pad: int) -> dict[str, Any]:
    """Pad one encoded example to the fixed max length, as `padding="max_length"` does."""
    ids = f["input_ids"][:USUAL_MAX_LENGTH]
    n = USUAL_MAX_LENGTH - len(ids)
    out = {"input_ids": ids + [pad] * n, "attention_mask": [1] * len(ids) + [0] * n}
    if task_name == "causal-lm":
        out["labels"] = f["labels"][:USUAL_MAX_LENGTH] + [-100] * n
    elif task_name == "seq2seq":
        lab = f["labels"][:USUAL_SEQ2SEQ_TARGET_LENGTH]
        out["labels"] = lab + [-100] * (USUAL_SEQ2SEQ_TARGET_LENGTH - len(lab))
    else:
        out["labels"] = f["labels"]
    return out


def usual(s: Setup) -> dict[str, Any]:
    """transformers Trainer, every example padded to 512, fp32, the model's own loss over all
    logits, random batches; generation one example at a time."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    t = s.cfg.training
    with PeakMemory() as mem:
        feats = [s.task.encode(e) for e in s.data.train]
        padded = [pad_usual(s.cfg.task, f, s.tok.pad_token_id) for f in feats]
        args = TrainingArguments(
            output_dir="/tmp/peftlab-bench-usual", per_device_train_batch_size=usual_micro_batch(t.batch_size),
            gradient_accumulation_steps=max(1, t.batch_size // usual_micro_batch(t.batch_size)),
            learning_rate=s.lr, weight_decay=t.weight_decay, warmup_steps=int(t.warmup_ratio * s.total_steps),
            lr_scheduler_type=t.lr_scheduler, num_train_epochs=1, seed=t.seed, report_to="none",
            save_strategy="no", use_cpu=s.device.type == "cpu", logging_steps=1, remove_unused_columns=False,
        )
        trainer = Trainer(model=s.model, args=args, train_dataset=padded, data_collator=default_data_collator)
        t0 = time.perf_counter()
        out = trainer.train()
        train_seconds = time.perf_counter() - t0
        peak = mem.peak_mb
    tokens = sum(len(f["input_ids"][:USUAL_MAX_LENGTH]) for f in feats)
    s.model.eval()
    t0 = time.perf_counter()
    preds = _predict_usual(s)
    predict_seconds = time.perf_counter() - t0
    metrics = s.task.score(s.data.test, preds)
    return {
        "train_seconds": train_seconds, "train_tokens": tokens, "train_examples": len(feats),
        "train_loss": out.training_loss, "peak_memory_mb": peak,
        "predict_seconds": predict_seconds, "test_examples": len(s.data.test),
        "metric": metrics[s.task.main_metric], "main_metric": s.task.main_metric,
    }


def _predict_usual(s: Setup) -> list[Prediction]:
    task, tok, model, ecfg = s.task, s.tok, s.model, s.cfg.evaluation
    preds = []
    with torch.inference_mode():
        if s.cfg.task == "classification":  # the Trainer's predict loop: batches padded to 512
            for i in range(0, len(s.data.test), 16):
                exs = s.data.test[i : i + 16]
                rows = [pad_usual("classification", task.encode_eval(e), tok.pad_token_id) for e in exs]
                logits = model(input_ids=torch.tensor([r["input_ids"] for r in rows], device=s.device),
                               attention_mask=torch.tensor([r["attention_mask"] for r in rows], device=s.device)).logits
                for e, k in zip(exs, logits.argmax(-1).tolist(), strict=True):
                    preds.append(Prediction(e.source, task.labels[e.label or 0], task.labels[k], extra={"pred_id": k}))
            return preds
        decoder_only = s.cfg.task == "causal-lm"
        stop = stop_ids(tok) if decoder_only else [tok.eos_token_id]
        for e in s.data.test:  # one example at a time
            ids = task.prompt(e.source) if decoder_only else task.source_ids(e.source)[0]
            x = torch.tensor([ids], device=s.device)
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=ecfg.max_new_tokens,
                                 do_sample=False, num_beams=ecfg.num_beams, eos_token_id=stop,
                                 pad_token_id=tok.pad_token_id)
            new = out[0, len(ids):].tolist() if decoder_only else out[0, 1:].tolist()
            cut = next((k for k, tk in enumerate(new) if tk in stop), None)
            text = tok.decode(new[:cut] if cut is not None else new, skip_special_tokens=True).strip()
            preds.append(Prediction(e.source, e.target or "", text, cut is not None))
    return preds


def flops(s: Setup, n: int = 4 if os.environ.get("PEFTLAB_BENCH_QUICK") else 16) -> dict[str, Any]:
    """Model FLOPs of peftlab's training step per useful token, counted by torch's
    FlopCounterMode (matmuls and attention; forward and backward, no recomputation) on
    single unpadded examples, so padding never counts as useful work."""
    from torch.utils.flop_counter import FlopCounterMode

    feats = [s.task.encode(e) for e in s.data.train[:n]]
    total, tokens = 0, 0
    s.model.train()
    for f in feats:
        batch = s.task.collate([f])
        with FlopCounterMode(display=False) as fc:
            s.task.loss(s.model, batch).backward()
        s.model.zero_grad(set_to_none=True)
        total += fc.get_total_flops()
        tokens += int(batch["attention_mask"].sum())
    return {"flops_per_token": total / tokens, "examples": len(feats), "tokens": tokens}


def ablation(s: Setup, n: int = 8, batch: int = 4) -> dict[str, Any]:
    """Training throughput on the same n examples with the levers switched on one by one."""
    from peftlab.tasks.causal_lm import CausalLMTask

    task = s.task
    assert isinstance(task, CausalLMTask)
    dev = s.device
    s.model.to(dev)
    feats = [task.encode(e) for e in s.data.train[:n]]
    tokens = sum(len(f["input_ids"]) for f in feats)
    opt = torch.optim.AdamW([p for p in s.model.parameters() if p.requires_grad], lr=s.lr)
    s.model.train()

    def pad512(fs: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [pad_usual("causal-lm", f, s.tok.pad_token_id) for f in fs]
        return {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}

    def on_dev(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in b.items()}

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def own_loss(b: dict[str, Any]) -> torch.Tensor:
        return s.model(**b).loss

    def completion(b: dict[str, Any]) -> torch.Tensor:
        return task.loss(s.model, b)

    task.loss(s.model, on_dev(task.collate(feats[:2]))).backward()  # warm-up: first-call allocations
    s.model.zero_grad(set_to_none=True)
    by_len = sorted(feats, key=lambda f: len(f["input_ids"]))
    variants = [
        ("usual: padded to 512, all logits, LoRA dropout 0.05", feats, pad512, own_loss),
        ("dynamic padding, random batches", feats, task.collate, own_loss),
        ("+ length-grouped batches", by_len, task.collate, own_loss),
        ("+ logits on the completion only", by_len, task.collate, completion),
        ("+ LoRA dropout 0", by_len, task.collate, completion),
    ]
    # the experiment's precision (speed.py --precision forces it); auto: bf16 only where the hardware has it natively
    precision = resolve_precision(s.cfg.training.precision)
    if precision != "fp32":
        variants.append((f"+ {precision} autocast", by_len, task.collate, completion))
    last = variants[-1]
    variants[-1] = (last[0] + " (= peftlab's default path)", *last[1:])
    out = []
    for name, order, collate, loss_fn in variants:
        if "dropout 0 " in name:
            for mod in s.model.modules():
                if isinstance(getattr(mod, "lora_dropout", None), torch.nn.ModuleDict):
                    for key in mod.lora_dropout:
                        mod.lora_dropout[key] = torch.nn.Identity()
        batches = [on_dev(collate(order[i : i + batch])) for i in range(0, n, batch)]
        processed = sum(int(b["input_ids"].numel()) for b in batches)
        sync()
        t0 = time.perf_counter()
        with autocast(precision if "autocast" in name else "fp32"):
            for b in batches:
                loss_fn(b).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        sync()
        dt = time.perf_counter() - t0
        out.append({"variant": name, "seconds": dt, "useful_tokens_per_second": tokens / dt,
                    "padding_share": 1 - tokens / processed})
        print(json.dumps(out[-1]), flush=True)
    return {"examples": n, "batch_size": batch, "tokens": tokens, "variants": out}


def measure(mode: str, exp: Path) -> dict[str, Any]:
    """One measurement (`usual`, `flops` or `ablation`) on the experiment file `exp`."""
    # the usual recipe (and the ablation, which starts from it) uses the usual notebooks' LoRA dropout
    s = Setup(exp, lora_dropout=USUAL_LORA_DROPOUT if mode in ("usual", "ablation") else None)
    result = {"usual": usual, "flops": flops, "ablation": ablation}[mode](s)
    result["threads"] = torch.get_num_threads()
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="One measurement of benchmarks/speed.py in this process (speed.py "
                                 "runs each in a child process, so each peak memory is its own).")
    ap.add_argument("mode", choices=["usual", "flops", "ablation"], help="what to measure")
    ap.add_argument("experiment", type=Path, help="the experiment file (YAML)")
    ap.add_argument("out", type=Path, help="JSON file to write the result to")
    args = ap.parse_args(argv)
    args.out.write_text(json.dumps(measure(args.mode, args.experiment), indent=1))


if __name__ == "__main__":
    main()
