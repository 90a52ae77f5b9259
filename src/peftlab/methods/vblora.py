"""vblora: vector-bank LoRA (Li et al., 2024, "VB-LoRA: Extreme Parameter Efficient Fine-Tuning
with Vector Banks", arXiv:2405.15179).

LoRA's A and B matrices of every targeted layer are cut into sub-vectors of `vector_length`,
and each sub-vector is a learned top-k mixture of vectors from one bank shared by the whole
model: the bank (num_vectors x vector_length) and the mixing logits are all that trains.

The sub-vectors must tile both widths of every targeted layer: the default vector_length is
peft's 256, lowered to the largest common divisor of those widths where 256 does not fit; a
given length that does not divide them is refused with the widths. The whole logits are saved
(not only the top-k), so a saved adapter can train on.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import method_targets
from peftlab.methods.widths import largest_divisor, require_divides, require_widths, target_widths
from peftlab.tasks.spec import CLASSIFICATION, IMAGE_CLASSIFICATION


class VBLoRAOptions(MethodOptions):
    r: int = Field(4, gt=0, description="Rank of the composed LoRA update (peft's default).")
    num_vectors: int = Field(256, gt=0, description="Vectors in the shared bank (peft's default).")
    vector_length: int | None = Field(
        None, gt=0, description="Length of the bank's vectors; must divide every targeted layer's input and output "
        "width. Default: peft's 256, or the largest common divisor of the widths if 256 does not fit.")
    topk: int = Field(2, gt=0, description="Bank vectors mixed into each sub-vector (peft's default).")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")

    @model_validator(mode="after")
    def _topk_fits(self) -> VBLoRAOptions:
        if self.topk > self.num_vectors:
            raise ValueError(f"topk ({self.topk}) cannot exceed num_vectors ({self.num_vectors})")
        return self


def apply(model: Any, opts: VBLoRAOptions, ctx: MethodContext) -> Any:
    from peft import VBLoRAConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "VBLORA")
    widths = target_widths(model, targets)
    require_widths("vblora", widths, targets)
    if opts.vector_length is not None:
        require_divides("vblora", "vector_length", opts.vector_length, widths, "both")
        length = opts.vector_length
    else:
        length = largest_divisor([w for pair in widths.values() for w in pair], 256)
    cfg = VBLoRAConfig(r=opts.r, num_vectors=opts.num_vectors, vector_length=length, topk=opts.topk,
                       vblora_dropout=opts.dropout, target_modules=targets, **peft_kwargs(ctx))
    return wrap(model, cfg)


METHOD = Method(
    name="vblora",
    summary="LoRA whose matrices are mixed from one small bank of vectors shared by all layers.",
    options=VBLoRAOptions,
    # peft's VB-LoRA docs: 1e-3 for the vector bank, 1e-2 for the logits (AdamW); one rate serves both here,
    # the bank's; classification the head's rate in peft's VB-LoRA notebook, 4e-3. peft's MetaMathQA comparison
    # at 1e-4: test accuracy 0.334 (LoRA 0.478). Starting points, to be measured.
    learning_rates={"default": 1e-3, CLASSIFICATION: 4e-3, IMAGE_CLASSIFICATION: 4e-3},
    apply=apply,
    family="fourier/sparse",
    mergeable=True,
    peft_type="VBLORA",
)
