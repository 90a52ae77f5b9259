"""boft: orthogonal butterfly fine-tuning (Liu et al., ICLR 2024, "Parameter-Efficient Orthogonal
Finetuning via Butterfly Factorization", arXiv:2311.06243).

OFT's rotation of each layer's input, built as a product of sparse block-diagonal orthogonal
factors permuted like the stages of a fast Fourier transform (a butterfly): with m factors of
b x b blocks the rotation mixes every channel with fewer parameters than one dense block.

Structure: `block_size` (b) must divide every targeted layer's input width, and with m > 1
factors the width must be a multiple of b * 2^(m-1), with b and the block count even (peft's
checks, made here before training and naming the widths). Default: b = the largest divisor of
the widths up to 4 and m = 1, peft's defaults and its MetaMathQA configuration.

peft builds m > 1 only with its BOFT CUDA extension (compiled at first use with ninja); without
it peft trains m = 1 while recording the m asked for, so m > 1 is refused where the extension
cannot be built.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import Field

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.oft import block_size
from peftlab.methods.targets import method_targets
from peftlab.methods.widths import describe, target_widths

DEFAULT_BLOCK = 4  # peft's BOFTConfig default


class BOFTOptions(MethodOptions):
    block_size: int | None = Field(
        None, gt=0, description="Side of each orthogonal block; must divide every targeted layer's input width. "
        "Default: the largest divisor of those widths up to 4 (peft's default).")
    n_butterfly_factor: int = Field(
        1, ge=1, description="Butterfly factors m (1: block-diagonal, as OFT). m > 1 needs peft's BOFT CUDA extension.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Multiplicative dropout: blocks reset to the identity.")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")


def _check_butterfly(model: Any, targets: list[str], b: int, m: int) -> None:
    if m == 1:
        return
    from peft.tuners.boft.layer import get_fbd_cuda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        available = get_fbd_cuda() is not None
    if not available:
        raise MethodNotApplicable(
            f"boft: n_butterfly_factor = {m} needs peft's BOFT CUDA extension, which cannot be built here "
            f"(it needs CUDA and ninja); without it peft would train a factor of 1. Use n_butterfly_factor: 1"
        )
    widths = target_widths(model, targets)
    step = b * 2 ** (m - 1)
    if b % 2 or any(i % step or (i // b) % 2 for i, _ in widths.values()):
        raise MethodNotApplicable(
            f"boft: with n_butterfly_factor = {m} and block_size = {b}, every targeted input width must be a "
            f"multiple of {step} with an even number of blocks, and block_size even; the layers' input widths "
            f"are {describe(widths, 'in')}"
        )


def apply(model: Any, opts: BOFTOptions, ctx: MethodContext) -> Any:
    from peft import BOFTConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "BOFT")
    b = block_size(model, targets, opts.block_size, "boft", DEFAULT_BLOCK)
    _check_butterfly(model, targets, b, opts.n_butterfly_factor)
    cfg = BOFTConfig(boft_block_size=b, boft_block_num=0, boft_n_butterfly_factor=opts.n_butterfly_factor,
                     boft_dropout=opts.dropout, target_modules=targets, **peft_kwargs(ctx))
    with warnings.catch_warnings():  # peft tries its CUDA extension at every layer and warns when it is absent
        warnings.filterwarnings("ignore", message=".*CUDA extension.*")
        warnings.filterwarnings("ignore", message=".*boft_n_butterfly_factor to 1.*")
        return wrap(model, cfg)


METHOD = Method(
    name="boft",
    summary="OFT's input rotation built from sparse butterfly factors: fewer parameters per rotation.",
    options=BOFTOptions,
    # peft's MetaMathQA comparison trains BOFT at LoRA's rate (1e-4; test accuracy 0.343, LoRA 0.478):
    # LoRA's rates here, starting points to be measured.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    family="orthogonal",
    mergeable=True,
    peft_type="BOFT",
)
