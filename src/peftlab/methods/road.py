"""road: 2-D rotary adaptation (arXiv:2409.00119).

Pairs of output channels are rotated (and scaled) by learned 2x2 rotations, element-wise: very few
parameters and fast batched serving of many adapters. Has a bitsandbytes layer (`quantize: 4bit`).

peft pairs channels within groups of `group_size`, which must divide every adapted layer's output
width; the default picks the largest even group up to 64 that divides them all (the group size
changes speed, not quality, per peft's docs), so it fits any model with even widths.
"""

import math
from functools import reduce
from typing import Any, Literal

from pydantic import Field

from peftlab.errors import MethodNotApplicable
from peftlab.methods import quantize
from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless


class RoadOptions(quantize.QuantizeOptions, TargetOptions):
    variant: Literal["road_1", "road_2", "road_4"] = Field(
        "road_1", description="road_1: one angle and scale per pair (fewest parameters); road_2, road_4: 2x, 4x.",
    )
    group_size: int | None = Field(None, gt=0, multiple_of=2,
                                   description="Even; must divide every output width. Default: the largest <= 64 that does.")


def auto_group_size(widths: list[int], cap: int = 64) -> int | None:
    """The largest even size <= cap dividing every width, None if there is none."""
    g = reduce(math.gcd, widths)
    return next((k for k in range(min(g, cap), 1, -1) if g % k == 0 and k % 2 == 0), None)


def apply(model: Any, opts: RoadOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> dict[str, int]:
        if not layers:  # no linear layer matched: peft says so
            return {}
        if opts.group_size is not None:
            refuse_unless("road", layers, lambda i, o: o % opts.group_size == 0,
                          f"group_size={opts.group_size} must divide each output width")
            return {"group_size": opts.group_size}
        size = auto_group_size([o for _, _, o in layers])
        if size is None:
            raise MethodNotApplicable("road pairs output channels in even-sized groups, and the adapted layers' output "
                                      f"widths ({sorted({o for _, _, o in layers})}) have no common even divisor; "
                                      "choose `target_modules` with even widths")
        return {"group_size": size}

    return apply_peft(model, opts, ctx, "RoadConfig", check=check, variant=opts.variant)


METHOD = Method(
    name="road",
    summary="Learned 2-D rotations (and scales) of output-channel pairs.",
    options=RoadOptions,
    # peft's method_comparison (MetaMathQA) trains RoAd at 1e-3; peft's docs: "around 1e-3".
    learning_rates=rates(1e-3),
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    family="orthogonal",
    mergeable=True,
    quantizable=True,
)
