"""LoRA's initialisations (the `init` option of lora, dora and qlora), as peft's `init_lora_weights`.

Three kinds, and what each needs from peftlab:

- Data-free, base untouched: `default` (peft's True: A Kaiming, B = 0), `gaussian`, `orthogonal`.
  Nothing more than the config.
- Data-free, base rewritten: `pissa` / `pissa_niter_<n>` (Meng et al., 2024: the adapter takes the
  top-r singular directions, the base keeps the residual W - BA) and `olora` (Büyükakyüz, 2024:
  QR instead of SVD). Data-driven, base rewritten: `corda` (Yang et al., 2024: SVD of the weight
  times the input covariance, from `preprocess_corda`) and `lora_ga` (Wang et al., 2024: SVD of
  the full-weight gradient, from `preprocess_loraga`). Saving the trained A, B as they are would
  give an adapter that only reproduces the run on the *rewritten* base; `save_converted` writes the
  equivalent plain LoRA instead (rank 2r: W + s(BA - B0A0) = W_res + sBA), which reloads on the
  untouched base with plain `PeftModel.from_pretrained`, merges into it, and ships alone.
- Data-driven, base untouched: `eva` (Paischer et al., 2024: A from the SVD of each layer's inputs,
  ranks redistributed by explained variance), from `initialize_lora_eva_weights` after wrapping.
- `loftq` (Li et al., 2023) needs `quantize: 4bit`: A and B start as the best rank-r fit of the
  quantization error W - dequant(Q(W)) of every 4-bit layer, so the adapter starts by undoing the
  quantization. The 4-bit base is bitsandbytes' own, re-made identically at reload, so the
  adapter reloads as any qlora adapter does. (Computed here rather than by peft's
  `replace_lora_weights_loftq`, which in peft 0.21.2 always computes on "cuda" and leaves out
  LoRA's scale alpha/r.)

The data-driven ones read `MethodContext.calibration` (its docstring has the contract) and refuse
with MethodNotApplicable without it. On an empty (meta-device) model, which the parameter estimate
uses, every init is the default one: the count is the same (EVA's redistributed ranks aside).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from peftlab.errors import MethodNotApplicable, ModelError
from peftlab.methods.base import MethodContext
from peftlab.tasks.spec import spec

INITS = ("default", "gaussian", "orthogonal", "pissa", "pissa_niter_<n>", "olora", "eva", "corda", "lora_ga",
         "loftq")
DATA_DRIVEN = ("eva", "corda", "lora_ga")
INITIAL_ADAPTER = "_peftlab_initial_adapter"  # set on a PeftModel whose init rewrote its base


def rewrites_base(init: str) -> bool:
    return init.startswith("pissa") or init in ("olora", "corda", "lora_ga")


def peft_value(init: str) -> Any:
    """peft's `init_lora_weights` for peftlab's `init` (loftq is applied after wrapping)."""
    return True if init in ("default", "loftq") else init


def is_meta(model: Any) -> bool:
    return any(p.is_meta for p in model.parameters())


def config_extras(opts: Any) -> dict[str, Any]:
    """The LoraConfig sub-configs the init needs."""
    from peft.tuners.lora.config import CordaConfig, EvaConfig, LoraGAConfig

    if opts.init == "eva":
        return {"eva_config": EvaConfig(rho=opts.eva_rho)}
    if opts.init == "corda":
        return {"corda_config": CordaConfig(corda_method=opts.corda_method)}
    if opts.init == "lora_ga":
        return {"lora_ga_config": LoraGAConfig()}
    return {}


def _batches(opts: Any, ctx: MethodContext) -> list[dict[str, Any]]:
    if ctx.calibration is None:
        raise MethodNotApplicable(
            f"init {opts.init!r} computes LoRA's starting weights from training batches (layer inputs for eva and "
            "corda, gradients for lora_ga), and this run provides none (MethodContext.calibration is unset). "
            "Use another `init` (default, gaussian, orthogonal, pissa, olora), or run it where the recipe supplies "
            "calibration batches"
        )
    batches = list(itertools.islice(ctx.calibration(), opts.calibration_batches))
    if not batches:
        raise MethodNotApplicable(f"init {opts.init!r}: the calibration batches are empty")
    return batches


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """One example at a time, padding cut off: CorDA's hook takes a (tokens, width) input."""
    n = len(next(iter(batch.values())))
    rows = []
    for i in range(n):
        row = {k: v[i : i + 1] for k, v in batch.items()}
        mask = row.get("attention_mask")
        if mask is not None and "input_ids" in row:
            keep = int(mask.sum())
            row["input_ids"], row["attention_mask"] = row["input_ids"][:, :keep], mask[:, :keep]
            if row.get("labels") is not None and row["labels"].shape == mask.shape:  # causal-lm: labels align
                row["labels"] = row["labels"][:, :keep]
        rows.append(row)
    return rows


