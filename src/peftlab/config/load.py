"""Load and validate an experiment file, turning every problem into one readable ConfigError.

The message names the file, the line, the key path (e.g. `training.learning_rate`), the
value found and what is allowed, with a "did you mean" for misspelt keys. The loader returns
a `LoadedExperiment`: the config plus the line of every key, so a problem found later (in the
data, or by applying a method) can name its line too (`where`) without reading the file again.

A new schema key goes in `schema.py`; a new check that needs the file's lines goes here.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from peftlab.config.messages import clean_loc, key_text, merged, plain
from peftlab.config.schema import NAME_RE, ExperimentConfig
from peftlab.errors import ConfigError, MethodNotApplicable


@dataclass(frozen=True)
class LoadedExperiment:
    """A validated experiment, where it came from (`source`: the file, for messages), its text,
    and the 1-based line of each key path in that text (`("training", "seed")`, `("methods", 0)`)."""

    cfg: ExperimentConfig
    source: str
    lines: dict[tuple, int] = field(default_factory=dict)
    text: str | None = None

    def where(self, key_path: str | tuple) -> str:
        """`source:line` of a key (dotted, e.g. `data.prompt`, or a path tuple); the source alone
        when the key is not in the file (a default, an override)."""
        path = key_path if isinstance(key_path, tuple) else _dotted_path(key_path)
        line = self.lines.get(path)
        return f"{self.source}:{line}" if line else self.source

    def method_where(self, run_name: str) -> str:
        """`source:line` of the `methods` entry whose run name is `run_name`."""
        for i, m in enumerate(self.cfg.methods):
            if m.run_name == run_name:
                return self.where(("methods", i))
        return self.source


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None,
                    origins: dict[str, str] | None = None) -> LoadedExperiment:
    """Read `path` (YAML), apply dotted-key `overrides`, validate. Raises ConfigError.

    `origins`: how each override was given (`{"tuning.trials": "--tune 0"}`), for messages about
    its value; an override without one is named `override KEY=VALUE`."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.y*ml"))[:5]
        hint = f" (it has: {', '.join(found)})" if found else ""
        raise ConfigError(f"{path}: is a folder; give the experiment's YAML file{hint}")
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    return parse_experiment(text, source=str(path), overrides=overrides, origins=origins)


def parse_experiment(
    text: str, source: str = "<experiment>", overrides: dict[str, Any] | None = None,
    origins: dict[str, str] | None = None,
) -> LoadedExperiment:
    try:
        _refuse_aliases(text, source)
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        hint = f" ({context})" if context and context != problem else ""
        raise ConfigError(
            f"{where}: YAML syntax error: {problem}{hint}. Check indentation (spaces, not tabs), colons "
            f"and quotes on that line"
        ) from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    _check_duplicate_keys(node, source)
    lines = _line_index(node)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the experiment must be a YAML mapping (name:, model:, task:, ...)")
    given: dict[tuple, str] = {}
    for key, value in (overrides or {}).items():
        given[_dotted_path(key)] = label = (origins or {}).get(key) or f"override {key}={value!r}"
        _set_dotted(raw, key, value, label)
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, lines, source, given)) from None
    _check_extra(cfg, lines, source, given)
    # Method names and options are validated by each method's own options model.
    from peftlab.methods import validate_method

    for i, entry in enumerate(cfg.methods):
        try:
            validate_method(entry.name, entry.options, cfg.task, cfg.evaluation.num_beams)
        except (ConfigError, MethodNotApplicable) as e:
            line = lines.get(("methods", i))
            where = f"{source}:{line}" if line else source
            raise ConfigError(f"{where}: methods[{i}] ({entry.name}): {e}") from None
    return LoadedExperiment(cfg, source, lines, text)


def _refuse_aliases(text: str, source: str) -> None:
    """YAML aliases (`*name`) let a few hundred bytes stand for an exponentially large document
    (walking and validating it never ends). Experiment files have no use for them: refused, in one
    linear pass over the parser's events, before anything is built."""
    for event in yaml.parse(text):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise ConfigError(f"{source}:{line}: YAML alias *{event.anchor}: experiment files may not use anchors "
                              "and aliases; write the value out where it is used")


def line_index(text: str) -> dict[tuple, int]:
    """Key paths to 1-based lines of a YAML text (empty if it does not parse): for an experiment
    that did not come through the loader, e.g. one the web API built."""
    try:
        return _line_index(yaml.compose(text))
    except Exception:  # noqa: BLE001 - only used to decorate messages
        return {}


