"""Base models: find them (local, GGUF, hub) and load them safely for a task."""

from peftlab.models.loading import (
    ResolvedModel,
    load_image_processor,
    load_model,
    load_tokenizer,
    resolve_model,
)

__all__ = ["ResolvedModel", "load_image_processor", "load_model", "load_tokenizer", "resolve_model"]
