"""Preflight: check data, model and methods before any run starts, so a bad file, a missing model,
an unknown target module or a method that cannot apply to the architecture fails in seconds with
one message (file, line, key), before anything in the store changes.

It reads and checks all data, resolves the model, loads its tokenizer and config, and applies
every method to an empty ("meta" device) copy of the model (`apply_to_empty_model`, which the
estimate also uses to count trainable parameters).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peftlab.config import ExperimentConfig
from peftlab.config.schema import MethodEntry
from peftlab.data.prepare import PreparedData, prepare_data
from peftlab.errors import ConfigError, DataError, MethodNotApplicable, ModelError, PeftlabError
from peftlab.models import ResolvedModel, resolve_model
from peftlab.models.loading import empty_model

if TYPE_CHECKING:
    from peftlab.train.plan import Plan


@dataclass
class Preflight:
    data: PreparedData
    model: ResolvedModel
    warnings: list[str]
    notes: list[str] = field(default_factory=list)  # what was found, not wrong (the detected data format)


def preflight(p: Plan, read_test: bool = True) -> Preflight:
    """Check data, model and methods before any run starts (errors name the file/line/key).
    `read_test=False`: the checks of a tuning phase, which never opens the test split.

    Raises DataError, ModelError, ConfigError or MethodNotApplicable; changes nothing."""
    cfg = p.cfg
    try:
        data = prepare_data(cfg.data, cfg.task, cfg.training.seed, p.base_dir, read_test=read_test)
    except ConfigError as e:  # a data.* setting at fault: point at its line
        key = str(e).split(":", 1)[0]
        raise ConfigError(f"{p.where(key)}: {e}") from None
    rm = resolve_model(cfg.model, p.base_dir)
    notes: list[str] = []
    if data.skipped:
        notes.append(f"{len(data.skipped)} bad rows skipped (data.on_bad_rows: skip), e.g. {data.skipped[0]}")
    notes += _check_forgetting(p)
    if any(p.method(m).apply is not None for m in cfg.methods) or cfg.data.on_long_rows == "error":
        task = _task(cfg, rm, data)
        if cfg.data.on_long_rows == "error":
            _check_long_rows(cfg, task, data)
        notes += _check_methods(p, rm, data, task)
    return Preflight(data, rm, notes, list(data.format_notes))


def _check_forgetting(p: Plan) -> list[str]:
    """A named forgetting reference set is read now, so a bad file fails before any run starts."""
    from peftlab.evaluate.forgetting import NOT_MEASURED
    from peftlab.evaluate.reference import read_source

    setting = p.cfg.evaluation.forgetting
    if not isinstance(setting, str):
        return []
    if not p.task.generative:
        return [f"evaluation.forgetting: {NOT_MEASURED}; the reference set is not used"]
    try:
        read_source(setting, p.base_dir)
    except ConfigError as e:
        raise ConfigError(f"{p.where('evaluation.forgetting')}: {e}") from None
    return []


def _task(cfg: ExperimentConfig, rm: ResolvedModel, data: PreparedData) -> Any:
    """The task object on the model's tokenizer, once the model is known to fit the task: an
    encoder for causal-lm is refused by what it is, not by a tokenizer error it leads to."""
    import json
    from pathlib import Path

    from peftlab.models.fit import fit
    from peftlab.tasks.build import load_task

    config_file = Path(rm.path) / "config.json"
    config: Any = None
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
    if isinstance(config, dict) and config.get("model_type"):
        ok, why = fit(config, cfg.task, Path(cfg.model.path).name)
        if not ok:
            raise ModelError(f"{why}; choose a model that fits the task (GET /api/models lists each model's tasks)")
    try:
        return load_task(cfg, rm, data.labels)
    except (ValueError, KeyError, TypeError) as e:  # e.g. a tokenizer with no EOS token
        raise ModelError(f"{rm.path}: cannot prepare {cfg.task!r} inputs with this model's tokenizer ({e})") from None


def _check_long_rows(cfg: ExperimentConfig, task: Any, data: PreparedData) -> None:
    """`data.on_long_rows: error`: refuse rows that would be cut to the max lengths."""
    if not task.spec.text_input:
        return
    t = cfg.training
    for split, examples in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        long_rows = []
        for ex in examples:
            before = task.truncated
            task.encode(ex)
            if task.truncated > before:
                long_rows.append(ex.where)
        task.truncated = 0
        if long_rows:
            more = [w.rpartition(":")[2] for w in long_rows[1:6]]
            also = f"; also lines {', '.join(more)}{', ...' if len(long_rows) > 6 else ''}" if more else ""
            raise DataError(
                f"{long_rows[0]}: row longer than training.max_source_length ({t.max_source_length} tokens) "
                f"or max_target_length ({t.max_target_length}) and data.on_long_rows is 'error' "
                f"({len(long_rows)} of {len(examples)} {split} rows{also}). Raise the max lengths, shorten the "
                f"rows, or set data.on_long_rows: truncate to cut them (the count is recorded with the run)"
            )


def _check_methods(p: Plan, rm: ResolvedModel, data: PreparedData, task: Any) -> list[str]:
    """Apply each method to an empty copy of the model: unknown target modules, a method that
    cannot apply to this architecture, too few steps for AdaLoRA... fail here, before training."""
    cfg = p.cfg
    left_out: list[str] = []
    notes: list[str] = []
    for entry in cfg.methods:
        method = p.method(entry)
        if method.apply is None or method.init_reads_weights:
            continue
        try:
            apply_to_empty_model(cfg, rm, data, task, entry)
        except _CannotBuildEmpty:  # an architecture we cannot build empty: the run will tell
            return notes
        except (MethodNotApplicable, ModelError) as e:
            if p.every_method and not entry.options:  # `--methods all`: this one does not fit the model
                left_out.append(f"{entry.run_name} ({str(e).splitlines()[0][:160]})")
                continue
            raise type(e)(f"{p.method_where(entry.run_name)}: methods: {entry.run_name} ({entry.name}): {e}") from None
        except PeftlabError as e:
            raise type(e)(f"{p.method_where(entry.run_name)}: methods: {entry.run_name} ({entry.name}): {e}") from None
        except Exception:  # noqa: BLE001 - not a user error (e.g. a method that needs real weights)
            continue
    if left_out:
        keep = [e for e in cfg.methods if not any(x.startswith(f"{e.run_name} (") for x in left_out)]
        p.cfg = cfg.model_copy(update={"methods": keep})
        notes.append(f"--methods all: {len(left_out)} methods do not fit this model and were left out: "
                     + "; ".join(left_out))
    return notes


class _CannotBuildEmpty(Exception):
    pass


def apply_to_empty_model(cfg: ExperimentConfig, rm: ResolvedModel, data: PreparedData, task: Any,
                         entry: MethodEntry) -> tuple[Any, Any, int]:
    """(method, wrapped model, base parameters): `entry`'s method applied to an empty (meta-device)
    copy of the model, as the run will apply it. Preflight uses it to fail early; the estimate
    counts its trainable parameters. A PeftlabError is the user's to fix."""
    from peftlab.methods import MethodContext, get_method
    from peftlab.methods.base import parameter_counts

    method = get_method(entry.name)
    opts = method.parse_options(entry.options)
    try:
        model = empty_model(cfg, rm, data.labels)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _CannotBuildEmpty(str(e)) from None
    task.prepare_model(model)
    base_params = parameter_counts(model)[1]
    ctx = MethodContext(
        task=cfg.task, model_type=model.config.model_type, total_steps=cfg.training.total_steps(len(data.train)),
        tokenizer_path=rm.path, prompt_text=data.prompt_text, precision="fp32", head_modules=task.head_modules(model),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return method, (method.apply(model, opts, ctx) if method.apply is not None else model), base_params
