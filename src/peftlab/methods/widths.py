"""Widths of the layers a method targets, for methods whose structure must divide them.

OFT and BOFT cut each layer's input into orthogonal blocks, C3A its input and output into
circulant blocks, VB-LoRA its rank vectors into sub-vectors of one length; FourierFT and WaveFT
learn at most one coefficient per weight, SHiRA at most the layer's own number of weights.
peft checks these per layer, deep inside `get_peft_model` (a ValueError at the first layer that
does not fit), or changes the value per layer with a warning (OFT). Here a method picks a
default that fits every targeted layer of the model at hand, and a user's value that does not
fit is refused before training, naming the widths. Shapes are read from the modules, so this
works on an empty (meta-device) model as well.
"""

from __future__ import annotations

import math
from typing import Any

from peftlab.errors import MethodNotApplicable


def target_widths(model: Any, targets: list[str]) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of every linear layer whose name matches one of `targets`
    (exactly or as its last dotted parts, as peft matches a list of names)."""
    from torch import nn

    out: dict[str, tuple[int, int]] = {}
    for name, mod in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        if isinstance(mod, nn.Linear):
            out[name] = (mod.in_features, mod.out_features)
        elif mod.__class__.__name__ == "Conv1D" and getattr(mod, "weight", None) is not None:
            out[name] = (int(mod.weight.shape[0]), int(mod.weight.shape[1]))  # GPT-2 style (in, out)
    return out


def largest_divisor(values: list[int], cap: int) -> int:
    """The largest d <= cap that divides every value (1 at worst)."""
    g = 0
    for v in values:
        g = math.gcd(g, v)
    for d in range(min(cap, g), 0, -1):
        if g % d == 0:
            return d
    return 1


def describe(widths: dict[str, tuple[int, int]], side: str) -> str:
    """'q_proj 64, v_proj 32' style summary of the distinct widths (`side`: in, out or both)."""
    seen: dict[str, set[str]] = {}
    for name, (i, o) in widths.items():
        leaf = name.rsplit(".", 1)[-1]
        w = {"in": str(i), "out": str(o), "both": f"{i}x{o}"}[side]
        seen.setdefault(leaf, set()).add(w)
    return ", ".join(f"{leaf} {'/'.join(sorted(ws, key=lambda s: (len(s), s)))}" for leaf, ws in sorted(seen.items()))


def require_divides(method: str, key: str, value: int, widths: dict[str, tuple[int, int]], side: str) -> None:
    """Refuse `value` unless it divides every targeted layer's input width (`side` "in") or both
    widths ("both"), naming the layers' widths and the values that would fit."""
    sizes = [w for i, o in widths.values() for w in ((i,) if side == "in" else (i, o))]
    bad = [s for s in sizes if s % value]
    if not bad:
        return
    g = 0
    for s in sizes:
        g = math.gcd(g, s)
    fits = [d for d in range(1, g + 1) if g % d == 0]
    what = "input width" if side == "in" else "input and output width"
    raise MethodNotApplicable(
        f"{method}: {key} = {value} must divide every targeted layer's {what}; the layers are "
        f"({'in x out' if side == 'both' else 'in'}) {describe(widths, side)}. Values that fit: "
        f"{', '.join(map(str, fits))}"
    )


def require_widths(method: str, widths: dict[str, tuple[int, int]], targets: list[str]) -> None:
    """Refuse targets that match no linear layer (these methods adapt nn.Linear only)."""
    if not widths:
        raise MethodNotApplicable(
            f"{method}: target_modules {targets} match no linear layer of this model (the method adapts "
            f"linear layers only)"
        )
