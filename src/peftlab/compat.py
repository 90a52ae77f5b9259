"""Where peftlab meets library versions: API names that moved, and pairs known to break.

transformers 5.24 renamed the KV cache argument and output field `past_key_values` to `cache`
(forward, `generate` and the output classes). The old name still works there but warns that it
goes away in 5.40, and before 5.24 only the old name exists. peftlab passes and reads the cache
under whichever name the installed version takes, so it is warning-free on both.

peft 0.21 still looks the cache up under the old name. With transformers >= 5.24 that breaks
two things (measured with transformers 5.24.0 and peft 0.21.2, `scripts/check-latest.sh`):
- prefix tuning on models whose forward no longer has a `past_key_values` argument (every
  encoder classifier): peft refuses at the first step ("Model does not support past key values");
- peft's own `generate` for prompt-learning adapters: it no longer finds the cache, so it feeds
  the virtual tokens again at every step, and the outputs are wrong.
The lock file and pyproject's bound keep transformers below 5.24; `version_problem` turns a
user's own environment with that pair into a preflight error instead of a traceback at step 1.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import inspect
from typing import Any

from packaging.version import Version


@functools.cache
def cache_name() -> str:
    """The keyword (and output field) that carries the KV cache: 'cache' or 'past_key_values'."""
    from transformers.generation.utils import GenerationMixin

    params = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kw(cache: Any) -> dict[str, Any]:
    """`{name: cache}` for a forward or `generate` call."""
    return {cache_name(): cache}


def cache_of(output: Any) -> Any:
    """The KV cache of a model or `generate` output."""
    return getattr(output, cache_name())


def version_of(package: str) -> Version | None:
    try:
        return Version(md.version(package))
    except md.PackageNotFoundError:
        return None


# (peft below, transformers from): the pair breaks peft's prompt learning (see the module).
_PROMPT_LEARNING_BREAK = (Version("0.22"), Version("5.24"))


def prompt_learning_broken() -> bool:
    """Whether the installed peft and transformers are the pair that breaks prompt learning."""
    peft_v, tf_v = version_of("peft"), version_of("transformers")
    if peft_v is None or tf_v is None:
        return False
    below, since = _PROMPT_LEARNING_BREAK
    return peft_v < below and Version(tf_v.base_version) >= since


def version_problem(virtual_tokens: bool, task_uses_peft_generate: bool, encoder_prefix: bool) -> str | None:
    """Why a prompt-learning method cannot run correctly on the installed versions, or None.

    `encoder_prefix`: prefix tuning on a model whose forward takes no past_key_values (encoder
    classifiers). `task_uses_peft_generate`: evaluation goes through peft's `generate` (seq2seq,
    beam search), which is wrong on the broken pair; peftlab's own greedy path for causal LMs is
    not (tests/test_generation.py checks it against a step-by-step reference)."""
    if not virtual_tokens or not prompt_learning_broken():
        return None
    if not (encoder_prefix or task_uses_peft_generate):
        return None
    what = ("prefix tuning on this model fails at its first step" if encoder_prefix
            else "peft's generate gives wrong outputs for prompt-learning adapters")
    return (f"peft {version_of('peft')} with transformers {version_of('transformers')}: {what} "
            f"(transformers 5.24 renamed past_key_values to cache). Install the tested set "
            f"(./scripts/setup.sh, or pip install -c constraints.txt peftlab), or "
            f'pip install "transformers<5.24"')
