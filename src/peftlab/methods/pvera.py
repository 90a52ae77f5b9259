"""pvera: probabilistic VeRA (arXiv:2512.07703).

VeRA's shared frozen random matrices, with the scaling vectors learned as a distribution; the mean
is used at inference. Has a bitsandbytes layer (`quantize: 4bit`).
"""

from typing import Any

from pydantic import Field

from peftlab.methods import quantize
from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class PveraOptions(quantize.QuantizeOptions, TargetOptions):
    r: int = Field(256, gt=0, description="Rank of the shared random matrices (peft's default).")
    d_initial: float = Field(0.1, gt=0, description="Start of the d vector (<= 0.1 recommended).")
    dropout: float = Field(0.0, ge=0, lt=1)
    projection_prng_key: int = Field(0, description="Seed of the shared random matrices.")


def apply(model: Any, opts: PveraOptions, ctx: MethodContext) -> Any:
    # sample_at_inference off: evaluation uses the learned mean, so outputs are deterministic
    return apply_peft(model, opts, ctx, "PveraConfig", r=opts.r, d_initial=opts.d_initial, pvera_dropout=opts.dropout,
                      projection_prng_key=opts.projection_prng_key, save_projection=True, sample_at_inference=False)


METHOD = Method(
    name="pvera",
    summary="VeRA with the scaling vectors learned as a distribution.",
    options=PveraOptions,
    # peft's method_comparison (MetaMathQA): pvera at 3e-3.
    learning_rates=rates(3e-3),
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    family="shared-basis",
    mergeable=True,
    quantizable=True,
)
