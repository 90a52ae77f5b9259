"""The leaderboard's rows as text: a terminal table (each row's seeds under it), the same table
in Markdown (a README's or an issue's), JSON or CSV.
The rows themselves, and what each key means, are `report.leaderboard`'s."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from peftlab.report import forgetting
from peftlab.report.leaderboard import COST_KEYS, METRIC_ORDER

# One format per column, so a column reads at a glance (metrics are on a 0-100 scale).
COLUMN_FORMATS = {"eval_loss": "{:.4f}", "trainable_params": "{:,.0f}", "trainable_percent": "{:.3g}",
                  "peak_memory_mb": "{:,.0f}", "train_seconds": "{:,.1f}", "eval_seconds": "{:,.1f}",
                  "train_tokens_per_second": "{:,.1f}", "adapter_bytes": "{:,.0f}", "p_vs_best": "{:.2g}"}


def _fmt(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return COLUMN_FORMATS.get(col, "{:.2f}").format(v)


def _with_ci(r: dict[str, Any], metric: str) -> str:
    v = _fmt(metric, r.get(metric))
    lo, hi = r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high")
    return f"{v} [{lo:.2f}, {hi:.2f}]" if v != "-" and lo is not None and hi is not None else v


def render(rs: list[dict[str, Any]], fmt: str = "table", headline: str | None = None) -> str:
    """The rows as a terminal table (each row's seeds under it, with their own values), the same
    table in Markdown (`markdown`: a pipe table, its notes as paragraphs under it), JSON or CSV
    (one line per row; `seeds` as JSON). `headline`: the answer, printed under the table."""
    if fmt == "json":
        return json.dumps(rs, indent=2)
    metric_cols = [m for m in METRIC_ORDER if any(m in r for r in rs)]
    stat_cols = [c for c in ("rank_group", "p_vs_best", "n_seeds") if any(r.get(c) is not None for r in rs)]
    forget_cols = ["forgetting"] if any("forgetting" in r for r in rs) else []
    cols = ["rank", "run", "method", "status", *metric_cols, *forget_cols, *stat_cols, *COST_KEYS]
    if fmt == "csv":
        buf = io.StringIO()
        extra = sorted({k for r in rs for k in r} - set(cols))
        w = csv.DictWriter(buf, fieldnames=cols + extra)
        w.writeheader()
        for r in rs:
            w.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
        return buf.getvalue()
    from tabulate import tabulate

    from peftlab.report.fmt import fmt_p

    main = rs[0]["main_metric"] if rs else None
    short = {"trainable_params": "trainable", "trainable_percent": "train%", "peak_memory_mb": "peak MB",
             "train_seconds": "train s", "train_cpu_seconds": "train CPU s", "eval_seconds": "eval s", "train_tokens_per_second": "tok/s",
             "adapter_bytes": "adapter B", "rank_group": "group", "p_vs_best": "p vs best", "n_seeds": "seeds",
             "forgetting": "forgetting [95% CI]"}
    if main:
        short[main] = f"{main} [95% CI]"

    def line(r: dict[str, Any], seed: bool) -> list[str]:
        out = []
        for c in cols:
            if seed and c in ("rank", "rank_group", "p_vs_best", "n_seeds", "method"):
                out.append("")
            elif c == "run":
                out.append(f"  ↳ {r['run']}" if seed else r["run"] + (" ★" if r.get("recommended") else ""))
            elif c == main and not seed:
                out.append(_with_ci(r, c))
            elif c == "forgetting":
                out.append(forgetting.text(r))
            elif c == "p_vs_best":
                out.append(fmt_p(r.get(c), bool(r.get("p_vs_best_bound"))) if r.get(c) is not None else "-")
            elif c in ("rank", "rank_group", "n_seeds"):
                out.append("-" if r.get(c) is None else str(r[c]))
            else:
                out.append(_fmt(c, r.get(c)))
        return out

    table = []
    for r in rs:
        table.append(line(r, False))
        seeds = r.get("seeds") or []
        table += [line(sd, True) for sd in seeds] if len(seeds) > 1 else []
    md = fmt == "markdown"
    text = tabulate(table, headers=[short.get(c, c) for c in cols], tablefmt="github" if md else "simple",
                    disable_numparse=True)
    if md:
        text += "\n"  # the notes below a pipe table are paragraphs of their own
    errors = [f"  {r['run']}: {r['status']}: {r['error']}" for r in rs if r.get("error")]
    if rs:
        text += f"\n(ranked by {main}; one row per method configuration, the mean over its seeds (↳); group 1: not " \
                "significantly different from the best, paired test on the same test examples, over seeds too, " \
                "Holm-corrected)"
    if forget_cols:
        text += forgetting.FOOTNOTE + (" NOTE: rows were measured on different reference sets; their forgetting "
                                       "does not compare." if forgetting.mixed_references(rs) else "")
    text += ("\n" + "\n".join(errors) if errors else "")
    text += "".join(f"\n  {r['run']}: {r['dropped_text']}" for r in rs if r.get("dropped_text"))
    return text + (f"\n\n{headline}" if headline else "")
