"""Shared by the playground and export: a run's base model, its adapter, its inputs.

The task object is the engine's own (`peftlab.tasks`), so inputs are formatted exactly as at
training time (`PromptFormatter` for causal LMs: chat template or the prompt template).
Models load through the engine's loader: safetensors/GGUF only and no remote code unless
the experiment file allowed it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftlab.config.schema import ExperimentConfig, ModelConfig
from peftlab.data.prepare import Example
from peftlab.errors import PeftlabError
from peftlab.models import load_model, load_tokenizer, resolve_model
from peftlab.models.trained import for_inference, seeded
from peftlab.store import Run
from peftlab.tasks.spec import spec


def text_task_or_error(cfg: ExperimentConfig) -> None:
    if spec(cfg.task).image_input:
        raise PeftlabError("image-classification runs take images; the playground and the merge check take text "
                           "only (download the adapter and load it with PeftModel.from_pretrained)")


def load_base(cfg: ExperimentConfig, base: Path | None, labels: list[str] | None,
              weights: str | None = None, **load_kwargs: Any) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, resolved path). Full precision unless `load_kwargs` ask
    otherwise (a qlora run's 4-bit base); `weights`: a full fine-tuned run's own model folder,
    loaded with the base's tokenizer and model options, as `load_trained` does.

    Loaded under the run's training seed (`seeded`): a classifier head the checkpoint lacks is
    newly initialised, and the zero-shot row's test evaluation ran with the head that seed drew."""
    rm = resolve_model(cfg.model, base)
    tok = load_tokenizer(rm, cfg.model, cfg.task)
    src = resolve_model(ModelConfig(path=weights), None) if weights else rm
    with seeded(cfg.training.seed):
        model = load_model(src, cfg.model, cfg.task, labels, **load_kwargs)
    if model.config.pad_token_id is None and tok is not None:
        model.config.pad_token_id = tok.pad_token_id
    return for_inference(model), tok, rm.path


def adapter_dir(run: Run) -> Path | None:
    return run.file("artifact")


def adapter_type(path: Path) -> str:
    try:
        return str(json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["peft_type"])
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise PeftlabError(f"{path}: not a PEFT adapter folder (adapter_config.json unreadable: {e})") from None


def source_text(cfg: ExperimentConfig, text: str | None, inputs: dict[str, Any] | None) -> str:
    """The formatted input, exactly as `peftlab.data.prepare` builds it from a row."""
    d = cfg.data
    if d.prompt:
        from peftlab.data.prepare import template_fields

        fields = template_fields(d.prompt)
        row = dict(inputs or {})
        if text is not None:
            if len(set(fields)) > 1 and not inputs:
                raise PeftlabError(f"this experiment's prompt has several fields {fields}; give `inputs` "
                                   "with a value for each")
            for f in fields:
                row.setdefault(f, text)
        missing = [f for f in fields if f not in row]
        if missing:
            raise PeftlabError(f"inputs: missing value(s) for {missing} (the prompt template is {d.prompt!r})")
        return d.prompt.format_map({k: "" if v is None else str(v) for k, v in row.items()})
    cols = [d.input] if isinstance(d.input, str) else list(d.input or [])
    if text is not None and (len(cols) <= 1 or not inputs):
        return text
    row = inputs or {}
    missing = [c for c in cols if c not in row]
    if missing:
        raise PeftlabError(f"inputs: missing value(s) for column(s) {missing}")
    if len(cols) == 1:
        return str(row[cols[0]])
    return "\n".join(f"{c}: {row[c]}" for c in cols)


def example(source: str, reference: str | None = None) -> Example:
    return Example(source=source, target=reference or "", references=[reference or ""], label=0)