def _dotted_path(dotted: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def _set_dotted(raw: dict[str, Any], key: str, value: Any, label: str) -> None:
    node: Any = raw
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{label}: write keys as section.key, e.g. training.batch_size")
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, dict) and isinstance(node.get(p, {}), str) and p == "model" and i == 0:
            node[p] = {"path": node[p]}  # `model: name` is short for `model: {path: name}`
        if not isinstance(node, dict) or not isinstance(node.setdefault(p, {}), dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{label}: {where} is not a section with keys; it cannot hold {parts[-1]!r}")
        node = node[p]
    node[parts[-1]] = value


def _check_duplicate_keys(node: yaml.Node | None, source: str, path: tuple = ()) -> None:
    """YAML silently keeps the last of two equal keys; a repeated setting is almost always a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = getattr(k, "value", None)
            if isinstance(key, str):
                if key in seen:
                    dotted = ".".join(str(p) for p in (*path, key))
                    raise ConfigError(
                        f"{source}:{k.start_mark.line + 1}: key {dotted!r} appears twice (first on line "
                        f"{seen[key]}); keep one of them"
                    )
                seen[key] = k.start_mark.line + 1
            _check_duplicate_keys(v, source, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicate_keys(v, source, (*path, i))


def _check_extra(cfg: ExperimentConfig, lines: dict[tuple, int], source: str, given: dict[tuple, str]) -> None:
    """Checks pydantic's field constraints do not express: names safe as folder names (no
    trailing newline), and no NaN or infinite numbers anywhere."""
    for key, value in [(("name",), cfg.name)] + [(("methods", i), m.run_name) for i, m in enumerate(cfg.methods)]:
        if not NAME_RE.fullmatch(value):
            line = lines.get(key) or lines.get(key[:1])
            where = f"{source}:{line}" if line else source
            raise ConfigError(
                f"{where}: {key_text(key)} = {value!r}: use letters, digits, '.', '_' and '-' only "
                f"(it becomes a folder name)"
            )

    def walk(v: Any, path: tuple) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            where = _origin(lines, path, source, given)[0]
            raise ConfigError(f"{where}: {key_text(path)} = {v}: must be a finite number")
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, (*path, k))
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                walk(x, (*path, i))

    walk(cfg.model_dump(mode="python"), ())


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
    """The keys allowed beside the unknown key at `loc`: the fields of the section it is in."""
    from peftlab.config.schema import MethodEntry, SearchRange

    model: type[BaseModel] | None = ExperimentConfig
    parts = list(loc[:-1])
    while parts and model is not None:
        part = parts.pop(0)
        if isinstance(part, int):
            continue
        if model is MethodEntry and part == "search":  # search: {key: {low, high, log}}
            parts, model = parts[1:], SearchRange
            continue
        field = model.model_fields.get(str(part))
        found = [a for a in (field.annotation, *get_args(field.annotation)) if isinstance(a, type)] if field else []
        model = next((a for a in found if issubclass(a, BaseModel)), None)
        if part == "methods":
            model = MethodEntry
    return sorted(model.model_fields) if model and not parts else []


def _where(lines: dict[tuple, int], path: tuple, source: str) -> str:
    """`file:line` of the key at `path`, or of its nearest enclosing key that has a line."""
    for n in range(len(path), -1, -1):
        line = lines.get(path[:n])
        if line:
            return f"{source}:{line}"
    return source


def _format(e: ValidationError, lines: dict[tuple, int], source: str, given: dict[tuple, str]) -> str:
    """One line per problem, each naming where it is (`file:line`, or the flag or override that set
    the value) and what the value must be, in `messages.plain`'s words."""
    msgs: list[str] = []
    for err in merged(e.errors()):
        loc = clean_loc(err["loc"])
        key = key_text(loc)
        where, flag = _origin(lines, loc, source, given)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            msg = f"{where}: unknown key {key!r}.{hint} Allowed here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = f"{where}: missing required key {key!r}"
        elif not loc or (err["type"] == "value_error" and (isinstance(err.get("input"), dict) or _named(err))):
            # A whole-section check (model validator): its message may start with the key at fault.
            text = plain(err)
            path = _named(err)
            if path and (path in lines or path[:1] in lines or any(path[: len(g)] == g for g in given)):
                where, flag = _origin(lines, path, source, given)
                msg = f"{where}: {text}"
            else:
                msg = f"{where}: {key + ': ' if loc else ''}{text}"
        else:
            value = err.get("input")
            text = plain(err)
            if flag:
                msg = f"{where}: {key} {text}" if text.startswith(("must", "needs")) else f"{where}: {key}: {text}"
            else:
                shown = repr(value) if not isinstance(value, dict) else "{...}"
                msg = f"{where}: {key} = {shown}: {text}"
        if msg not in msgs:
            msgs.append(msg)
    return "\n".join(msgs)


def _named(err: dict[str, Any]) -> tuple:
    """The key path a validator's message starts with (`methods[0]: ...`, `data.target: ...`), or ()."""
    named = plain(err).split(":", 1)[0].strip()
    return _dotted_path(named.replace("[", ".").replace("]", "")) if named and " " not in named else ()


def _origin(lines: dict[tuple, int], path: tuple, source: str, given: dict[tuple, str]) -> tuple[str, bool]:
    """Where the value at `path` came from: the flag or override that set it (True), else the
    file's line of the key or of its nearest enclosing key (False). An override wins when it set
    this key or a section around it, or made a section the file does not have (`--tune N` makes
    `tuning:`): line 1 of the file is never blamed for what a flag said."""
    in_file = next((n for n in range(len(path), 0, -1) if path[:n] in lines), 0)
    best, label = 0, None
    for g, text in given.items():
        common = next((n for n in range(min(len(g), len(path)), 0, -1) if g[:n] == path[:n]), 0)
        if (common == len(g) or common > in_file) and common > best:
            best, label = common, text
    if label:
        return label, True
    return _where(lines, path, source), False
