"""The method registry. Adding a method = one module here + one line in REGISTRY.

A method's own behaviour (options, how it wraps the model, its loss term and callbacks) goes in
its module; `validate_method` is the one check of a method against a task, on plain values, so
this package does not depend on the experiment schema (`peftlab.config`)."""

from __future__ import annotations

import difflib
from typing import Any, Protocol

from pydantic import ValidationError

from peftlab.compat import version_problem
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.methods import (
    adalora,
    adamss,
    adaption_prompt,
    beft,
    boft,
    c3a,
    cartridge,
    cpt,
    deft,
    delora,
    dora,
    fourierft,
    frod,
    full,
    glora,
    gralora,
    hira,
    hra,
    ia3,
    lily,
    ln_tuning,
    loha,
    lokr,
    lora,
    miss,
    oft,
    osf,
    p_tuning,
    peanut,
    prefix_tuning,
    prompt_tuning,
    psoft,
    pvera,
    qlora,
    randlora,
    road,
    shadow,
    shira,
    supertuning,
    tinylora,
    unilora,
    vblora,
    vera,
    waveft,
    zero_shot,
)
from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.tasks.spec import spec

REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        zero_shot.METHOD,
        full.METHOD,
        lora.METHOD,
        dora.METHOD,
        adalora.METHOD,
        ia3.METHOD,
        prefix_tuning.METHOD,
        prompt_tuning.METHOD,
        p_tuning.METHOD,
        qlora.METHOD,
        # the low-rank and adapter family of peft 0.21
        loha.METHOD,
        lokr.METHOD,
        vera.METHOD,
        randlora.METHOD,
        miss.METHOD,
        hira.METHOD,
        lily.METHOD,
        road.METHOD,
        delora.METHOD,
        gralora.METHOD,
        tinylora.METHOD,
        adamss.METHOD,
        glora.METHOD,
        unilora.METHOD,
        deft.METHOD,
        frod.METHOD,
        pvera.METHOD,
        peanut.METHOD,
        supertuning.METHOD,
        osf.METHOD,
        psoft.METHOD,
        # orthogonal, Fourier/sparse, scaling, bias and prompt methods
        oft.METHOD,
        boft.METHOD,
        hra.METHOD,
        fourierft.METHOD,
        waveft.METHOD,
        shira.METHOD,
        c3a.METHOD,
        vblora.METHOD,
        ln_tuning.METHOD,
        beft.METHOD,
        cpt.METHOD,
        cartridge.METHOD,
        adaption_prompt.METHOD,
        shadow.METHOD,
    )
}


def _guess(name: str) -> list[str]:
    """The method a typo meant: swapped letters first (lroa -> lora, not road), then difflib's."""
    swapped = [m for m in REGISTRY if sorted(m) == sorted(name)]
    return swapped[:1] or difflib.get_close_matches(name, REGISTRY, n=1)


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        guess = _guess(name)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def validate_method(name: str, options: dict[str, Any], task: str, num_beams: int = 1) -> MethodOptions:
    """Check the method exists, applies to the task (and to the installed library versions:
    `peftlab.compat`, where `num_beams` matters), and its options are valid. Returns them parsed."""
    method = get_method(name)
    if task not in method.tasks:
        raise MethodNotApplicable(
            f"method {method.name!r} does not apply to task {task!r} "
            f"(it works on: {', '.join(sorted(method.tasks))}); remove it from `methods`"
        )
    s = spec(task)
    problem = version_problem(
        virtual_tokens=method.virtual_tokens is not None,
        task_uses_peft_generate=(s.generative and not s.decoder_only) or num_beams > 1,
        encoder_prefix=method.virtual_tokens == "kv" and not s.generative,
    )
    if problem:
        raise MethodNotApplicable(f"method {method.name!r}: {problem}")
    if options.get("quantize") not in (None, "none") and not method.quantizable:  # said, not an unknown option
        able = ", ".join(n for n, m in REGISTRY.items() if m.quantizable)
        raise MethodNotApplicable(
            f"method {method.name!r} cannot train on a 4-bit base (`quantize: {options['quantize']}`): peft has no "
            f"bitsandbytes 4-bit layer for its adapter, so its layers cannot wrap a quantized linear layer. "
            f"Remove `quantize`, or use a method that has one: {able}"
        )
    try:
        return method.parse_options(options)
    except ValidationError as e:
        from peftlab.config.messages import clean_loc, key_text, plain

        msgs = []
        allowed = sorted(method.options.model_fields)
        for err in e.errors():
            key = key_text(clean_loc(err["loc"]))
            if err["type"] == "extra_forbidden":
                guess = difflib.get_close_matches(key, [*allowed, "label", "learning_rate", "search"], n=1)
                hint = f" Did you mean {guess[0]!r}?" if guess else ""
                msgs.append(f"unknown option {key!r}.{hint} Allowed: {', '.join(allowed) or '(none)'}")
            else:
                msgs.append(f"{key} = {err.get('input')!r}: {plain(err)}")
        raise ConfigError("; ".join(msgs)) from None


class _Entry(Protocol):  # what validate_entry reads of a `config.MethodEntry`
    name: str
    options: dict[str, Any]


def validate_entry(entry: _Entry, task: str, num_beams: int = 1) -> MethodOptions:
    """`validate_method` for a method entry of an experiment (its `name` and `options`)."""
    return validate_method(entry.name, entry.options, task, num_beams)


__all__ = ["REGISTRY", "Method", "MethodContext", "MethodOptions", "get_method", "validate_entry", "validate_method"]
