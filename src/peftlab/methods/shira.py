"""shira: sparse high-rank adapters (Bhardwaj et al., 2024, "Sparse High Rank Adapters",
arXiv:2406.13175).

Trains a fixed random subset of each targeted weight's own entries, as many as a rank-r LoRA
would train (r x (in + out)); everything else stays frozen. The update is sparse and of high
rank, and merging it changes only those entries.

A layer can give at most in x out entries: the default r is peft's 32, lowered to the largest
rank every targeted layer can hold; a given r over it is refused with the layers' sizes. The
mask comes from `random_seed` (fixed by default, so a rerun trains the same entries; peft's
own default draws a new mask every time). The mask is drawn on the CPU, so an empty (meta
device) model gets the same parameter count as the real one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import method_targets
from peftlab.methods.widths import describe, require_widths, target_widths
from peftlab.tasks.spec import CLASSIFICATION, IMAGE_CLASSIFICATION


class ShiraOptions(MethodOptions):
    r: int | None = Field(
        None, gt=0, description="Trains r x (in + out) entries per layer, LoRA rank r's count. Default: peft's 32, "
        "or the largest rank every targeted layer can hold.")
    random_seed: int = Field(42, description="Seed of the random mask (peft's MetaMathQA configuration uses 42).")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")


def _rank(model: Any, targets: list[str], given: int | None) -> int:
    widths = target_widths(model, targets)
    require_widths("shira", widths, targets)
    most = min((i * o) // (i + o) for i, o in widths.values())
    if given is None:
        return max(1, min(32, most))
    if given > most:
        raise MethodNotApplicable(
            f"shira: r = {given} asks for r x (in + out) trained entries, more than a targeted layer has "
            f"(in x out: {describe(widths, 'both')}); use r <= {most}"
        )
    return given


def cpu_random_mask(base_layer: Any, r: int, random_seed: int | None = None, **kwargs: Any) -> Any:
    """peft's random mask; for an empty (meta-device) layer, drawn on the CPU (torch cannot find the
    nonzeros of a meta mask), from the same seed: the same entries and the same count."""
    import torch
    from peft.tuners.shira.mask_functions import random_mask

    if base_layer.weight.device.type != "meta":
        return random_mask(base_layer, r, random_seed, **kwargs)
    proxy = torch.nn.Linear(1, 1, bias=False, device="cpu")  # random_mask reads only the widths and the device
    proxy.in_features, proxy.out_features = base_layer.in_features, base_layer.out_features
    return random_mask(proxy, r, random_seed, **kwargs)


def apply(model: Any, opts: ShiraOptions, ctx: MethodContext) -> Any:
    from peft import ShiraConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "SHIRA")
    cfg = ShiraConfig(r=_rank(model, targets, opts.r), mask_type="random", random_seed=opts.random_seed,
                      target_modules=targets, **peft_kwargs(ctx))
    cfg.mask_fn = cpu_random_mask
    return wrap(model, cfg)


METHOD = Method(
    name="shira",
    summary="Trains a fixed random subset of each targeted weight's own entries (sparse, high rank).",
    options=ShiraOptions,
    # peft's MetaMathQA comparison: 3e-4 (test accuracy 0.510, best of all its methods; LoRA 0.478 at 1e-4).
    # Heads from scratch: LoRA's classification rate. Starting points, to be measured.
    learning_rates={"default": 3e-4, CLASSIFICATION: 2e-3, IMAGE_CLASSIFICATION: 5e-4},
    apply=apply,
    family="fourier/sparse",
    mergeable=True,
    peft_type="SHIRA",
)
