"""adamss: adaptive multi-subspace adaptation (openreview.net/forum?id=8ZdWmpYxT0).

The weight's top-r SVD space is clustered into `num_subspaces` subspaces, each with its own small
low-rank update. (Its adaptive subspace pruning, ASA, needs a training callback; not offered here.)
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class AdamssOptions(TargetOptions):
    r: int = Field(100, gt=0, description="SVD rank clustered into subspaces (capped at each layer's width).")
    num_subspaces: int = Field(5, gt=0, description="Subspaces per layer (peft's default).")
    subspace_rank: int = Field(1, gt=0, description="Rank of each subspace's update.")
    seed: int = Field(0, description="Seed of the clustering.")


def apply(model: Any, opts: AdamssOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "AdamssConfig", r=opts.r, num_subspaces=opts.num_subspaces,
                      subspace_rank=opts.subspace_rank, random_seed=opts.seed, use_asa=False)


METHOD = Method(
    name="adamss",
    summary="Low-rank updates in clustered subspaces of the weight's SVD.",
    options=AdamssOptions,
    # generation: peft's method_comparison (MetaMathQA) runs it at LoRA's rate; classification and
    # images: the paper's GLUE and ViT rates (peft's examples/adamss_finetuning, Table 19: 1e-3, 1e-2).
    learning_rates=rates(LORA_LEARNING_RATES["default"], 1e-3, 1e-2),
    apply=apply,
    family="subspace",
    init_reads_weights=True,
    mergeable=True,
)
