"""What a task is to peftlab: how to encode examples, batch them, predict and score.

A task is one module in this folder exporting a Task subclass, plus one `TaskSpec` line in
`peftlab/tasks/spec.py`, which names the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftlab.config.schema import EvaluationConfig, TrainingConfig
from peftlab.data.prepare import Example
from peftlab.tasks.spec import TaskSpec


@dataclass
class Prediction:
    input: str
    reference: str | list[str]
    output: str
    stopped: bool | None = None  # generation ended with EOS before max_new_tokens
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {"input": self.input, "reference": self.reference, "output": self.output}
        if self.stopped is not None:
            d["stopped"] = self.stopped
        return {**d, **self.extra}


class Task:
    spec: TaskSpec  # what the task is (tasks/spec.py); each subclass names its own
    # Inputs are conversations (`DataConfig.chat`; set by build_task): a bare input text is one
    # user turn, rendered as the chat encoding renders it in training. Only decoder-only
    # generation tasks can be (the schema refuses the others).
    conversational: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def main_metric(self) -> str:
        return self.spec.main_metric

    @property
    def generative(self) -> bool:
        return self.spec.generative

    def __init__(
        self,
        tokenizer: Any,
        processor: Any,
        training: TrainingConfig,
        evaluation: EvaluationConfig,
        labels: list[str] | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.tok = tokenizer
        self.processor = processor
        self.training = training
        self.evaluation = evaluation
        self.labels = labels
        self.system_prompt = system_prompt
        self.truncated = 0  # rows whose input or target was cut to the max length
        self.precision = "fp32"  # set by the recipe once the device is known

    # -- model ----------------------------------------------------------------
    def head_modules(self, model: Any) -> list[str]:
        """Freshly initialised modules that must train with every method (classifier heads)."""
        return []

    def prepare_model(self, model: Any) -> None:
        """Task-specific model fix-ups after loading (pad token ids, ...)."""

    # -- data -----------------------------------------------------------------
    def encode(self, ex: Example) -> dict[str, Any]:
        raise NotImplementedError

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, model: Any, batch: dict[str, Any], num_items: Any = None) -> Any:
        """Loss of one collated batch, as training and evaluation compute it: the mean over
        its items, or the sum over `num_items` when the Trainer accumulates gradients.

        Computed here from the logits, never by the model from `labels`: a tuner's own additions
        to the model's loss (AdaLoRA's orthogonality penalty; the trainer adds it through
        `Method.extra_loss`) then stay out of evaluation losses, so they compare across methods,
        and an adapter loaded for inference (AdaLoRA keeps no trainable adapter then) can be
        scored at all."""
        import torch.nn.functional as F

        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**self.loss_inputs(model, inputs, labels)).logits
        flat = labels.flatten().to(logits.device)
        loss = F.cross_entropy(logits.flatten(0, -2).float() if logits.dim() > 2 else logits.float(), flat,
                               ignore_index=-100, reduction="sum")
        count = num_items if num_items is not None else (flat != -100).sum().clamp(min=1)
        return loss / count

    def loss_inputs(self, model: Any, inputs: dict[str, Any], labels: Any) -> dict[str, Any]:
        """The model's inputs for the loss pass (an encoder-decoder also needs its decoder inputs)."""
        return inputs

    # -- evaluation -----------------------------------------------------------
    def predict(self, model: Any, examples: list[Example], desc: str = "predict") -> list[Prediction]:
        raise NotImplementedError

    def score(self, examples: list[Example], preds: list[Prediction]) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, model: Any, examples: list[Example], desc: str = "test") -> tuple[float, list[Prediction]]:
        """Mean loss over `examples` and the predictions: one loss pass, then `predict`."""
        from peftlab.evaluate.loss import mean_loss

        before = self.truncated
        feats = [self.encode(e) for e in examples]
        self.truncated = before  # truncation is counted on the training set only
        loss = mean_loss(model, feats, self.collate, self.evaluation.batch_size, self.precision,
                         desc=f"{desc} loss", loss=self.loss)
        return loss, self.predict(model, examples, desc=desc)


def real_tokens(features: list[dict[str, Any]]) -> int:
    return sum(len(f["input_ids"]) for f in features if "input_ids" in f)
