"""image-classification: ViT-style models; images from files or a base64 column.

Prompt-learning methods (prefix/prompt/p-tuning) need token embeddings, which vision
models do not have, so they are refused for this task before training starts.
"""

from __future__ import annotations

from typing import Any

import torch

from peftlab.data.prepare import Example
from peftlab.tasks.classification import ClassificationTask
from peftlab.tasks.spec import IMAGE_CLASSIFICATION, SPECS


class ImageClassificationTask(ClassificationTask):
    spec = SPECS[IMAGE_CLASSIFICATION]

    def prepare_model(self, model: Any) -> None:
        self.channels = getattr(model.config, "num_channels", 3)

    def head_modules(self, model: Any) -> list[str]:
        return ["classifier"] if getattr(model, "classifier", None) is not None else []

    def encode(self, ex: Example) -> dict[str, Any]:
        img = ex.image.convert("L" if getattr(self, "channels", 3) == 1 else "RGB")
        pv = self.processor(images=img, return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pv, "labels": ex.label}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long),
        }

    def _batches(self, examples: list[Example]) -> list[list[int]]:
        bs = self.evaluation.batch_size
        return [list(range(i, min(i + bs, len(examples)))) for i in range(0, len(examples), bs)]

    def display(self, ex: Example) -> str:
        return ex.where
