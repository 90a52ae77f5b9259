"""Writes the benchmark's tables and charts into its README from `results/TASK.json`: each task's
part sits between `<!-- results:TASK -->` and `<!-- /results:TASK -->`, and the prose around it
is kept as written. Charts are the report's own (`peftlab.report.plots`), as PNG beside the results."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TEMPLATE = "# peftlab benchmark\n\n{parts}\n"


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _config(c: dict[str, Any] | None) -> str:
    if not c:
        return ""
    lr = c.get("learning_rate")
    rest = ", ".join(f"{k} {v}" for k, v in c.items() if k != "learning_rate" and v is not None)
    return ", ".join(x for x in (f"lr {lr:.2g}" if lr else "", rest) if x)


def table(res: dict[str, Any]) -> str:
    from peftlab.report.fmt import fmt_value

    main = res["main_metric"]
    rows = res["rows"]
    others = sorted({k.removesuffix("_ci_low") for r in rows for k in r if k.endswith("_ci_low")}
                    - {main, "forgetting"})
    forgetting = any(r.get("forgetting") is not None for r in rows)
    head = ["rank", "group", "method", f"{main} [95% CI]", *others, "chosen on validation", "trainable",
            "train s", "peak MB", "adapter"] + (["forgetting [95% CI]"] if forgetting else [])
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        ci = f" [{_f(r.get(f'{main}_ci_low'))}, {_f(r.get(f'{main}_ci_high'))}]" if r.get(f"{main}_ci_low") is not None else ""
        mark = (" ★" if r.get("recommended") else "") + (" ‡" if r.get("collapsed") else "")
        cells = [_f(r.get("rank"), "{}"), _f(r.get("rank_group"), "{}"), r["run"] + mark,
                 fmt_value(main, r.get(main)) + ci, *[fmt_value(m, r.get(m)) for m in others],
                 _config(r.get("configuration")),
                 fmt_value("trainable_percent", r.get("trainable_percent")),
                 fmt_value("train_seconds", r.get("train_seconds")) + (" †" if r.get("timed_under_load") else ""),
                 *[fmt_value(k, r.get(k)) for k in ("peak_memory_mb", "adapter_bytes")]]
        if forgetting:
            cells.append(fmt_value("forgetting", r.get("forgetting")) + (
                f" [{_f(r.get('forgetting_ci_low'), '{:.3f}')}, {_f(r.get('forgetting_ci_high'), '{:.3f}')}]"
                if r.get("forgetting_ci_low") is not None else ""))
        out.append("| " + " | ".join(cells) + " |")
    collapsed = [r for r in rows if r.get("collapsed")]
    if collapsed:
        out += ["", "‡ its test predictions collapsed onto one class (the leaderboard's flag): "
                + "; ".join(f"{r['run']}: {r['collapsed']}" for r in collapsed) + "."]
    loaded = [r for r in rows if r.get("timed_under_load")]
    if loaded:
        out += ["", "† timed while other jobs shared the 2 cores (the highest load average around its runs: "
                + ", ".join(f"{r['run']} {r['timed_under_load']:.1f}" for r in loaded)
                + "): its seconds are not comparable with the others' (its train CPU seconds, in the results file, "
                "are less affected)."]
    return "\n".join(out)


def chart(res: dict[str, Any], folder: Path) -> Path | None:
    """The ranking chart: each method's main metric with its 95% interval and rank group."""
    from peftlab.report import plots
    from peftlab.report.collect import method_color

    main = res["main_metric"]
    ranked = [r for r in res["rows"] if r.get(main) is not None]
    if not ranked:
        return None
    rows = [plots.Ranked(r["run"], i, method_color(r.get("method") or r["run"]), r[main], r.get(f"{main}_ci_low"),
                         r.get(f"{main}_ci_high"), r.get("rank_group")) for i, r in enumerate(ranked)]
    title = f"{res['task']}: {main}, mean over seeds with 95% intervals (rank group in brackets)"
    return plots.ranking_png(folder / f"{res['task']}-ranking.png", title, rows, main)


