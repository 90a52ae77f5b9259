"""Speed: peftlab's default path against the usual recipe, measured in one run.

    python benchmarks/speed.py --quick    # main case shrunk, < 3 min; last line: one JSON object
    python benchmarks/speed.py --quick --precision fp32,bf16   # peftlab's path in each precision, one run
    python benchmarks/speed.py --tiny     # a 260k-parameter model: checks it runs (the test suite), no figures
    python benchmarks/speed.py            # every case, the lever ablation; writes benchmarks/RESULTS.md

`--precision` forces peftlab's `training.precision` (default `auto`: bf16 where the CPU has native
bf16, AVX512-BF16 or AMX, else fp32); with several, the usual recipe (always fp32) is measured once
and peftlab's path once per precision. The JSON line and RESULTS name the CPU model and its flags.

For each case (LoRA r=16: SmolLM2-135M-Instruct on statista, MiniLM on financial_phrasebank,
a small T5 on statista) the same examples go through
- peftlab's default path: `peftlab run` on a one-method experiment (a worker process per run);
- the usual recipe (`recipes.py usual`): the transformers Trainer with every example padded
  to 512, fp32, batch 16, the model's own loss over every logit, `generate` one example at a time.
Useful tokens are real (non-padding) tokens. MFU is model FLOPs per second (FLOPs counted by
torch's FlopCounterMode on peftlab's training step, per useful token) over the dense matmul
peak measured here at the start of the run, in the dtype training used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cases import (  # noqa: E402
    CUDA_TRAIN_SCALE,
    USUAL_BATCH_SIZE,
    USUAL_LORA_DROPOUT,
    USUAL_MAX_LENGTH,
    USUAL_MICRO_BATCH,
    cases,
)


def matmul_peak(dtype_name: str, n: int | None = None, reps: int = 5) -> float:
    """Median FLOP/s of an n x n x n matmul in `dtype_name` (after two warm-up calls).
    n is 2048 on CPU; 8192 on CUDA, where a smaller product is too short to reach the peak."""
    import torch

    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype_name])
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n = n or (8192 if dev == "cuda" else 2048)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    times = []
    for i in range(reps + 2):
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if dev == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def _child(mode: str, exp: Path, work: Path, inprocess: bool = False) -> dict[str, Any]:
    """One measurement of `recipes.py` in a child process (its peak memory its own); `inprocess`
    (tiny mode): in this one, which spares the seconds of importing torch and transformers again."""
    out = work / f"{exp.stem}-{mode}.json"
    if out.is_file():  # `--work` of an interrupted run, or another precision of this case: what it measured stands
        return json.loads(out.read_text())
    t0 = time.perf_counter()
    if inprocess:
        from recipes import measure

        out.write_text(json.dumps(measure(mode, exp)))
    else:
        subprocess.run([sys.executable, str(HERE / "recipes.py"), mode, str(exp), str(out)], check=True)
    result = json.loads(out.read_text())
    result["wall_seconds"] = time.perf_counter() - t0
    return result


def _peftlab(exp: Path, store_dir: Path, inprocess: bool = False) -> dict[str, Any]:
    """`peftlab run` on `exp` (its worker process per run); `inprocess` (tiny mode): the same
    recipe through the library, in this process."""
    from peftlab.store import Store

    # a fresh store per benchmark; with `--work` of an interrupted run, runs already done are kept
    if inprocess:
        from peftlab.train.runner import plan, run_experiment

        run_experiment(plan(exp), Store(store_dir), isolation="inprocess", echo=lambda *_: None)
    else:
        subprocess.run([sys.executable, "-m", "peftlab", "--store", str(store_dir), "run", str(exp)], check=True)
    cfg = yaml.safe_load(exp.read_text())
    run = Store(store_dir).find_run(cfg["name"], cfg["methods"][0]["name"])
    assert run is not None and run.status == "done", f"peftlab run did not finish: {run and run.error}"
    c, m = run.cost or {}, run.metrics or {}
    main = (run.info or {})["main_metric"]
    return {
        "train_seconds": c["train_seconds"], "train_tokens": c["train_tokens"],
        "train_examples": (run.info or {})["data"]["train"], "peak_memory_mb": c["train_peak_memory_mb"],
        "predict_seconds": c.get("predict_seconds", c["eval_seconds"]), "eval_seconds": c["eval_seconds"],
        "test_examples": (run.info or {})["data"]["test"], "metric": m[main], "main_metric": main,
        "precision": (run.resolved or {}).get("precision", "fp32"),
        # what the time was measured under (recorded by the run itself; absent on runs before it was)
        "train_cpu_seconds": c.get("train_cpu_seconds"), "load_avg": c.get("load_avg"),
    }


def rates(r: dict[str, Any]) -> dict[str, float]:
    return {
        "tokens_per_second": r["train_tokens"] / r["train_seconds"],
        "samples_per_second": r["train_examples"] / r["train_seconds"],
        "eval_examples_per_second": r["test_examples"] / r["predict_seconds"],
    }


def run_case(case: dict[str, Any], work: Path, peaks: dict[str, float], noise: bool, ablate: bool,
             precision: str = "auto", inprocess: bool = False) -> dict[str, Any]:
    """One case: the usual recipe and the FLOP count (shared by every precision: written once, then
    read back by `_child`), and peftlab's path with `training.precision` forced to `precision`."""
    exp = work / f"{case['name']}.yaml"
    exp.write_text(yaml.safe_dump(case, sort_keys=False))
    case = dict(case, name=f"{case['name']}-{precision}", training={**case["training"], "precision": precision})
    pexp = work / f"{case['name']}.yaml"
    pexp.write_text(yaml.safe_dump(case, sort_keys=False))
    ours = _peftlab(pexp, work / "store", inprocess)
    usual = _child("usual", exp, work, inprocess)
    fl = _child("flops", exp, work, inprocess)
    out: dict[str, Any] = {"case": case["name"], "base_case": exp.stem, "task": case["task"], "model": case["model"],
                           "requested_precision": precision,
                           "ours": {**ours, **rates(ours)}, "usual": {**usual, **rates(usual)}, "flops": fl}
    peak = peaks[ours["precision"]]
    for k in ("ours", "usual"):
        out[k]["mfu"] = fl["flops_per_token"] * out[k]["tokens_per_second"] / peak
        out[k]["model_gflops"] = fl["flops_per_token"] * out[k]["tokens_per_second"] / 1e9
    out["train_speedup"] = out["ours"]["tokens_per_second"] / out["usual"]["tokens_per_second"]
    out["eval_speedup"] = out["ours"]["eval_examples_per_second"] / out["usual"]["eval_examples_per_second"]
    out["quality_delta"] = ours["metric"] - usual["metric"]
    out["memory_ratio"] = ours["peak_memory_mb"] / usual["peak_memory_mb"]
    if noise:  # the same peftlab path with another seed: run-to-run noise of the metric
        other = dict(case, name=case["name"] + "-seed2", training={**case["training"], "seed": 7})
        exp2 = work / f"{other['name']}.yaml"
        exp2.write_text(yaml.safe_dump(other, sort_keys=False))
        out["ours_seed2"] = _peftlab(exp2, work / "store")
        out["noise"] = abs(out["ours_seed2"]["metric"] - ours["metric"])
    if ablate:
        out["ablation"] = _child("ablation", pexp, work, inprocess)
    return out


