"""waveft: wavelet fine-tuning (Bilican et al., 2025, "Exploring Sparsity for Parameter Efficient
Fine Tuning Using Wavelets", arXiv:2505.12532).

Like FourierFT with wavelets: each targeted weight's update is the inverse 2-D discrete wavelet
transform of `n_frequency` learned coefficients at random positions, times `scaling`. Its
parameter count is set per layer to any number, not in steps of a rank.

A layer holds at most in x out coefficients: the default n_frequency is peft's 2592, lowered to
the smallest targeted layer's size where that is smaller; a given value over it is refused with
the layers' sizes. The coefficients start at zero (the base model).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.errors import ConfigError
from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.fourierft import coefficient_count
from peftlab.methods.targets import method_targets


class WaveFTOptions(MethodOptions):
    n_frequency: int | None = Field(
        None, gt=0, description="Learned wavelet coefficients per layer (at most in x out). Default: peft's 2592, "
        "or the smallest targeted layer's size if smaller.")
    scaling: float = Field(25.0, gt=0, description="Multiplier of the reconstructed update (peft's default).")
    wavelet_family: str = Field("db1", description="Wavelet (db1 = Haar, peft's default; db2..., sym2..., coif1...).")
    use_idwt: bool = Field(True, description="Reconstruct through the inverse transform; False: the coefficients "
                                             "are the update itself (faster, a sparse update).")
    proportional_parameters: bool = Field(False, description="Share the coefficients out by layer size.")
    random_loc_seed: int = Field(777, description="Seed of the coefficients' positions (peft's default).")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")


def apply(model: Any, opts: WaveFTOptions, ctx: MethodContext) -> Any:
    from peft import WaveFTConfig
    from peft.tuners.waveft.constants import WAVELET_REDUCTIONS

    if opts.wavelet_family not in WAVELET_REDUCTIONS:
        raise ConfigError(f"wavelet_family = {opts.wavelet_family!r}: peft knows {', '.join(WAVELET_REDUCTIONS)}")
    targets = method_targets(model, ctx.model_type, opts.target_modules, "WAVEFT")
    cfg = WaveFTConfig(
        n_frequency=coefficient_count(model, targets, opts.n_frequency, 2592, "waveft"), scaling=opts.scaling,
        wavelet_family=opts.wavelet_family, use_idwt=opts.use_idwt, random_loc_seed=opts.random_loc_seed,
        proportional_parameters=opts.proportional_parameters, target_modules=targets, **peft_kwargs(ctx),
    )
    return wrap(model, cfg)


METHOD = Method(
    name="waveft",
    summary="Learns a few random wavelet coefficients of each targeted weight's update.",
    options=WaveFTOptions,
    # peft's MetaMathQA comparison trains WaveFT (n_frequency 5000, scaling 25) at LoRA's rate, 1e-4 (test
    # accuracy 0.403, LoRA 0.478): LoRA's rates here, starting points to be measured.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    family="fourier/sparse",
    mergeable=True,
    peft_type="WAVEFT",
)
