"""c3a: circular convolution adaptation (Chen et al., 2024, "Parameter-Efficient Fine-Tuning via
Circular Convolution", arXiv:2407.19342).

Each targeted weight's update is a block matrix of circulant blocks of side `block_size`, i.e. a
circular convolution of the input, computed with FFTs: an update of high rank for
in x out / block_size parameters per layer (a larger block, fewer parameters).

The blocks must tile both widths of every targeted layer: the default block size is the
largest common divisor of those widths up to 64 (peft's MetaMathQA configuration uses 64); a
given size that does not divide them is refused with the widths. peft starts the kernels from
a Xavier draw (its default; `init: zeros` starts from the base model).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import method_targets
from peftlab.methods.widths import largest_divisor, require_divides, require_widths, target_widths

DEFAULT_CAP = 64


class C3AOptions(MethodOptions):
    block_size: int | None = Field(
        None, gt=0, description="Side of the circulant blocks; must divide every targeted layer's input and output "
        "width. Default: their largest common divisor up to 64. Larger: fewer parameters.")
    init: Literal["xavier_uniform", "kaiming_uniform", "gaussian", "zeros"] = Field(
        "xavier_uniform", description="Start of the kernels (peft's default: xavier_uniform; zeros: the base model).")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")


def apply(model: Any, opts: C3AOptions, ctx: MethodContext) -> Any:
    from peft import C3AConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "C3A")
    widths = target_widths(model, targets)
    require_widths("c3a", widths, targets)
    if opts.block_size is not None:
        require_divides("c3a", "block_size", opts.block_size, widths, "both")
        b = opts.block_size
    else:
        b = largest_divisor([w for pair in widths.values() for w in pair], DEFAULT_CAP)
    init: bool | str = True if opts.init == "zeros" else opts.init
    return wrap(model, C3AConfig(block_size=b, init_weights=init, target_modules=targets, **peft_kwargs(ctx)))


METHOD = Method(
    name="c3a",
    summary="Each targeted weight's update is made of circulant blocks (a circular convolution): high rank, few numbers.",
    options=C3AOptions,
    # peft's C3A docs: "a LR of 1e-1 for C3A is a good starting point" (with a much smaller weight decay);
    # its MetaMathQA comparison trains at 3e-1 (test accuracy 0.487, LoRA 0.478). Starting points, to be measured.
    learning_rates={"default": 1e-1},
    apply=apply,
    family="fourier/sparse",
    mergeable=True,
    peft_type="C3A",
)