def machine(peaks: dict[str, float]) -> dict[str, Any]:
    import torch

    from peftlab.device import describe

    d = describe()
    return {**d, "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()}, "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def _f(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def markdown(results: list[dict[str, Any]], mach: dict[str, Any], wall: float) -> str:
    cuda = mach["device"] == "cuda"
    mem = "max allocated on the GPU" if cuda else "RSS"
    lines = [
        "# Speed: peftlab's default path vs the usual recipe",
        "",
        "Written by `python benchmarks/speed.py` (full mode); every figure below was measured in that one run.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in mach.items()),
        f"- benchmark wall time: {wall / 60:.1f} min",
        "",
        "## Recipes",
        "",
        f"- **usual**: transformers `Trainer`, every example padded to {USUAL_MAX_LENGTH} tokens (seq2seq targets to "
        f"128), fp32, batch {USUAL_BATCH_SIZE} "
        + ("in one pass" if cuda else f"({USUAL_MICRO_BATCH} x {USUAL_BATCH_SIZE // USUAL_MICRO_BATCH} gradient "
           "accumulation: 16 x 512 in one pass was OOM-killed at 24 GB)")
        + ", random batches, the model's own loss over every logit; "
        "`generate` one example at a time (classification: the Trainer's batches of 16, padded to 512).",
        "- **peftlab**: `peftlab run` with its defaults: dynamic padding with length-grouped batches, logits on the "
        "completion only (causal-lm), precision `auto` (bf16 autocast only where the hardware has native bf16; "
        "`--precision` forces one, and each table's heading names the one peftlab ran in), "
        "batched generation with left padding, KV cache and prompts sorted by length, stopping each batch once "
        "every sequence has ended.",
        "- Both get the same examples, the same token ids (peftlab's prompt template, EOS, completion-only labels), "
        "the same LoRA adapter (r=16, alpha 32, peftlab's target modules: every linear layer), learning rate, "
        "schedule and batch size, so the quality delta isolates the speed levers. One of those levers is in the "
        f"adapter: the usual notebooks' LoRA dropout {USUAL_LORA_DROPOUT} against peftlab's default 0.",
        *([f"- On CUDA every case trains on {CUDA_TRAIN_SCALE}x the CPU's training rows: a few steps on a GPU "
           "time its start-up, not its training."] if cuda else []),
        "- MFU = (model FLOPs per useful token x useful tokens/s) / dense matmul peak measured at the start of the "
        "run. FLOPs per token are counted by `torch.utils.flop_counter.FlopCounterMode` on peftlab's training step "
        "(forward + backward, frozen weights get no weight gradient) over single unpadded examples.",
        "",
        "## Results",
        "",
    ]
    for r in results:
        o, u = r["ours"], r["usual"]
        lines += [
            f"### {r['case']} ({r['task']}, {r['model']}; peftlab in {o['precision']})",
            "",
            f"{o['train_examples']} training examples, {o['test_examples']} test examples, "
            f"{_f(r['flops']['flops_per_token'] / 1e6)} MFLOP per useful token.",
            "",
            "| figure | usual | peftlab | ratio |",
            "|---|---|---|---|",
            f"| train useful tokens/s | {_f(u['tokens_per_second'])} | {_f(o['tokens_per_second'])} | "
            f"**{r['train_speedup']:.2f}x** |",
            f"| train samples/s | {_f(u['samples_per_second'], 2)} | {_f(o['samples_per_second'], 2)} | "
            f"{o['samples_per_second'] / u['samples_per_second']:.2f}x |",
            f"| train seconds | {_f(u['train_seconds'])} | {_f(o['train_seconds'])} | |",
            f"| peak memory MB ({mem}, training) | {_f(u['peak_memory_mb'], 0)} | {_f(o['peak_memory_mb'], 0)} | "
            f"{r['memory_ratio']:.2f}x |",
            f"| model GFLOP/s | {_f(u['model_gflops'])} | {_f(o['model_gflops'])} | |",
            f"| MFU | {100 * u['mfu']:.1f}% | {100 * o['mfu']:.1f}% | |",
            f"| eval examples/s (usual: generation alone; peftlab: test loss + generation; metric scoring "
            "excluded on both sides) | "
            f"{_f(u['eval_examples_per_second'], 2)} | "
            f"{_f(o['eval_examples_per_second'], 2)} | **{r['eval_speedup']:.2f}x** |",
            f"| test {o['main_metric']} | {_f(u['metric'], 2)} | {_f(o['metric'], 2)} | "
            f"delta {r['quality_delta']:+.2f} |",
            "",
        ]
        if "noise" in r:
            lines += [f"Run-to-run noise: the peftlab path with another seed gave {o['main_metric']} "
                      f"{_f(r['ours_seed2']['metric'], 2)} (|difference| {r['noise']:.2f}).", ""]
        lines += [f"peftlab's whole evaluation (test loss + generation + metric scoring) took "
                  f"{_f(o['eval_seconds'])} s, "
                  f"{o['eval_seconds'] / o['train_seconds']:.2f} of its training time.", ""]
        if "ablation" in r:
            a = r["ablation"]
            lines += [f"**Levers** ({a['examples']} examples, batches of {a['batch_size']}, "
                      "one optimizer step per batch, the same process and adapter):", "",
                      "| variant | useful tokens/s | padding share | vs usual |", "|---|---|---|---|"]
            base = a["variants"][0]
            for v in a["variants"]:
                lines.append(f"| {v['variant']} | {_f(v['useful_tokens_per_second'])} | "
                             f"{100 * v['padding_share']:.0f}% | "
                             f"{v['useful_tokens_per_second'] / base['useful_tokens_per_second']:.2f}x |")
            lines.append("")
    return "\n".join(lines) + "\n"


def summary(r: dict[str, Any], peaks: dict[str, float]) -> dict[str, Any]:
    """The JSON line's figures for one case result."""
    return {
        "precision": r["ours"]["precision"],
        "train_speedup": round(r["train_speedup"], 3),
        "eval_speedup": round(r["eval_speedup"], 3),
        "mfu": round(r["ours"]["mfu"], 4),
        "quality_delta": round(r["quality_delta"], 3),
        "usual_mfu": round(r["usual"]["mfu"], 4),
        "memory_ratio": round(r["memory_ratio"], 3),
        "peak_gflops": round(peaks[r["ours"]["precision"]] / 1e9, 1),
        "train_seconds": round(r["ours"]["train_seconds"], 2),
        "usual_train_seconds": round(r["usual"]["train_seconds"], 2),
        "train_cpu_seconds": r["ours"].get("train_cpu_seconds"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the main case only, shrunk: under 3 minutes")
    ap.add_argument("--tiny", action="store_true",
                    help="a 260k-parameter model on a few rows: checks the benchmark runs (seconds), measures nothing")
    ap.add_argument("--precision", default="auto",
                    help="peftlab's training.precision, forced: auto, fp32, bf16 or fp16, or several "
                         "comma-separated (fp32,bf16: both, the usual recipe measured once). Default: auto")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="full mode: where to write the tables")
    ap.add_argument("--json", type=Path, help="also write the JSON line's object here")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not precisions or any(p not in ("auto", "fp32", "bf16", "fp16") for p in precisions):
        ap.error(f"--precision: auto, fp32, bf16 or fp16 (comma-separated), not {args.precision!r}")
    quick = args.quick or args.tiny
    from tiny import use_shared

    use_shared()  # the cases' model and data names resolve in ../shared from any current folder
    if quick:
        os.environ["PEFTLAB_BENCH_QUICK"] = "1"
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    import torch

    from peftlab.device import cpu_model, resolve_precision
    from peftlab.paths import search_dirs

    resolved = {p: resolve_precision(p) for p in precisions}
    # tiny: a small matmul, the peak is only the MFU's denominator there
    peaks = {p: matmul_peak(p, n=256 if args.tiny else None) for p in sorted({"fp32", *resolved.values()})}
    print(f"dense matmul peak: {', '.join(f'{k} {v / 1e9:.1f} GFLOP/s' for k, v in peaks.items())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="peftlab-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        models = next((d for d in search_dirs("models") if (d / "all-minilm-l6-v2").is_dir()), Path("."))
        results = []
        for i, case in enumerate(cases(quick, work, models, cuda=torch.cuda.is_available(), tiny=args.tiny)):
            for p in precisions:
                print(f"== case {case['name']}, peftlab in {resolved[p]}", flush=True)
                results.append(run_case(case, work, peaks, noise=not quick and i == 0 and p == precisions[0],
                                        ablate=args.tiny or (not quick and case["task"] == "causal-lm"),
                                        precision=p, inprocess=args.tiny))
    wall = time.perf_counter() - t0
    mach = machine(peaks)
    md = markdown(results, mach, wall)
    if not quick:
        args.out.write_text(md)
        (args.out.with_suffix(".json")).write_text(json.dumps({"machine": mach, "results": results}, indent=1))
    print(md)
    cpu, flags = cpu_model()
    main_results = [r for r in results if r["base_case"] == results[0]["base_case"]]
    line = {
        **summary(results[0], peaks),  # the main case in the first precision asked for
        "by_precision": {r["ours"]["precision"]: summary(r, peaks) for r in main_results},
        "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "device": mach["device"], "gpu": mach.get("gpu"), "cpu": cpu, "cpu_flags": flags,
        "native_bf16": mach.get("cpu_native_bf16"), "threads": mach["threads"], "cpus": mach["cpus"],
        "load_average": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],  # 1-minute, at start and end
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "wall_seconds": round(wall, 1),
    }
    if args.json:
        args.json.write_text(json.dumps(line, indent=1))
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
