"""A rough, documented estimate of memory and time per method, shown before launch.

How it is computed (no model is loaded; shapes are read from the safetensors headers, or
from config.json when the weights are in another format):

- P = parameters of the base model, T = trainable parameters of the method: both counted on
  an empty (meta-device) copy of the model with the method applied to it, exactly as the run
  applies it (`Method.count_trainable`): the real counts, heads that train with every
  method included. Sequence lengths: the run's own encoding of up to 200 training rows.
- Memory, the peak of one run's process = weights (4 B x P; 0.55 B x P for a 4-bit base (qlora,
  quantize: 4bit)) + training state for the trainable parameters (gradient + 2 Adam moments =
  12 B x T) + the activations kept for the backward pass of the longest batch (batches are
  padded to their longest row, so the peak comes with the longest sequence S of the data, not the
  mean: batch x S x layers x 34 x hidden bytes at 16 bits, twice that in fp32 on a CPU; prompt
  methods lengthen S by their virtual tokens; + 5 x heads x S inside the brackets for a model
  configured with eager attention: SDPA, transformers' default, keeps no S x S attention matrix for
  the backward pass (on a CPU torch runs it as flash attention: 4-8 MB saved for a 16 x 8 heads x
  249 x 249 batch instead of 32 MB of scores) + an evaluation batch's working set
  (eval batch x S x (8 x hidden + heads x S) x 4 B, for two layers at once) + the framework (600 MB
  of process memory on CPU: torch, transformers and peft loaded; 400 MB of CUDA context on a GPU).
  Measured on a 2-core CPU: MiniLM / financial_phrasebank, within 1.3x under the measured peaks
  (issue 25's 29 runs); stories260k / E2E, within 1.35x over (tests/test_estimate_tuned.py).
- Time, from what this store has measured, best first:
  1. finished runs of the same model and task: training = the run's training tokens (steps x
     batch x sequence length, with any virtual tokens) at their measured training tokens per
     second (full fine-tuning and PEFT apart), evaluation = test examples at their measured
     examples per second, plus their measured start-up (wall time less training and
     evaluation); the range spans the fastest and the slowest of those runs;
  2. else other finished runs' throughput in FLOP/s, scaled by model size (training FLOPs =
     tokens x 6 P for full fine-tuning, 4 P for PEFT; evaluation = test examples x (prompt +
     new tokens) x 2 P), with a range of half to twice that;
  Every run also scores the validation split every `eval_every` steps (steps // eval_every
  passes, each at the evaluation rate), and a tuning trial is scored on the validation split,
  not the test split (`eval_examples`). Tuning trials count as measured runs too.
  A final run of a generative task that trains also measures forgetting (`evaluate.forgetting`):
  the median seconds the store's runs took for it, else a forward pass over the default
  reference set (its prompts and the base's 80-token continuations) at the evaluation rate. The
  set itself is made once per base model by the first run that needs it; that is not counted.
  3. else this machine's own rate (`train.throughput`): a matrix multiply of the model's width
     at the run's precision, timed here, times the share of it whole runs were measured to
     reach, with a range of half to twice that; plus 30 s per run to start its process and load.
  The total assumes the runs go one after another (the CLI; the service runs --concurrency at once).

Expect the right order of magnitude; the range says how sure the estimate is.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.data.prepare import PreparedData
from peftlab.models.loading import ResolvedModel
from peftlab.store import Store

STARTUP_SECONDS = 30.0  # measured: MiniLM runs spent 27-42 s outside training and evaluation (2-core EPYC)
# the same for a run in the process that asked for it (no worker start, the libraries imported
# already): measured 0.5-1.4 s, MiniLM on financial_phrasebank and stories260k, 2-core EPYC
INPROCESS_STARTUP_SECONDS = 2.0
FRAMEWORK_BYTES = {False: 600e6, True: 400e6}  # by cuda
BLOCK_RE = re.compile(r"(^|\.)(layers|layer|h|block|blocks)\.\d+\.")


def _safetensors_shapes(folder: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                shapes[k] = v["shape"]
    return shapes


def model_shape(path: str | None) -> dict[str, Any]:
    """Parameters, hidden size, layers and the block linear shapes of a local model folder."""
    out: dict[str, Any] = {"params": None, "hidden": None, "layers": None, "heads": None, "linears": [],
                           "source": "unknown"}
    if not path:
        return out
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    cfg: dict[str, Any] = {}
    if (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg = {**cfg.get("text_config", {}), **cfg}
    hidden = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("n_embd") or cfg.get("dim")
    layers = cfg.get("num_hidden_layers") or cfg.get("num_layers") or cfg.get("n_layer")
    if layers and cfg.get("num_decoder_layers"):
        layers += cfg["num_decoder_layers"]
    heads = cfg.get("num_attention_heads") or cfg.get("n_head") or cfg.get("num_heads")
    # transformers' default where the model supports it: SDPA, which keeps no attention matrix
    attention = cfg.get("attn_implementation") or cfg.get("_attn_implementation") or "sdpa"
    out.update(hidden=hidden, layers=layers, heads=heads, attention=attention)
    shapes = _safetensors_shapes(folder) if folder.is_dir() else {}
    if shapes:
        out["params"] = sum(math.prod(s) for s in shapes.values())
        out["linears"] = [(k, s) for k, s in shapes.items() if len(s) == 2 and BLOCK_RE.search(k)
                          and k.endswith("weight")]
        out["source"] = "safetensors headers"
    elif hidden and layers:
        vocab = cfg.get("vocab_size", 32000)
        inter = cfg.get("intermediate_size") or cfg.get("d_ff") or 4 * hidden
        per_layer = 4 * hidden * hidden + 3 * hidden * inter
        out["params"] = layers * per_layer + vocab * hidden
        out["linears"] = [(f"layers.{i}.{n}.weight", s) for i in range(layers)
                          for n, s in (("q", [hidden, hidden]), ("k", [hidden, hidden]), ("v", [hidden, hidden]),
                                       ("o", [hidden, hidden]), ("up", [inter, hidden]), ("gate", [inter, hidden]),
                                       ("down", [hidden, inter]))]
        out["source"] = "config.json (12 x layers x hidden^2 approximation)"
    elif p.is_file() and p.suffix == ".gguf":
        out["params"] = int(p.stat().st_size / 0.6)
        out["source"] = "GGUF file size (about 0.6 bytes per 4-bit parameter)"
    return out


def trainable_params(cfg: ExperimentConfig, rm: ResolvedModel, data: PreparedData, task: Any,
                     entry: MethodEntry) -> tuple[int | None, int | None]:
    """(trainable, base model) parameters of `entry` on this model and task: the method applied to an
    empty (meta-device) copy of the model, as preflight and the run apply it, and counted as the
    run counts them (classifier heads and poolers that train with every method included).
    None where that cannot be done without loading weights (the run will count them)."""
    from peftlab.methods.base import parameter_counts
    from peftlab.train.preflight import apply_to_empty_model

    try:
        method, model, base = apply_to_empty_model(cfg, rm, data, task, entry)
    except Exception:  # noqa: BLE001 - an estimate is best effort; preflight reports user errors
        return None, None
    return (parameter_counts(model)[0] if method.trains else 0), base


def _observed_flops(store: Store | None) -> float | None:
    """Effective FLOP/s measured by finished training runs in this store (median)."""
    from peftlab.methods import REGISTRY

    if store is None:
        return None
    rates = []
    for r in store.runs():
        c = r.cost or {}
        tps, total = c.get("train_tokens_per_second"), c.get("total_params")
        method = REGISTRY.get(r.method)
        if r.status == "done" and tps and total and method is not None and not method.is_full:
            rates.append(tps * 4 * total)
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2]


def _token_counts(task: Any, data: PreparedData, sample: int = 200) -> tuple[float, float, float]:
    """Mean (input, target) tokens per training example and the longest sequence (what a padded
    batch holds at its peak), counted with the run's own encoding (truncation included) on up to
    `sample` rows."""
    rows = data.train[:sample]
    if not rows or not task.spec.text_input:
        return 0.0, 0.0, 0.0
    before = task.truncated
    feats = [task.encode(e) for e in rows]
    task.truncated = before
    if task.spec.decoder_only:  # one sequence: prompt positions carry label -100
        tgt = [sum(1 for x in f["labels"] if x != -100) for f in feats]
        src = [len(f["input_ids"]) - t for f, t in zip(feats, tgt, strict=True)]
    else:
        src = [len(f["input_ids"]) for f in feats]
        tgt = [len(f["labels"]) if isinstance(f["labels"], list) else 0 for f in feats]
    longest = max(a + b for a, b in zip(src, tgt, strict=True))
    return sum(src) / len(src), sum(tgt) / len(tgt), float(longest)


@dataclass
class Measured:
    """What finished runs of the same model and task took (see the module)."""

    train_tps: list[float] = field(default_factory=list)  # PEFT runs' training tokens/s
    full_tps: list[float] = field(default_factory=list)  # full fine-tuning's
    eval_eps: list[float] = field(default_factory=list)  # test examples/s
    # seconds outside training and evaluation, apart for runs that train (a saved adapter, an
    # optimizer) and runs that only evaluate (zero-shot), whose fixed cost is a fraction of it
    overhead: list[float] = field(default_factory=list)
    overhead_eval_only: list[float] = field(default_factory=list)
    forgetting: list[float] = field(default_factory=list)  # seconds measuring it (runs that did)

    def fixed_seconds(self, trains: bool) -> float | None:
        xs = (self.overhead if trains else self.overhead_eval_only) or self.overhead or self.overhead_eval_only
        return _median(xs) if xs else None

    @property
    def runs(self) -> int:
        return len(self.eval_eps)


def measured(store: Store | None, cfg: ExperimentConfig) -> Measured:
    from peftlab.methods import REGISTRY

    out = Measured()
    if store is None:
        return out
    for e in store.experiments():
        if e["model"] != cfg.model.path or e["task"] != cfg.task:
            continue
        for r in store.runs(e["name"]):  # tuning trials too: the same model training the same way
            c, m = r.cost or {}, REGISTRY.get(r.method)
            if r.status != "done" or m is None:
                continue
            if m.trains and c.get("train_tokens_per_second"):
                (out.full_tps if m.is_full else out.train_tps).append(float(c["train_tokens_per_second"]))
            if c.get("eval_examples_per_second"):
                out.eval_eps.append(float(c["eval_examples_per_second"]))
            if m.trains and c.get("forgetting_seconds"):
                out.forgetting.append(float(c["forgetting_seconds"]))
            if r.started_at and r.finished_at and not c.get("resumed"):  # resumed: its start spans the outage
                fixed = (r.finished_at - r.started_at - (c.get("train_seconds") or 0) - (c.get("eval_seconds") or 0)
                         - (c.get("forgetting_seconds") or 0) - _validation_seconds(r))
                (out.overhead if m.trains else out.overhead_eval_only).append(max(0.0, fixed))
    return out


def _reference_tokens() -> float:
    """Tokens of the default forgetting reference set a run scores: each prompt (about 4
    characters a token, plus a chat template's few) and the base's continuation."""
    from peftlab.evaluate.reference import NEW_TOKENS, PROMPTS

    prompts = [ln for ln in PROMPTS.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return sum(len(x) / 4 + 8 + NEW_TOKENS for x in prompts)


def _validation_passes(steps: int, eval_every: int | None) -> int:
    return steps // eval_every if eval_every else 0


def _validation_seconds(r: Any) -> float:
    """The time a finished run spent scoring the validation split while it trained (counted in
    neither its training nor its evaluation time), from its passes at its evaluation rate."""
    eps = (r.cost or {}).get("eval_examples_per_second")
    training = (((r.config or {}).get("experiment") or {}).get("training") or {})
    passes = _validation_passes(int((r.resolved or {}).get("total_steps") or 0), training.get("eval_every"))
    n = (((r.info or {}).get("data") or {}).get("validation") or 0)
    return passes * n / eps if eps and passes and n else 0.0


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def _time(amount: float, rates: list[float]) -> tuple[float, float, float]:
    """(typical, fastest, slowest) seconds to do `amount` at the measured `rates`."""
    return amount / _median(rates), amount / max(rates), amount / min(rates)


def estimate(cfg: ExperimentConfig, rm: ResolvedModel, data: PreparedData, task: Any, *, cuda: bool,
             store: Store | None = None, eval_examples: int | None = None,
             startup: float = STARTUP_SECONDS, final: bool = True) -> dict[str, Any]:
    """Trainable parameters, memory and time of each of the experiment's methods (see the module).
    `eval_examples`: the examples a run is scored on at its end (default the test split's; a
    tuning trial's: the validation split's). `startup`: a run's seconds outside training and
    evaluation where the store has measured none (a worker process's; less in process). `final`:
    the runs are final runs (a tuning trial or a race's rung measures no forgetting)."""
    from peftlab.evaluate import forgetting
    from peftlab.methods import get_method

    shape = model_shape(rm.path if rm.local else None)
    seen = measured(store, cfg)
    observed = _observed_flops(store)
    steps = cfg.training.total_steps(len(data.train))
    batch_size = cfg.training.batch_size * cfg.training.gradient_accumulation_steps
    source_tokens, target_tokens, longest = _token_counts(task, data)
    seq = source_tokens + target_tokens
    scored = len(data.test) if eval_examples is None else eval_examples
    val_passes = _validation_passes(steps, cfg.training.eval_every)
    val_examples = val_passes * len(data.validation)  # scored while training, at the evaluation rate
    act_bytes = 2 if cuda else 4  # fp32 on a CPU; mixed precision on a GPU
    hidden, layers = shape["hidden"] or 512, shape["layers"] or 12
    heads = shape.get("heads") or max(1, hidden // 64)
    generative = task.spec.generative
    if observed:
        train_rate = eval_rate = observed
    else:
        from peftlab.device import resolve_precision
        from peftlab.train.throughput import machine_rates

        rows_per_batch = int(cfg.training.batch_size * max(1.0, seq))
        train_rate, eval_rate = machine_rates(rows_per_batch, hidden, resolve_precision(cfg.training.precision), cuda,
                                              cfg.training.threads, resolve_precision(cfg.evaluation.precision))
    P = shape["params"]
    ref_tokens = _reference_tokens() if final and forgetting.measured(cfg) else 0.0  # a final run's forgetting pass
    rows = []
    for entry in cfg.methods:
        method = get_method(entry.name)
        opts = method.parse_options(entry.options)
        T, total = trainable_params(cfg, rm, data, task, entry)
        P = total or P
        row: dict[str, Any] = {"name": entry.run_name, "method": entry.name, "trainable_params": T,
                               "memory_mb": None, "seconds": None}
        if P is None:
            rows.append(row)
            continue
        virt = getattr(opts, "num_virtual_tokens", 0) if method.virtual_tokens else 0
        weight_b = 0.55 * P if method.quantized(opts) else 4.0 * P
        S = (longest or seq) + virt
        kept = 0 if shape.get("attention", "sdpa") != "eager" else 5 * heads * S  # (the S x S scores per head)
        act = cfg.training.batch_size * S * layers * (34 * hidden + kept) * act_bytes / 2
        infer = 2 * cfg.evaluation.batch_size * S * (8 * hidden + heads * S) * 4
        state = 12.0 * (T or 0)
        mem = weight_b + (state + act if method.trains else 0.0) + infer + FRAMEWORK_BYTES[cuda]
        tokens = steps * batch_size * (seq + virt) if method.trains else 0
        train_flops = tokens * (6 if method.is_full else 4) * P
        new = cfg.evaluation.max_new_tokens if generative else 0
        passes = val_examples if method.trains else 0  # a run that trains nothing has no validation passes
        gen_flops = (scored + passes) * (source_tokens + virt + new) * 2 * P
        forgets = method.trains and ref_tokens > 0
        ref_flops = ref_tokens * 2 * P if forgets else 0.0
        tps = (seen.full_tps or [x * 2 / 3 for x in seen.train_tps]) if method.is_full else seen.train_tps
        if seen.runs and (tps or not method.trains):
            t = _time(tokens, tps) if method.trains else (0.0, 0.0, 0.0)
            ev = _time(scored + passes, seen.eval_eps)
            up = seen.fixed_seconds(method.trains)
            up = startup if up is None else up
            if forgets:
                up += _median(seen.forgetting) if seen.forgetting else ref_flops / eval_rate
            sec, low, high = (up + t[0] + ev[0], up + t[1] + ev[1], up + t[2] + ev[2])
            basis = f"measured on {seen.runs} finished runs of this model"
        else:
            sec = startup + train_flops / train_rate + (gen_flops + ref_flops) / eval_rate
            low, high = startup + (sec - startup) / 2, startup + (sec - startup) * 2
            basis = "throughput of other models' runs" if observed else "this machine's measured matmul rate"
        row.update(memory_mb=round(mem / 2**20), seconds=round(sec, 1), seconds_low=round(low, 1),
                   seconds_high=round(high, 1), basis=basis, steps=steps if method.trains else 0)
        rows.append(row)
    timed = [r for r in rows if r.get("seconds") is not None]
    total = {k: round(sum(r[k] for r in timed), 1) for k in ("seconds", "seconds_low", "seconds_high")} if timed else {}
    return {"base_params": P, "shape_source": shape["source"], "steps": steps, "sequence_tokens": round(seq, 1),
            "total": {**total, "runs": len(rows), "note": "one after another (peftlab run; the service runs "
                      "--concurrency at once)"},
            "flops_per_second": train_rate, "throughput_source": "measured on this store's finished runs" if observed
            else f"this machine's matmul rate, timed now ({'GPU' if cuda else 'CPU'})", "methods": rows,
            "how": (__doc__ or "").split("How it is computed", 1)[-1].strip()}
