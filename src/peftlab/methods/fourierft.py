"""fourierft: Fourier-domain fine-tuning (Gao et al., ICML 2024, "Parameter-Efficient Fine-Tuning
with Discrete Fourier Transform", arXiv:2405.03003).

Each targeted weight's update is the inverse 2-D discrete Fourier transform of a sparse
spectrum: `n_frequency` coefficients at random positions (the same positions, from
`random_loc_seed`, in every layer) are learned, times `scaling`. The update is dense and of full
rank, from a few hundred to a few thousand numbers per layer.

A layer holds at most in x out coefficients: the default n_frequency is peft's 1000, lowered to
the smallest targeted layer's size where that is smaller; a given value over it is refused with
the layers' sizes. peft starts the spectrum from a standard normal draw (the paper's start):
the untrained model is already perturbed, little on wide layers (the inverse transform divides
by in x out), more on tiny ones; `init_zeros` starts from the base model instead.
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


class FourierFTOptions(MethodOptions):
    n_frequency: int | None = Field(
        None, gt=0, description="Learned spectral coefficients per layer (at most in x out). Default: peft's 1000, "
        "or the smallest targeted layer's size if smaller.")
    scaling: float = Field(150.0, gt=0, description="Multiplier of the reconstructed update (peft's default; the "
                                                     "paper's value for RoBERTa). Acts like a learning-rate factor.")
    random_loc_seed: int = Field(777, description="Seed of the coefficients' positions (peft's default).")
    init_zeros: bool = Field(False, description="Start the spectrum at zero (the base model) instead of N(0, 1).")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")


def coefficient_count(model: Any, targets: list[str], given: int | None, default: int, method: str) -> int:
    """Coefficients per layer for a method that learns some of each weight's in x out entries
    (FourierFT, WaveFT): `given` if every targeted layer holds that many, else refused; by default
    `default`, capped at the smallest layer."""
    widths = target_widths(model, targets)
    require_widths(method, widths, targets)
    smallest = min(i * o for i, o in widths.values())
    if given is None:
        return min(default, smallest)
    if given > smallest:
        raise MethodNotApplicable(
            f"{method}: n_frequency = {given} is more than a targeted layer holds (in x out: "
            f"{describe(widths, 'both')}); use at most {smallest}"
        )
    return given


def apply(model: Any, opts: FourierFTOptions, ctx: MethodContext) -> Any:
    from peft import FourierFTConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "FOURIERFT")
    cfg = FourierFTConfig(
        n_frequency=coefficient_count(model, targets, opts.n_frequency, 1000, "fourierft"), scaling=opts.scaling,
        random_loc_seed=opts.random_loc_seed, init_weights=opts.init_zeros, target_modules=targets,
        **peft_kwargs(ctx),
    )
    return wrap(model, cfg)


METHOD = Method(
    name="fourierft",
    summary="Learns a few random Fourier coefficients of each targeted weight's update (dense, full rank).",
    options=FourierFTOptions,
    # peft's sequence-classification notebook (RoBERTa, n_frequency 1000, scaling 150): 6e-2 for the FourierFT
    # coefficients, 6e-3 for the new head; one rate serves both here, so classification takes the head's. On
    # MetaMathQA peft's comparison at 1e-4 (scaling 300) did not learn (accuracy 0.0): the higher rate for
    # generation. Starting points, to be measured.
    learning_rates={"default": 6e-2, CLASSIFICATION: 6e-3, IMAGE_CLASSIFICATION: 6e-3},
    apply=apply,
    family="fourier/sparse",
    mergeable=True,
    peft_type="FOURIERFT",
)
