"""The settings each run of an experiment will actually use, as the engine resolves them: the
learning rate (the entry's, else `training.learning_rate`, else the method's default for the task,
as `train.recipe` picks it) and the method applied to an empty (meta-device) copy of the model
(`train.preflight.apply_to_empty_model`, as preflight and the run apply it), read back from the
adapter's own config: rank, alpha, target modules (the defaults resolved against this model),
virtual tokens, ... The New experiment page shows them beside the experiment file."""

from __future__ import annotations

from typing import Any

# the adapter config keys worth showing first; any option the entry sets is shown too
KEYS = ("r", "lora_alpha", "alpha", "target_modules", "feedforward_modules", "num_virtual_tokens", "lora_dropout",
        "use_rslora", "use_dora", "init_lora_weights", "modules_to_save", "layers_to_transform")
SKIP = {"base_model_name_or_path", "revision", "task_type", "peft_type", "inference_mode", "auto_mapping",
        "peft_version", "runtime_config"}


def _plain(v: Any) -> Any:
    if isinstance(v, (set, frozenset, tuple)):
        v = sorted(v, key=str) if isinstance(v, (set, frozenset)) else list(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def resolved_settings(cfg: Any) -> list[dict[str, Any]]:
    """One row per method entry: run, method, learning_rate, trainable parameters and `settings`."""
    from peftlab.data.prepare import prepare_data
    from peftlab.errors import PeftlabError
    from peftlab.methods import get_method
    from peftlab.methods.base import parameter_counts
    from peftlab.models import resolve_model
    from peftlab.train.preflight import _task, apply_to_empty_model

    data = prepare_data(cfg.data, cfg.task, cfg.training.seed, None)
    rm = resolve_model(cfg.model, None)
    task = _task(cfg, rm, data)
    rows = []
    for entry in cfg.methods:
        method = get_method(entry.name)
        lr = (entry.learning_rate or cfg.training.learning_rate or method.learning_rate(cfg.task)) if method.trains else None
        row: dict[str, Any] = {"run": entry.run_name, "method": entry.name, "learning_rate": lr, "trainable": None,
                               "settings": {}, "note": None}
        if not method.trains:
            row["note"] = "trains nothing (the base model as it is)"
        elif method.apply is None:
            row["note"] = "every parameter of the model trains"
        try:
            _, model, _ = apply_to_empty_model(cfg, rm, data, task, entry)
        except PeftlabError as e:
            row["note"] = str(e)
            rows.append(row)
            continue
        except Exception:  # noqa: BLE001 - a model that cannot be built empty: the run resolves them
            row["note"] = row["note"] or "resolved when the run loads the model"
            rows.append(row)
            continue
        row["trainable"] = parameter_counts(model)[0] if method.trains else 0
        pc = (getattr(model, "peft_config", None) or {}).get("default")
        if pc is not None:
            d = pc.to_dict() if hasattr(pc, "to_dict") else dict(vars(pc))
            given = set(entry.options)
            keys = [k for k in KEYS if k in d] + sorted(k for k in given if k in d and k not in KEYS)
            row["settings"] = {k: _plain(d[k]) for k in keys if k not in SKIP and d[k] not in (None, [], {})}
        rows.append(row)
    return rows
