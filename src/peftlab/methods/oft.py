"""oft: orthogonal fine-tuning (Qiu et al., 2023, "Controlling Text-to-Image Diffusion by
Orthogonal Finetuning", arXiv:2306.07280; peft's OFT follows Qiu et al., 2025, arXiv:2506.19847).

Each targeted layer's input is rotated by a learned block-diagonal orthogonal matrix R before the
frozen weight: W' = W R. A rotation keeps the angles between the weight's neurons (their
"hyperspherical energy"), which the authors found preserves pretrained knowledge better than
an additive update. R is parameterised by a skew-symmetric matrix per block through the Cayley
transform (peft's default approximates its inverse by a 5-term Neumann series).

The blocks must tile the input width: the default block size is the largest divisor of every
targeted layer's input width up to 32 (peft's default size); a given size that does not divide
them is refused with the widths (peft itself would pick another per layer, with a warning).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import method_targets
from peftlab.methods.widths import largest_divisor, require_divides, require_widths, target_widths

DEFAULT_BLOCK = 32  # peft's OFTConfig default


class OFTOptions(MethodOptions):
    block_size: int | None = Field(
        None, gt=0, description="Side of each orthogonal block; must divide every targeted layer's input width. "
        "Default: the largest divisor of those widths up to 32 (peft's default). Bigger: denser rotations, more parameters.")
    use_cayley_neumann: bool = Field(
        True, description="peft's default: approximate the Cayley transform's inverse (faster, nearly orthogonal).")
    coft: bool = Field(False, description="Constrained OFT: keep R within `eps` of the identity.")
    eps: float = Field(6e-5, gt=0, description="COFT's radius (with coft only).")
    block_share: bool = Field(False, description="One block shared along each layer (fewer parameters).")
    module_dropout: float = Field(0.0, ge=0, lt=1, description="Probability of resetting a block to the identity.")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")


def block_size(model: Any, targets: list[str], given: int | None, method: str, cap: int) -> int:
    """The block side for OFT-style methods: `given` if it divides every input width, else refused;
    by default the largest divisor of them up to `cap`."""
    widths = target_widths(model, targets)
    require_widths(method, widths, targets)
    if given is not None:
        require_divides(method, "block_size", given, widths, "in")
        return given
    return largest_divisor([i for i, _ in widths.values()], cap)


def apply(model: Any, opts: OFTOptions, ctx: MethodContext) -> Any:
    from peft import OFTConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "OFT")
    cfg = OFTConfig(
        r=0, oft_block_size=block_size(model, targets, opts.block_size, "oft", DEFAULT_BLOCK),
        use_cayley_neumann=opts.use_cayley_neumann, coft=opts.coft, eps=opts.eps, block_share=opts.block_share,
        module_dropout=opts.module_dropout, target_modules=targets, **peft_kwargs(ctx),
    )
    return wrap(model, cfg)


METHOD = Method(
    name="oft",
    summary="A learned block-diagonal rotation of each targeted layer's input (weights keep their angles).",
    options=OFTOptions,
    # peft's MetaMathQA comparison (Llama-3.2-3B) trains OFT at LoRA's rate, 1e-4, where it matches LoRA
    # (test accuracy 0.491 vs 0.478): LoRA's rates here too. Starting points, to be measured.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    family="orthogonal",
    mergeable=True,
    peft_type="OFT",
)
