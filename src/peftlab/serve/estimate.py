"""A rough, documented estimate of memory and time per method, shown before launch.

How it is computed (no model is loaded; shapes are read from the safetensors headers, or
from config.json when the weights are in another format):

- P = parameters of the base model. T = trainable parameters of the method:
  full = P; lora/dora/qlora = r x (in + out) for every 2-D weight inside the transformer
  blocks; adalora = the same with init_r; ia3 = out features of k/v projections + in
  features of the down projection (its default targets); prompt-tuning / p-tuning =
  virtual tokens x hidden (+ the p-tuning encoder MLP); prefix-tuning = virtual tokens x
  layers x 2 x hidden (key and value per layer); zero-shot = 0.
- Memory (fp32) = weights (4 B x P; 0.55 B x P for the 4-bit qlora base) + training state
  for the trainable parameters (gradient + 2 Adam moments = 12 B x T) + activations
  (batch x sequence length x hidden x layers x 34 B; prompt methods lengthen the sequence
  by their virtual tokens) + the framework (600 MB of process memory on CPU: torch,
  transformers and peft loaded; 400 MB of CUDA context on a GPU).
- Time = training FLOPs / throughput + evaluation FLOPs / throughput, where training FLOPs
  = steps x batch x sequence length x (6 P for full fine-tuning, 4 P for the others: no
  weight gradients for the frozen base) and evaluation = test examples x (prompt tokens +
  new tokens) x 2 P. Throughput is taken from finished runs on this store (their measured
  training tokens per second, scaled by model size) when there are any, else assumed:
  20 GFLOP/s on CPU, 20 TFLOP/s on a GPU. Plus 15 s per run to start its process and load.

Expect the right order of magnitude, not the exact figure.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from peftlab.store import Store

CPU_FLOPS = 20e9
GPU_FLOPS = 20e12
STARTUP_SECONDS = 15.0
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
    out: dict[str, Any] = {"params": None, "hidden": None, "layers": None, "linears": [], "source": "unknown"}
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
    out.update(hidden=hidden, layers=layers)
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


def trainable(method: str, options: dict[str, Any], shape: dict[str, Any]) -> int | None:
    P, hidden, layers, linears = shape["params"], shape["hidden"], shape["layers"], shape["linears"]
    if method == "zero-shot":
        return 0
    if method == "full":
        return P
    if method in ("lora", "dora", "qlora", "adalora"):
        r = options.get("init_r", 12) if method == "adalora" else options.get("r", 16)
        t = sum(r * (s[0] + s[1]) for _, s in linears)
        if method == "dora":
            t += sum(s[0] for _, s in linears)
        return t or None
    if method == "ia3":
        t = sum(s[0] for k, s in linears if re.search(r"(k_proj|v_proj|key|value|\.k\.|\.v\.|wk|wv)", k))
        t += sum(s[1] for k, s in linears if re.search(r"(down_proj|fc2|\.wo\.|dense_4h_to_h|w2)", k))
        return t or None
    n = options.get("num_virtual_tokens", 20)
    if not hidden:
        return None
    if method == "prompt-tuning":
        return n * hidden
    if method == "p-tuning":
        e = options.get("encoder_hidden_size", 128)
        return n * hidden + hidden * e + e * e + e * hidden
    if method == "prefix-tuning":
        return n * (layers or 1) * 2 * hidden
    return None


def _observed_flops(store: Store | None) -> float | None:
    """Effective FLOP/s measured by finished training runs in this store (median)."""
    if store is None:
        return None
    rates = []
    for r in store.runs():
        c = r.cost or {}
        tps, total = c.get("train_tokens_per_second"), c.get("total_params")
        if r.status == "done" and tps and total and r.method != "full":
            rates.append(tps * 4 * total)
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2]


def estimate(model_path: str | None, methods: list[dict[str, Any]], *, task: str, max_steps: int | None,
             epochs: float, n_train: int, n_test: int, batch_size: int, source_tokens: float, target_tokens: float,
             max_new_tokens: int, cuda: bool, store: Store | None = None) -> dict[str, Any]:
    shape = model_shape(model_path)
    P = shape["params"]
    observed = _observed_flops(store)
    flops = observed or (GPU_FLOPS if cuda else CPU_FLOPS)
    steps = max_steps or max(1, math.ceil(epochs * math.ceil(max(n_train, 1) / batch_size)))
    seq = source_tokens + target_tokens
    rows = []
    for m in methods:
        name, opts = m["name"], m.get("options") or {}
        T = trainable(name, opts, shape)
        row: dict[str, Any] = {"name": m.get("label") or name, "method": name, "trainable_params": T,
                               "memory_mb": None, "seconds": None}
        if P is None:
            rows.append(row)
            continue
        virt = opts.get("num_virtual_tokens", 20) if name in ("prompt-tuning", "p-tuning", "prefix-tuning") else 0
        weight_b = 0.55 * P if name == "qlora" else 4.0 * P
        act = batch_size * (seq + virt) * (shape["hidden"] or 512) * (shape["layers"] or 12) * 34
        state = 12.0 * (T or 0)
        trains = name != "zero-shot"
        mem = weight_b + (state + act if trains else act / 4) + FRAMEWORK_BYTES[cuda]
        train_flops = steps * batch_size * (seq + virt) * (6 if name == "full" else 4) * P if trains else 0
        gen_flops = n_test * (source_tokens + virt + max_new_tokens) * 2 * P if task in ("causal-lm", "seq2seq") \
            else n_test * (source_tokens + virt) * 2 * P
        row.update(memory_mb=round(mem / 2**20), seconds=round(STARTUP_SECONDS + (train_flops + gen_flops) / flops, 1),
                   steps=steps if trains else 0)
        rows.append(row)
    return {"base_params": P, "shape_source": shape["source"], "steps": steps, "sequence_tokens": round(seq, 1),
            "flops_per_second": flops, "throughput_source": "measured on this store's finished runs" if observed
            else ("assumed GPU" if cuda else "assumed CPU"), "methods": rows,
            "how": (__doc__ or "").split("How it is computed", 1)[-1].strip()}
