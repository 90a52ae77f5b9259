"""classification: an encoder (or decoder) with a sequence-classification head."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from peftlab.data.prepare import Example
from peftlab.device import autocast
from peftlab.evaluate.metrics import classification_metrics
from peftlab.tasks.base import Prediction, Task
from peftlab.tasks.spec import CLASSIFICATION, SPECS

HEADS = ("classifier", "score")
# Encoders whose head reads the [CLS] token through a pooler (BERT-style). Checkpoints trained
# for sentence embeddings (sentence-transformers: mean pooling) never trained that pooler, so the
# classifier alone on its output learns little more than the majority class: it trains too.
POOLERS = ("pooler",)


def head_names(model: Any) -> list[str]:
    heads = [h for h in HEADS if getattr(model, h, None) is not None]
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if heads and base is not None:
        heads += [p for p in POOLERS if getattr(base, p, None) is not None]
    return heads


class ClassificationTask(Task):
    spec = SPECS[CLASSIFICATION]

    def head_modules(self, model: Any) -> list[str]:
        return head_names(model)

    def prepare_model(self, model: Any) -> None:
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tok.pad_token_id

    def encode(self, ex: Example) -> dict[str, Any]:
        ids = self.tok(ex.source)["input_ids"]
        n = self.training.max_source_length
        self.truncated += int(len(ids) > n)
        if len(ids) > n:  # keep the final special token (e.g. [SEP])
            ids = ids[: n - 1] + ids[-1:]
        return {"input_ids": ids, "labels": ex.label}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        pad = self.tok.pad_token_id
        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), pad, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        labels = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _batches(self, examples: list[Example]) -> list[list[int]]:
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].source))
        bs = self.evaluation.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def predict(self, model: Any, examples: list[Example], desc: str = "predict") -> list[Prediction]:
        return self._predict(model, examples, desc)

    def evaluate(self, model: Any, examples: list[Example], desc: str = "test") -> tuple[float, list[Prediction]]:
        """Mean loss and the predictions from one pass: the loss from the logits the predictions
        come from (the task's loss: cross-entropy over the examples), not a second pass."""
        total = [0.0]
        preds = self._predict(model, examples, desc, total)
        return (total[0] / len(examples) if examples else float("nan")), preds

    def _predict(self, model: Any, examples: list[Example], desc: str, loss_sum: list[float] | None = None,
                 ) -> list[Prediction]:
        import torch.nn.functional as F

        assert self.labels is not None
        preds: list[Prediction | None] = [None] * len(examples)
        dev = next(model.parameters()).device
        was = model.training
        model.eval()
        try:
            with torch.inference_mode(), autocast(self.precision):
                for idx in tqdm(self._batches(examples), desc=desc, unit="batch", leave=False):
                    batch = self.collate([self.encode_eval(examples[i]) for i in idx])
                    labels = batch.pop("labels")
                    logits = model(**{k: v.to(dev) for k, v in batch.items()}).logits.float()
                    if loss_sum is not None:
                        loss_sum[0] += float(F.cross_entropy(logits, labels.to(logits.device), reduction="sum"))
                    probs = logits.softmax(-1)
                    for row, i in enumerate(idx):
                        k = int(probs[row].argmax())
                        ex = examples[i]
                        preds[i] = Prediction(
                            self.display(ex), self.labels[ex.label or 0], self.labels[k],
                            extra={"confidence": round(float(probs[row, k]), 4), "pred_id": k, "gold_id": ex.label},
                        )
        finally:
            model.train(was)
        return [p for p in preds if p is not None]

    def encode_eval(self, ex: Example) -> dict[str, Any]:
        before = self.truncated
        f = self.encode(ex)
        self.truncated = before  # truncation is counted on the training set only
        return f

    def display(self, ex: Example) -> str:
        return ex.source

    def score(self, examples: list[Example], preds: list[Prediction]) -> dict[str, Any]:
        assert self.labels is not None
        return classification_metrics(
            [p.extra["pred_id"] for p in preds], [e.label or 0 for e in examples], self.labels
        )
