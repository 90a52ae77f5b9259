"""Load and validate an experiment file, turning every problem into one readable ConfigError.

The message names the file, the line, the key path (e.g. `training.learning_rate`), the
value found and what is allowed, with a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from peftlab.config.schema import ExperimentConfig
from peftlab.errors import ConfigError, MethodNotApplicable


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read `path` (YAML), apply dotted-key `overrides`, validate. Raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    return parse_experiment(text, source=str(path), overrides=overrides)


def parse_experiment(
    text: str, source: str = "<experiment>", overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    try:
        raw = yaml.safe_load(text)
        lines = _line_index(yaml.compose(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the experiment must be a YAML mapping (name:, model:, task:, ...)")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, raw, lines, source)) from None
    # Method names and options are validated by each method's own options model.
    from peftlab.methods import validate_entry

    for i, entry in enumerate(cfg.methods):
        try:
            validate_entry(entry, cfg.task)
        except (ConfigError, MethodNotApplicable) as e:
            line = lines.get(("methods", i))
            where = f"{source}:{line}" if line else source
            raise ConfigError(f"{where}: methods[{i}] ({entry.name}): {e}") from None
    return cfg


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _line_index(node: yaml.Node | None, path: tuple = ()) -> dict[tuple, int]:
    """Map key paths to 1-based line numbers from the composed YAML node tree."""
    out: dict[tuple, int] = {}
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            out.update({p: ln for p, ln in _line_index(v, (*path, key)).items() if p != (*path, key)})
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_line_index(v, (*path, i)))
    return out


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = ExperimentConfig
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if part == "methods":
            from peftlab.config.schema import MethodEntry

            model = MethodEntry
    return sorted(model.model_fields) if model else []


def _format(e: ValidationError, raw: Any, lines: dict[tuple, int], source: str) -> str:
    msgs = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = None
        for n in range(len(loc), -1, -1):
            line = lines.get(loc[:n])
            if line:
                break
        where = f"{source}:{line}" if line else source
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            msgs.append(f"{where}: unknown key {key!r}.{hint} Allowed here: {', '.join(allowed)}")
        elif err["type"] == "missing":
            msgs.append(f"{where}: missing required key {key!r}")
        else:
            value = err.get("input")
            shown = repr(value) if not isinstance(value, dict) else "{...}"
            msg = err["msg"].removeprefix("Value error, ")
            msgs.append(f"{where}: {key} = {shown}: {msg}")
    return "\n".join(msgs)
