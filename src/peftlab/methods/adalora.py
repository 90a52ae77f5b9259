"""adalora: adaptive rank allocation (Zhang et al., 2023).

AdaLoRA prunes ranks on a schedule, so it must know the total number of steps; the train
loop calls `update_and_allocate` after every optimizer step (`AdaLoraCallback`) and adds
the orthogonality penalty to the training loss (`orthogonal_penalty`).
"""

import warnings
from typing import Any

from pydantic import Field, model_validator

from peftlab.errors import MethodNotApplicable
from peftlab.methods import quantize
from peftlab.methods.base import Method, MethodContext
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import lora_targets
from peftlab.tasks.spec import CLASSIFICATION, IMAGE_CLASSIFICATION

# Two peft warnings that are wrong for AdaLoRA, silenced for it alone:
# - pruning can take a layer to rank 0; peft saves it as zero-sized tensors (they reload and
#   reproduce the outputs) but warns that DeepSpeed/FSDP shards were not gathered;
# - on reload, the rank pattern's keys name the `lora_E` parameters, which AdaLoRA applies
#   itself, but peft's generic check reports them as matching no module.
# (peft's PeftWarning is a UserWarning; matched by message, so peft need not be imported here)
warnings.filterwarnings("ignore", message=r"Adapter .* LoRA tensor\(s\) have invalid shape", category=UserWarning)
warnings.filterwarnings("ignore", message=r"The following rank_pattern keys did not match any targeted module and "
                        r"were ignored: \['[^']*\.lora_E'", category=RuntimeWarning)


class AdaLoraOptions(quantize.QuantizeOptions):
    init_r: int = Field(12, gt=0, description="Starting rank of every adapter.")
    target_r: int = Field(8, gt=0, description="Average rank after pruning.")
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1, description="peft's default; see LoraOptions.dropout.")
    tinit_fraction: float = Field(0.1, ge=0, lt=1, description="Share of steps before pruning starts.")
    tfinal_fraction: float = Field(0.2, ge=0, lt=1, description="Share of steps at the end with ranks fixed.")
    delta_t: int = Field(1, gt=0, description="Steps between two budget allocations.")
    target_modules: list[str] | None = None

    @model_validator(mode="after")
    def _prunes(self) -> "AdaLoraOptions":
        # peft ranks the triplets to prune with kthvalue(k = init budget - budget): with init_r equal
        # to target_r, k is 0 at the first pruning step and training stops with a RuntimeError
        if self.init_r <= self.target_r:
            raise ValueError(f"init_r ({self.init_r}) must be above target_r ({self.target_r}): AdaLoRA prunes "
                             "each adapter from init_r down to target_r; raise init_r or lower target_r")
        return self


def orthogonal_penalty(model: Any, batch: dict[str, Any] | None = None) -> Any:
    """orth_reg_weight x mean over P and Q of ||P P^T - I||_F (||Q^T Q - I||_F), which keeps the
    adapters close to an SVD so that pruning by importance is meaningful. peft's AdaLoraModel
    adds it to `outputs.loss` only when the model computes its own loss (labels passed), and
    peftlab's causal-lm loss is computed outside the model (completion logits only), so the
    trainer adds it (on SmolLM2/statista at the old rate 5e-4: ROUGE-L 11.6 without it, 13.3 with it)."""
    import torch

    ada = model.base_model
    name = ada.trainable_adapter_name
    weight = ada.peft_config[name].orth_reg_weight
    total, n = 0.0, 0
    for pname, p in ada.model.named_parameters():
        if ("lora_A" in pname or "lora_B" in pname) and name in pname and p.numel():
            cov = p @ p.T if "lora_A" in pname else p.T @ p
            total = total + torch.linalg.matrix_norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype))
            n += 1
    return weight * total / n if n else None


def rank_allocation(model: Any) -> list[Any]:
    """A Trainer callback that reallocates ranks from gradient statistics after every optimizer
    step: peft's `update_and_allocate` reads the gradients, so it must run before they are zeroed."""
    from transformers import TrainerCallback

    class AdaLoraCallback(TrainerCallback):
        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            model.base_model.update_and_allocate(state.global_step)

    return [AdaLoraCallback()]


def apply(model: Any, opts: AdaLoraOptions, ctx: MethodContext) -> Any:
    from peft import AdaLoraConfig

    total = ctx.total_steps
    tinit = int(total * opts.tinit_fraction)
    tfinal = int(total * opts.tfinal_fraction)
    if total - tinit - tfinal < 1:
        raise MethodNotApplicable(
            f"adalora needs room to prune: total steps {total} leave no steps between tinit={tinit} and "
            f"tfinal={tfinal}; train for more steps or lower tinit_fraction/tfinal_fraction"
        )
    model = quantize.prepare(model, opts)
    cfg = AdaLoraConfig(
        init_r=opts.init_r,
        target_r=opts.target_r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=lora_targets(model, ctx.model_type, ctx.task, opts.target_modules),
        total_step=total,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=opts.delta_t,
        **peft_kwargs(ctx, model),
    )
    wrapped = wrap(model, cfg)
    for name, p in wrapped.named_parameters():
        if ".ranknum." in name:  # a constant (the rank); peft leaves it trainable on a meta-device copy
            p.requires_grad_(False)
    return wrapped


METHOD = Method(
    name="adalora",
    summary="LoRA with ranks pruned to where they matter.",
    options=AdaLoraOptions,
    # 2e-3 for generation: its update P diag(E) Q starts with E = 0 and P, Q ~ N(0, 0.02), so it
    # moves far more slowly than LoRA's at the same rate. On SmolLM2/statista (63 steps) 5e-4
    # stayed near the untrained model (ROUGE-L 13.9 on 50 test rows, below zero-shot's 14.4);
    # 2e-3 reached 36.1, level with LoRA and DoRA (36.0) on the same rows.
    learning_rates={"default": 2e-3, CLASSIFICATION: 2e-3, IMAGE_CLASSIFICATION: 1e-3},
    apply=apply,
    needs_total_steps=True,
    extra_loss=orthogonal_penalty,
    callbacks=rank_allocation,
    load_kwargs=quantize.load_kwargs,
    mergeable=True,
    quantizable=True,
)