def before_wrap(model: Any, config: Any, opts: Any, ctx: MethodContext) -> None:
    """CorDA and LoRA-GA preprocess the base model (covariances, gradients) before peft wraps it."""
    if opts.init not in ("corda", "lora_ga") or is_meta(model):
        return
    import torch

    batches = _batches(opts, ctx)
    if opts.init == "corda":
        from peft.tuners.lora.corda import preprocess_corda

        def run_model() -> None:
            with torch.no_grad():
                for batch in batches:
                    for row in _rows(batch):
                        model(**row)

        preprocess_corda(model, config, run_model=run_model)
    else:
        from peft.tuners.lora.loraga import preprocess_loraga

        def train_step() -> None:
            for batch in batches:
                model(**batch).loss.backward()

        preprocess_loraga(model, config, train_step)


def after_wrap(peft_model: Any, opts: Any, ctx: MethodContext) -> None:
    """EVA's and LoftQ's initialisation of the wrapped model; the initial adapter of the inits
    that rewrite the base, kept for `save_converted`."""
    if is_meta(peft_model):
        return
    if opts.init == "eva":
        from peft import initialize_lora_eva_weights

        kw: dict[str, Any] = {}
        decoder_only = spec(ctx.task).decoder_only
        if not decoder_only:
            # peft's default picks the completion tokens by the labels' mask, which only lines up with
            # the inputs in a decoder-only model; elsewhere every position of each layer's input counts.
            kw = {"prepare_model_inputs_fn": None, "prepare_layer_inputs_fn": None}
        batches = _batches(opts, ctx)
        _enough_tokens_for_eva(batches, opts, decoder_only)
        initialize_lora_eva_weights(peft_model, batches, show_progress_bar=False, **kw)
    elif opts.init == "loftq":
        loftq_init(peft_model)
    if rewrites_base(opts.init):
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(peft_model)
        setattr(peft_model, INITIAL_ADAPTER,
                {k: v.detach().to("cpu", copy=True) for k, v in state.items() if ".lora_A." in k or ".lora_B." in k})


def _enough_tokens_for_eva(batches: list[dict[str, Any]], opts: Any, decoder_only: bool) -> None:
    """EVA's incremental SVD of a layer's inputs only updates on a batch with at least r x rho token
    rows, and peft cycles through the batches until every layer converges: with fewer it never
    does, and never returns (peft 0.21.2). Refuse instead."""
    need = round(opts.r * opts.eva_rho)
    for batch in batches:
        mask = batch.get("attention_mask")
        if decoder_only and mask is not None and "labels" in batch:  # the completion tokens (peft's label mask)
            have = int(((batch["labels"] != -100) & mask.bool()).sum())
        elif "labels" in batch and batch["labels"].ndim == 2 and "input_ids" in batch:  # seq2seq: the shorter side
            have = min(batch["input_ids"].numel(), batch["labels"].numel())
        else:
            continue  # classification and images: every position counts, plenty
        if have < need:
            raise MethodNotApplicable(
                f"init 'eva' needs at least r x eva_rho = {need} tokens per calibration batch for its SVD of each "
                f"layer's inputs, and a batch has {have}; use larger batches, or lower r or eva_rho"
            )


