"""Generation health: did the model learn to stop, and does it repeat itself?

- hit_max_pct: outputs that ran into max_new_tokens without a stop token (EOS not learned).
- empty_pct: empty outputs.
- repeat_3gram_pct: share of word 3-grams that repeat an earlier 3-gram in the same output
  ("Ghana Ghana Ghana ..." scores high), next to the same rate in the references, so a
  naturally repetitive task is not flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def repeat_rate(texts: Sequence[str], n: int = 3) -> float:
    rep = tot = 0
    for t in texts:
        words = t.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        tot += len(grams)
        rep += len(grams) - len(set(grams))
    return 100.0 * rep / tot if tot else 0.0


def generation_health(outputs: Sequence[str], stopped: Sequence[bool | None], references: Sequence[str]) -> dict[str, Any]:
    n = max(len(outputs), 1)
    hit = sum(1 for s in stopped if s is False)
    empty = sum(1 for o in outputs if not o.strip())
    h = {
        "hit_max_pct": 100.0 * hit / n,
        "empty_pct": 100.0 * empty / n,
        "repeat_3gram_pct": repeat_rate(outputs),
        "reference_repeat_3gram_pct": repeat_rate(references),
        "mean_output_words": sum(len(o.split()) for o in outputs) / n,
        "mean_reference_words": sum(len(r.split()) for r in references) / n,
    }
    problems = []
    if h["hit_max_pct"] > 20:
        problems.append(f"{h['hit_max_pct']:.0f}% of outputs never stopped (EOS not learned)")
    if h["repeat_3gram_pct"] > max(10.0, 3 * h["reference_repeat_3gram_pct"]):
        problems.append(f"repetitive outputs ({h['repeat_3gram_pct']:.0f}% repeated 3-grams)")
    if h["empty_pct"] > 10:
        problems.append(f"{h['empty_pct']:.0f}% empty outputs")
    h["problems"] = problems
    h["healthy"] = not problems
    return h
