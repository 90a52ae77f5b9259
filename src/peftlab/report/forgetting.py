"""The leaderboard's forgetting columns (`evaluate.forgetting` measures it per run).

A row gets `forgetting` (nats/token: the mean over the reference examples of the run's loss minus
the base model's, which are the zero-shot row's own losses, so the difference is paired example by
example with the zero-shot row), `forgetting_ci_low` / `forgetting_ci_high` (95% bootstrap
interval over the examples; a two-level bootstrap over seeds and examples when the row has
several seeds), `forgetting_n` (reference examples) and `forgetting_reference` (the set's key:
rows measured on different sets cannot be compared). Classification rows get `forgetting: None`
and `forgetting_na`, the reason it is not measured. Rows whose runs recorded none (runs made
before forgetting was measured, or with `evaluation.forgetting: false`) get no key.
"""

from __future__ import annotations

from typing import Any

from peftlab.evaluate.forgetting import NOT_MEASURED, per_example
from peftlab.store import Run

FOOTNOTE = ("\n(forgetting: the run's loss minus the base model's on a general reference set, nats/token, 95% CI; "
            "0 for the zero-shot row, lower is better; n/a: classification, not measured)")
KEYS = ("forgetting", "forgetting_ci_low", "forgetting_ci_high", "forgetting_n", "forgetting_reference")


def _recorded(run: Run) -> dict[str, Any] | None:
    f = (run.info or {}).get("forgetting")
    return f if run.status == "done" and isinstance(f, dict) and isinstance(f.get("mean"), int | float) else None


def annotate(row: dict[str, Any], runs: list[Run], generative: bool) -> None:
    """Put the forgetting keys of the row made of `runs` (its seeds) on `row`."""
    if not generative:
        row["forgetting"] = None
        row["forgetting_na"] = NOT_MEASURED
        return
    done = [(x, f) for x in runs if (f := _recorded(x)) is not None]
    if not done:
        return
    refs = {f["reference"] for _, f in done}
    if len(done) == 1:
        f = done[0][1]
        row.update(forgetting=f["mean"], forgetting_ci_low=f.get("ci_low"), forgetting_ci_high=f.get("ci_high"),
                   forgetting_n=f.get("n"), forgetting_reference=f["reference"])
        return
    from peftlab.stats.intervals import seeds_ci

    per = [per_example(x.file("forgetting_examples")) for x, _ in done]
    mean = sum(f["mean"] for _, f in done) / len(done)
    row.update(forgetting=mean, forgetting_ci_low=None, forgetting_ci_high=None,
               forgetting_n=done[0][1].get("n"), forgetting_reference=next(iter(refs)) if len(refs) == 1 else None)
    if len(refs) == 1 and all(p for p in per):
        ci = seeds_ci([p for p in per if p])
        row.update(forgetting=ci.value, forgetting_ci_low=ci.low, forgetting_ci_high=ci.high)


def text(r: dict[str, Any]) -> str:
    """The terminal cell: '0.123 [0.101, 0.145]', 'n/a' (classification) or '-' (not recorded)."""
    if r.get("forgetting_na"):
        return "n/a"
    v, lo, hi = r.get("forgetting"), r.get("forgetting_ci_low"), r.get("forgetting_ci_high")
    if not isinstance(v, int | float):
        return "-"
    return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if isinstance(lo, int | float) and isinstance(hi, int | float)
                         else "")


def mixed_references(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows' forgetting was measured on more than one reference set."""
    return len({r["forgetting_reference"] for r in rows if r.get("forgetting_reference")}) > 1