def loftq_init(peft_model: Any) -> None:
    """A, B := the best rank-r fit of each 4-bit layer's quantization error, divided by LoRA's
    scale, so that W_4bit + s·BA starts as close to the full-precision W as rank r allows."""
    import bitsandbytes as bnb
    import torch
    from peft.tuners.lora.bnb import Linear4bit

    weights = _FullPrecisionWeights(peft_model.base_model.model.name_or_path)
    prefix = "base_model.model."
    done = 0
    for name, module in peft_model.named_modules():
        if not isinstance(module, Linear4bit):
            continue
        base = module.get_base_layer().weight
        w = weights.get(name.removeprefix(prefix) + ".weight").to(base.device, torch.float32)
        residual = w - bnb.functional.dequantize_4bit(base.data, base.quant_state).float()
        u, s, vh = torch.linalg.svd(residual, full_matrices=False)
        for adapter, r in module.r.items():
            root = s[:r].sqrt()
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            a.data.copy_((root[:, None] * vh[:r]).to(a.dtype))
            b.data.copy_((u[:, :r] * root / module.scaling[adapter]).to(b.dtype))
        done += 1
    if not done:
        raise MethodNotApplicable("init 'loftq': no 4-bit LoRA layer found; loftq needs `quantize: 4bit`")


class _FullPrecisionWeights:
    """Tensors read one at a time from the base model's safetensors files (LoftQ needs the weights
    as they were before quantization, which the loaded 4-bit model no longer has)."""

    def __init__(self, folder: str) -> None:
        from safetensors import safe_open

        files = sorted(Path(folder).glob("*.safetensors")) if folder else []
        if not files:
            raise ModelError(f"init 'loftq' reads the full-precision weights from the model's safetensors files; "
                             f"found none in {folder!r}")
        self._where: dict[str, Any] = {}
        for f in files:
            handle = safe_open(str(f), framework="pt")
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                self._where[key] = handle

    def get(self, key: str) -> Any:
        handle = self._where.get(key)
        if handle is None:
            raise ModelError(f"init 'loftq': weight {key!r} not found in the model's safetensors files")
        return handle.get_tensor(key)


def save_converted(model: Any, path: str | Path) -> None:
    """Save an adapter whose init rewrote the base as the equivalent plain LoRA on the original base.

    ΔW = s(BA - B0A0) = s'·[B, -B0][A; A0] with rank 2r and s' = s (alpha doubled, or times √2 with
    rsLoRA), which is peft's own conversion (`path_initial_model_for_weight_conversion`); done here
    on the saved tensors because peft's keeps only the lora_A/B tensors and so drops the heads that
    a classification adapter saves beside them (modules_to_save) and DoRA's magnitudes.
    """
    import torch
    from safetensors.torch import load_file, save_file

    initial = getattr(model, INITIAL_ADAPTER)
    out = Path(path)
    model.save_pretrained(out)
    weights = out / "adapter_model.safetensors"
    state = load_file(str(weights))
    for key, start in initial.items():
        if key not in state:
            raise RuntimeError(f"{key} missing from the saved adapter; cannot convert it to plain LoRA")
        t = state[key]
        state[key] = torch.cat([t, start.to(t.dtype)], 0) if ".lora_A." in key else torch.cat([t, -start.to(t.dtype)], 1)
    save_file(state, str(weights), metadata={"format": "pt"})
    cfg_file = out / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise RuntimeError("cannot convert an adapter with rank/alpha patterns to plain LoRA")
    cfg["r"] *= 2
    cfg["lora_alpha"] *= math.sqrt(2) if cfg.get("use_rslora") else 2
    cfg.update(init_lora_weights=True, corda_config=None, lora_ga_config=None, eva_config=None)
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