def pareto(res: dict[str, Any], folder: Path, key: str = "trainable_params") -> Path | None:
    """The main metric against one of the report's Pareto costs, its frontier dashed, as the
    report draws it (one point per method: its mean over seeds and its interval)."""
    from peftlab.report import plots
    from peftlab.report.collect import method_color
    from peftlab.report.recommend import PARETO_COSTS, pareto_front

    main = res["main_metric"]
    label, log = next((lb, lg) for k, lb, lg, _ in PARETO_COSTS if k == key)
    rs = [r for r in res["rows"] if r.get("rank") is not None and r.get(main) is not None and r.get(key) is not None]
    if len(rs) < 2:
        return None
    front = set(pareto_front([(float(r[key]), float(r[main])) for r in rs]))
    pts = [plots.Point(r["run"], i, method_color(r.get("method") or r["run"]), float(r[key]), float(r[main]),
                       i in front, r.get(f"{main}_ci_low"), r.get(f"{main}_ci_high")) for i, r in enumerate(rs)]
    return plots.pareto_png(folder / f"{res['task']}-pareto-{key}.png",
                            f"{res['task']}: {main} vs {label} (named: the frontier)", pts, key, label, main, log,
                            label=lambda p: p.frontier)


def part(res: dict[str, Any], folder: Path, readme: Path) -> str:
    png = chart(res, folder)
    costs = [p for k in ("trainable_params", "forgetting") if (p := pareto(res, folder, k)) is not None]
    failed = res.get("failed") or {}
    state = ("complete" if res["complete"] else f"in progress: {len(res['done'])} of {len(res['methods'])} methods "
             "done; rank groups are among those done") + (f"; {len(failed)} failed" if failed else "")
    m = res.get("machine") or {}
    v = res.get("versions") or {}
    results = (folder / f"{res['task']}.json").relative_to(readme.parent)
    lines = [f"**{res['about']}** ({state}; updated {res['updated']}).", "",
             f"Command: `{res['command']}`. Machine: {m.get('cpu', '?')} ({m.get('cpu_capability', '?')}, "
             f"{m.get('device', '?')}, {m.get('torch_threads', '?')} threads); peftlab {v.get('peftlab', '?')}, "
             f"torch {v.get('torch', '?')}, transformers {v.get('transformers', '?')}, peft {v.get('peft', '?')}"
             + (f"; {res['code']}" if res.get("code") else "") + ". "
             f"Results: [`{results}`]({results}).", ""]
    if res.get("recommendation"):
        lines += [f"peftlab's answer (★): {res['recommendation']}", ""]
    if png is not None:
        rel = png.relative_to(readme.parent)
        lines += [f"![{res['task']} ranking]({rel})", ""]
    for p in costs:  # the frontier: no other method is both better and cheaper on that cost
        lines += [f"![{p.stem}]({p.relative_to(readme.parent)})", ""]
    from vs_peft import REFERENCE
    from vs_peft import part as beside_peft

    tail = ["", "Methods that ended without a score (each tried once, as every other: not retried by a later command):",
            "", *[f"- {m}: {why}" for m, why in sorted(failed.items())]] if failed else []
    tail += ["", beside_peft(res)] if REFERENCE.is_file() else []
    return "\n".join(lines + [table(res)] + tail)


def write_readme(results: Path, readme: Path) -> str:
    """Fill each task's part of README (made from a template when absent); returns its path."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else None
    parts = []
    for f in sorted(results.glob("*.json")):
        res = json.loads(f.read_text())
        body = f"<!-- results:{res['task']} -->\n{part(res, results, readme)}\n<!-- /results:{res['task']} -->"
        if text is None:
            parts.append(f"## {res['task']}\n\n{body}")
        elif f"<!-- results:{res['task']} -->" in text:
            text = re.sub(rf"<!-- results:{res['task']} -->.*?<!-- /results:{res['task']} -->",
                          lambda _, b=body: b, text, flags=re.S)
        else:
            text += f"\n## {res['task']}\n\n{body}\n"
    readme.write_text(text if text is not None else TEMPLATE.format(parts="\n\n".join(parts)), encoding="utf-8")
    return str(readme)
