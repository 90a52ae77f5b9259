"""deft: decompositional efficient fine-tuning (NeurIPS 2025; PaRa, ICLR 2025, as `para`).

W' = (I - P_proj) W + Q_P R: a learned rank-r projection removes a subspace of W and a learned
injection R writes new knowledge into it; at init it is exactly W.
"""

from typing import Any, Literal

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class DeftOptions(TargetOptions):
    r: int = Field(8, gt=0, description="Rank of the projection and the injection (peft's default).")
    decomposition: Literal["relu", "qr"] = Field("relu", description="relu: P relu(P)^T (peft's default); qr: orthogonal.")
    alpha: int | None = Field(None, gt=0, description="Scale alpha/r on the injection; none by default.")
    para: bool = Field(False, description="PaRa: remove a subspace only, no injection (P alone trains).")
    dropout: float = Field(0.0, ge=0, lt=1)


def apply(model: Any, opts: DeftOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "DeftConfig", r=opts.r, decomposition_method=opts.decomposition,
                      alpha=opts.alpha, para=opts.para, deft_dropout=opts.dropout)


METHOD = Method(
    name="deft",
    summary="Remove a learned low-rank subspace of the weight and inject a new one.",
    options=DeftOptions,
    # peft's method_comparison (MetaMathQA) runs DEFT at LoRA's rate (its example at 3e-4): LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
