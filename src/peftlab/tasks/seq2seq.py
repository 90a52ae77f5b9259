"""seq2seq: encoder-decoder models (T5, BART, mT0). Source in, target out, EOS appended."""

from __future__ import annotations

from typing import Any

import torch

from peftlab.data.prepare import Example
from peftlab.evaluate.metrics import generation_metrics
from peftlab.tasks.base import Prediction, Task
from peftlab.tasks.generation import generate_batched
from peftlab.tasks.spec import SEQ2SEQ, SPECS


class Seq2SeqTask(Task):
    spec = SPECS[SEQ2SEQ]

    def prepare_model(self, model: Any) -> None:
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tok.pad_token_id

    def source_ids(self, text: str) -> tuple[list[int], bool]:
        ids = self.tok(text)["input_ids"]
        n = self.training.max_source_length
        return ids[:n], len(ids) > n

    def encode(self, ex: Example) -> dict[str, Any]:
        src, cut_s = self.source_ids(ex.source)
        tgt = self.tok(ex.target or "", add_special_tokens=False)["input_ids"]
        n = self.training.max_target_length - 1
        self.truncated += int(cut_s or len(tgt) > n)
        return {"input_ids": src, "labels": tgt[:n] + [self.tok.eos_token_id]}

    def loss_inputs(self, model: Any, inputs: dict[str, Any], labels: Any) -> dict[str, Any]:
        """The decoder is fed the targets shifted right, as the model does when it is given labels."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return {**inputs, "decoder_input_ids": base.prepare_decoder_input_ids_from_labels(labels=labels)}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        pad = self.tok.pad_token_id
        n = max(len(f["input_ids"]) for f in features)
        m = max(len(f["labels"]) for f in features)
        ids = torch.full((len(features), n), pad, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        labels = torch.full((len(features), m), -100, dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
            labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def predict(self, model: Any, examples: list[Example], desc: str = "predict") -> list[Prediction]:
        prompts = [self.source_ids(e.source)[0] for e in examples]
        outs = generate_batched(
            model, self.tok, prompts, self.evaluation, [self.tok.eos_token_id],
            decoder_only=False, desc=desc, precision=self.precision,
        ).outputs
        return [
            Prediction(e.source, e.references if len(e.references) > 1 else (e.target or ""), text, stopped)
            for e, (text, stopped) in zip(examples, outs, strict=True)
        ]

    def score(self, examples: list[Example], preds: list[Prediction]) -> dict[str, float]:
        return generation_metrics([p.output for p in preds], [e.references for e in examples])
