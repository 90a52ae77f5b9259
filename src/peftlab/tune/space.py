"""Each method's search space: what equal-budget tuning varies, with documented defaults.

The default space of a method is built from what it is, not from its name:
- the learning rate, log-uniform over a decade either side of the method's own default for the
  task (prompt methods sit around 1e-2, LoRA around 2e-4, full fine-tuning around 5e-5);
- the knobs its options have, where they matter: the rank `r` of the LoRA family (4-32) and
  its `alpha` (8-64), AdaLoRA's starting rank `init_r` (12-32), the number of virtual tokens of
  prompt methods (10-40), the width of p-tuning's prompt encoder (64-256).
A method entry's `search:` replaces the default for each key it names (a list of choices, or
`{low, high, log}`); a key that is neither `learning_rate` nor one of the method's options is an
error, as is an empty or inverted range or a choice the method does not take (checked before anything
runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.config.schema import MethodEntry, SearchRange
from peftlab.errors import ConfigError
from peftlab.methods import Method

LR_DECADES = 1.0  # the learning-rate range spans this many decades on each side of the default

# option -> default choices, for the methods whose options model has it
KNOBS: dict[str, list[Any]] = {
    "r": [4, 8, 16, 32],
    "alpha": [8, 16, 32, 64],
    "init_r": [12, 16, 24, 32],  # above AdaLoRA's target_r (8): it prunes down to it
    "num_virtual_tokens": [10, 20, 40],
    "encoder_hidden_size": [64, 128, 256],
}


@dataclass(frozen=True)
class Param:
    """One tuned key: `choices`, or a numeric range `low`..`high` (log scale if `log`; integers if `integer`)."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} {self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


def default_space(method: Method, task: str) -> dict[str, Param]:
    if not method.trains:
        return {}
    lr = method.learning_rate(task)
    space = {"learning_rate": Param("learning_rate", low=lr / 10**LR_DECADES, high=lr * 10**LR_DECADES, log=True)}
    fields = method.options.model_fields
    for key, choices in KNOBS.items():
        if key in fields:
            space[key] = Param(key, choices=tuple(choices))
    return space


def space_for(entry: MethodEntry, method: Method, task: str) -> dict[str, Param]:
    """The entry's search space: its method's default with the entry's `search` applied.
    Raises ConfigError naming the key for an unknown key or a method that trains nothing."""
    space = default_space(method, task)
    if entry.search and not method.trains:
        raise ConfigError(f"methods: {entry.run_name}: `search` given, but {entry.name} trains nothing, so there is "
                          "nothing to tune; remove its `search`")
    allowed = {"learning_rate", *method.options.model_fields}
    for key, given in (entry.search or {}).items():
        if key not in allowed:
            import difflib

            guess = difflib.get_close_matches(key, sorted(allowed), n=1) or [
                a for a in sorted(allowed) if key.startswith(a) or a.startswith(key)][:1]
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            raise ConfigError(f"methods: {entry.run_name}: search.{key}: not a tunable key of {entry.name}.{hint} "
                              f"Tunable: {', '.join(sorted(allowed))}")
        if isinstance(given, SearchRange):
            field = method.options.model_fields.get(key)
            integer = field is not None and field.annotation is int
            space[key] = Param(key, low=given.low, high=given.high, log=given.log, integer=integer)
        else:
            space[key] = Param(key, choices=tuple(given))
        p = space[key]
        ends = [int(x) if p.integer and x == int(x) else x for x in (p.low, p.high)] if p.choices is None else []
        _check_values(entry, method, key, list(p.choices) if p.choices is not None else ends)
    return space


def _check_values(entry: MethodEntry, method: Method, key: str, values: list[Any]) -> None:
    """Every choice (or both ends of a range) of `key` is a value the method takes: a trial must not
    be the first to find that `r: [4, x]` has no rank `x`."""
    from pydantic import ValidationError

    from peftlab.config.messages import plain

    for v in values:
        if key == "learning_rate":
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ConfigError(f"methods: {entry.run_name}: search.learning_rate: {_shown(v)}: a learning rate "
                                  "must be a number above 0")
            continue
        try:
            method.parse_options({**entry.options, key: v})
        except ValidationError as e:
            err = next((x for x in e.errors() if x["loc"][:1] == (key,)), e.errors()[0])
            raise ConfigError(f"methods: {entry.run_name}: search.{key}: {_shown(v)}: {plain(err)}") from None


def _shown(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


def apply_params(entry: MethodEntry, params: dict[str, Any], label: str) -> MethodEntry:
    """The method entry a trial (or the tuned final run) trains: `params` set on it, renamed."""
    opts = {**entry.options, **{k: v for k, v in params.items() if k != "learning_rate"}}
    lr = params.get("learning_rate", entry.learning_rate)
    return entry.model_copy(update={"label": label, "options": opts, "learning_rate": lr, "search": None})
