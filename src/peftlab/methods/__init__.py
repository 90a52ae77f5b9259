"""The method registry. Adding a method = one module here + one line in REGISTRY."""

from __future__ import annotations

import difflib

from pydantic import ValidationError

from peftlab.compat import version_problem
from peftlab.config.schema import MethodEntry
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.methods import (
    adalora,
    adamss,
    deft,
    delora,
    dora,
    frod,
    full,
    glora,
    gralora,
    hira,
    ia3,
    lily,
    loha,
    lokr,
    lora,
    miss,
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
    supertuning,
    tinylora,
    unilora,
    vera,
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
    )
}


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        guess = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def validate_entry(entry: MethodEntry, task: str, num_beams: int = 1) -> MethodOptions:
    """Check the method exists, applies to the task (and to the installed library versions:
    `peftlab.compat`), and its options are valid."""
    method = get_method(entry.name)
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
    try:
        return method.parse_options(entry.options)
    except ValidationError as e:
        msgs = []
        allowed = sorted(method.options.model_fields)
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                guess = difflib.get_close_matches(key, allowed, n=1)
                hint = f" Did you mean {guess[0]!r}?" if guess else ""
                msgs.append(f"unknown option {key!r}.{hint} Allowed: {', '.join(allowed) or '(none)'}")
            else:
                msgs.append(f"{key} = {err.get('input')!r}: {err['msg']}")
        raise ConfigError("; ".join(msgs)) from None


__all__ = ["REGISTRY", "Method", "MethodContext", "MethodOptions", "get_method", "validate_entry"]
