"""The HTML report: one self-contained file (styles, scripts and charts inline, nothing fetched).

    build_report(store, ["my-exp"], out="report.html")            # what `peftlab report` calls
    build_report(store, ["exp-a", "exp-b"], out="compare.html")   # `peftlab compare`

Sections: recommendation, leaderboard, curves, cost vs quality (Pareto), generation health,
per-class results (classification), outputs side by side, config diff, versions and
machine, and how each metric was computed.
"""

from __future__ import annotations

import ast
import datetime as _dt
import html
import importlib.resources
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.report import plots
from peftlab.report.collect import ReportData, RunView, add_bertscores, collect, references, version_drift
from peftlab.report.fmt import COST_LABELS, fmt_value, higher_is_better
from peftlab.report.leaderboard import COST_KEYS
from peftlab.report.recommend import PARETO_COSTS, Budget, Recommendation, pareto_front, recommend
from peftlab.store import Store

METRIC_PREFERRED = ("rouge1", "rouge2", "rougeL", "bleu", "bertscore_f1", "bertscore_precision", "bertscore_recall",
                    "accuracy", "macro_f1")
CURVES = (("train_loss", "Train loss"), ("eval_loss", "Validation loss"))
SECTIONS = (("recommendation", "Recommendation"), ("leaderboard", "Leaderboard"), ("curves", "Curves"),
            ("pareto", "Cost vs quality"), ("health", "Generation health"), ("classes", "Per class"),
            ("outputs", "Outputs"), ("config", "Config diff"), ("environment", "Versions & machine"),
            ("metrics", "How metrics are computed"))


@dataclass
class ReportOptions:
    budget: Budget = field(default_factory=Budget)
    sample: int = 20  # outputs shown side by side (a fixed random sample of test inputs)
    all_outputs: bool = False
    bertscore: bool = True
    bertscore_model: str | None = None  # overrides each experiment's evaluation.bertscore_model
    png_dir: Path | None = None
    title: str | None = None


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _asset(name: str) -> str:
    return (importlib.resources.files("peftlab.report") / "assets" / name).read_text(encoding="utf-8")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


# -- data preparation ------------------------------------------------------------------
def metric_columns(data: ReportData) -> tuple[list[str], list[str]]:
    """(headline metrics: main first, then the usual ones and test loss; detailed ones, e.g. ROUGE precision)."""
    present: list[str] = []
    for v in data.runs:
        for k, val in (v.run.metrics or {}).items():
            if isinstance(val, int | float) and k not in present:
                present.append(k)
    first = [data.main_metric] if data.main_metric in present else []
    preferred = [k for k in METRIC_PREFERRED if k in present and k not in first]
    rest = sorted(k for k in present if k not in first and k not in preferred and k != "eval_loss")
    return first + preferred + (["eval_loss"] if "eval_loss" in present else []), rest


def _best(data: ReportData, key: str, cost: bool) -> float | None:
    """Best value of a column: over finished runs; for costs, over runs that train.

    None when there is nothing to choose from (fewer than two values, or all equal): marking
    every cell of a tied column as best would say nothing.
    """
    vals = []
    for v in data.runs:
        if not v.done or (cost and not v.trains):
            continue
        x = v.cost(key) if cost else v.metric(key)
        if x is not None:
            vals.append(x)
    if len(vals) < 2 or len(set(vals)) == 1:
        return None
    return max(vals) if higher_is_better(key) else min(vals)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        if not d and prefix:
            out[prefix] = "{}"
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _normalise(v: Any) -> str:
    """Comparable text for a setting; peft writes sets as "{'q', 'v'}" in arbitrary order."""
    if isinstance(v, str) and v.startswith("{") and v.endswith("}"):
        try:
            parsed = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, set):
            return ", ".join(sorted(map(str, parsed)))
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if v is None:
        return "null"
    return str(v)


def run_settings(v: RunView) -> dict[str, str]:
    """What configured a run: the method's resolved settings plus the experiment it ran in."""
    res = v.run.resolved
    cfg = v.run.config or {}
    out: dict[str, Any] = {"method": v.run.method}
    if res:
        for k in ("options", "learning_rate", "total_steps", "precision", "peft_config"):
            if k in res:
                out.update(_flatten(res[k], k) if isinstance(res[k], dict) else {k: res[k]})
    else:  # the run failed before its settings were resolved: show what was written
        entry = cfg.get("entry") or {}
        out.update(_flatten(entry.get("options") or {}, "options"))
        out["learning_rate"] = entry.get("learning_rate")
    exp = dict(cfg.get("experiment") or (res or {}).get("experiment") or {})
    exp.pop("methods", None)
    out.update(_flatten(exp, "experiment"))
    return {k: _normalise(val) for k, val in out.items()}


def confusion(v: RunView) -> tuple[list[list[int]], list[str]] | None:
    """Confusion matrix (rows: true label, columns: predicted) from predictions.jsonl, with scikit-learn."""
    labels = (v.run.info or {}).get("labels")
    preds = v.predictions or []
    if not labels or not preds or "pred_id" not in preds[0]:
        return None
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix([p["gold_id"] for p in preds], [p["pred_id"] for p in preds], labels=list(range(len(labels))))
    return cm.tolist(), list(labels)


# -- sections --------------------------------------------------------------------------
def _legend(data: ReportData, runs: Iterable[RunView]) -> str:
    items = "".join(
        f'<label><input type="checkbox" class="toggle" data-series="{v.index}" checked> '
        f'<span class="swatch" style="background:{v.color}"></span>{esc(v.label)}</label>'
        for v in runs
    )
    return (f'<div class="legend">{items}<button type="button" class="all-on">all</button>'
            f'<button type="button" class="all-off">none</button></div>')


def _status(v: RunView) -> str:
    s = v.run.status
    return f'<span class="badge {esc(s)}">{esc(s)}</span>'


def _health_flag(v: RunView) -> str:
    h = v.health
    if h and not h.get("healthy", True):
        return f' <span class="badge flag" title="{esc("; ".join(h.get("problems", [])))}">⚠ unhealthy</span>'
    return ""


def section_header(data: ReportData, opts: ReportOptions) -> str:
    import importlib.metadata as md

    try:
        version = md.version("peftlab")
    except md.PackageNotFoundError:
        version = "?"
    exps = "; ".join(f"{e['name']} ({e.get('task')}, model {e.get('model')})" for e in data.experiments)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in SECTIONS
                  if (sid != "health" or data.generative) and (sid != "classes" or data.classification))
    title = opts.title or f"peftlab report: {data.title}"
    return (f'<header class="top"><h1>{esc(title)}</h1><div class="sub">{esc(exps)} · {len(data.runs)} runs · '
            f"ranked by {esc(data.main_metric)} · generated {esc(now)} by peftlab {esc(version)}</div></header>"
            f'<nav class="toc">{nav}</nav>')


def section_recommendation(rec: Recommendation, data: ReportData) -> str:
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in data.notes)
    return (f'<section id="recommendation"><h2>Recommendation</h2><div class="recommend">{rec.html}</div>{notes}'
            "</section>")


def _lb_head(key: str, main: str, label: str | None = None) -> str:
    up = higher_is_better(key)
    tip = f"{COST_LABELS.get(key, key)}{' (main metric)' if key == main else ''}: {'higher' if up else 'lower'} is better"
    return f'<th class="num" title="{esc(tip)}">{esc(label or key)} {"↑" if up else "↓"}</th>'


def _bertscore_note(data: ReportData) -> str:
    encoders = {(b.get("model_name"), b.get("num_layers")) for v in data.runs
                if (b := (v.run.info or {}).get("bertscore"))}
    if not encoders:
        return ""
    names = ", ".join(f"{esc(n)} (layer {esc(layer)})" for n, layer in sorted(encoders, key=str))
    return f" BERTScore encoder: <b>{names}</b> (see How metrics are computed)."


def section_leaderboard(data: ReportData) -> str:
    metrics, detail = metric_columns(data)
    costs = list(COST_KEYS)
    head = ['<th class="num" title="rank by the main metric">#</th>', "<th>run</th>", "<th>method</th>",
            "<th>status</th>"]
    head += [_lb_head(k, data.main_metric) for k in metrics]
    head += [_lb_head(k, data.main_metric, COST_LABELS.get(k, k)) for k in costs]
    head += [_lb_head(k, data.main_metric) for k in detail]
    best = {k: _best(data, k, cost=False) for k in metrics + detail}
    best.update({k: _best(data, k, cost=True) for k in costs})

    def cell(v: RunView, k: str, cost: bool) -> str:
        x = v.cost(k) if cost else v.metric(k)
        win = x is not None and v.done and (v.trains or not cost) and best[k] is not None and x == best[k]
        return f'<td class="{"num best" if win else "num"}" data-v="{"" if x is None else x}">{fmt_value(k, x)}</td>'

    body = []
    for v in data.runs:
        rank = v.row.get("rank")
        bad = v.run.status in ("failed", "diverged")
        note = ""
        if v.run.status == "diverged":
            note = f"at step {v.run.diverged_step}: {v.run.error or ''}"
        elif v.run.error:
            note = v.run.error
        status = _status(v) + (f'<div class="err">{esc(note)}</div>' if note else "")
        cells = [f'<td class="num" data-v="{rank if rank is not None else ""}">{rank if rank is not None else "–"}</td>',
                 f'<td class="nowrap" data-v="{esc(v.label.lower())}"><span class="swatch" '
                 f'style="background:{v.color}"></span>{esc(v.label)}{_health_flag(v)}</td>',
                 f'<td class="nowrap">{esc(v.run.method)}</td>', f'<td data-v="{esc(v.run.status)}">{status}</td>']
        cells += [cell(v, k, False) for k in metrics]
        cells += [cell(v, k, True) for k in costs]
        cells += [cell(v, k, False) for k in detail]
        body.append(f'<tr class="{"bad" if bad else ""}">{"".join(cells)}</tr>')
    return (
        '<section id="leaderboard"><h2>Leaderboard</h2>'
        f'<p class="note">Every run, ranked by <b>{esc(data.main_metric)}</b> (ties by test loss). Click a header to '
        "sort. ★ marks the best value of each column (metrics over finished runs, costs over runs that train; none "
        "when all tie). Metrics are on the test split; ROUGE, BLEU, BERTScore, accuracy and F1 on a 0-100 scale; "
        f"the detailed metric columns follow the costs.{_bertscore_note(data)}</p>"
        f'<div class="scroll"><table class="sortable" id="leaderboard-table"><thead><tr>{"".join(head)}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div></section>'
    )


def curve_specs(data: ReportData) -> list[tuple[str, str]]:
    """(curve name, title) of every quantity some run logged, in display order."""
    names = {n for v in data.runs for n in v.curves}
    specs = [(n, t) for n, t in CURVES if n in names]
    for cand in (f"val_{data.main_metric}", f"eval_{data.main_metric}", data.main_metric):
        if cand in names:
            specs.append((cand, f"Validation {data.main_metric}"))
            break
    if "learning_rate" in names:
        specs.append(("learning_rate", "Learning rate"))
    return specs


def curve_series(data: ReportData, name: str) -> list[plots.Series]:
    return [plots.Series(v.label, v.index, v.color, [(float(s), float(y)) for s, y in v.curves[name]],
                         dashed=v.run.status != "done")
            for v in data.runs if v.curves.get(name)]


def section_curves(data: ReportData) -> str:
    specs = curve_specs(data)
    if not specs:
        return ('<section id="curves"><h2>Curves</h2><p class="note">No run logged any curve (zero-shot runs do '
                "not train).</p></section>")
    with_curves = [v for v in data.runs if v.curves]
    charts = []
    for name, title in specs:
        series = curve_series(data, name)
        lr = name == "learning_rate"
        log = lr and plots.spans_decades([y for s in series for _, y in s.points])
        yfmt = (lambda x: "0" if x == 0 else f"{x:.0e}") if lr else None
        charts.append(f'<div class="chartbox" data-chart="{esc(name)}">'
                      f"{plots.line_chart_svg(title + (' (log scale)' if log else ''), series, 'step', name, yfmt, log)}"
                      "</div>")
    no_curve = [v.label for v in data.runs if not v.curves]
    extra = f" Not shown (no curve): {esc(', '.join(no_curve))}." if no_curve else ""
    return ('<section id="curves"><h2>Curves</h2><p class="note">All runs overlaid; tick a run to show or hide it in '
            "every chart. Dashed lines are runs that did not finish (a diverged run stops where it blew up)."
            f"{extra}</p>{_legend(data, with_curves)}<div class=\"charts\">{''.join(charts)}</div></section>")


def pareto_points(data: ReportData, key: str) -> list[plots.Point]:
    vs = [v for v in data.runs if v.done and v.metric(data.main_metric) is not None and v.cost(key) is not None]
    xy = [(v.cost(key) or 0.0, v.metric(data.main_metric) or 0.0) for v in vs]
    front = set(pareto_front(xy))
    return [plots.Point(v.label, v.index, v.color, x, y, i in front) for i, (v, (x, y)) in enumerate(zip(vs, xy,
                                                                                                         strict=True))]


def section_pareto(data: ReportData) -> str:
    charts = []
    plotted: dict[int, RunView] = {}
    for key, label, log, zero in PARETO_COSTS:
        pts = pareto_points(data, key)
        if not pts:
            continue
        for p in pts:
            plotted[p.index] = data.runs[p.index]
        front = " → ".join(p.label for p in sorted((p for p in pts if p.frontier), key=lambda p: p.x))
        svg = plots.pareto_svg(f"{data.main_metric} vs {label}", pts, key, label, data.main_metric, log, zero)
        charts.append(f'<div class="chartbox" data-chart="pareto-{esc(key)}">{svg}'
                      f'<p class="note">Frontier (cheapest first): {esc(front)}</p></div>')
    if not charts:
        return ('<section id="pareto"><h2>Cost vs quality</h2><p class="note">No finished run has both a score and '
                "its costs.</p></section>")
    runs = sorted(plotted.values(), key=lambda v: v.index)
    return ('<section id="pareto"><h2>Cost vs quality</h2><p class="note">The main metric against each cost. The '
            "dashed staircase is the Pareto frontier: runs (bold, outlined) that no other run beats on both quality "
            "and that cost. Everything below or right of it is dominated. Parameter counts and sizes are on a log "
            f"scale with 0 (zero-shot) at the far left.</p>{_legend(data, runs)}"
            f'<div class="charts">{"".join(charts)}</div></section>')


def section_health(data: ReportData) -> str:
    if not data.generative:
        return ""
    rows = []
    for v in data.runs:
        h = v.health
        if not h:
            continue
        ok = h.get("healthy", True)
        problems = "; ".join(h.get("problems", [])) or "–"
        rows.append(
            f'<tr class="{"" if ok else "bad"}"><td><span class="swatch" style="background:{v.color}"></span>'
            f'{esc(v.label)}</td><td>{"✔ healthy" if ok else "⚠ unhealthy"}</td>'
            f'<td class="num" data-v="{h.get("hit_max_pct", 0)}">{h.get("hit_max_pct", 0):.0f}%</td>'
            f'<td class="num" data-v="{h.get("empty_pct", 0)}">{h.get("empty_pct", 0):.0f}%</td>'
            f'<td class="num" data-v="{h.get("repeat_3gram_pct", 0)}">{h.get("repeat_3gram_pct", 0):.1f}% '
            f'<span class="note">(ref {h.get("reference_repeat_3gram_pct", 0):.1f}%)</span></td>'
            f'<td class="num" data-v="{h.get("mean_output_words", 0)}">{h.get("mean_output_words", 0):.1f} '
            f'<span class="note">(ref {h.get("mean_reference_words", 0):.1f})</span></td>'
            f'<td class="{"" if ok else "err"}">{esc(problems)}</td></tr>'
        )
    if not rows:
        body = '<p class="note">No finished generation run yet.</p>'
    else:
        body = ('<div class="scroll"><table class="sortable" id="health-table"><thead><tr><th>run</th><th>verdict</th>'
                '<th class="num">never stopped</th><th class="num">empty</th><th class="num">repeated 3-grams</th>'
                '<th class="num">mean words</th><th>problems</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')
    return ('<section id="health"><h2>Generation health</h2><p class="note">Per run, on the test outputs: share of '
            "outputs that ran into max_new_tokens without an end-of-sequence token (EOS not learned), empty outputs, "
            "and repeated word 3-grams next to the same rate in the references. Flagged when over 20% never stop, "
            f"over 10% are empty, or repetition is far above the references'.</p>{body}</section>")


def _cm_table(matrix: list[list[int]], labels: list[str]) -> str:
    head = "".join(f"<th>{esc(lab)}</th>" for lab in labels)
    rows = []
    for i, r in enumerate(matrix):
        total = sum(r) or 1
        cells = []
        for j, n in enumerate(r):
            a = n / total
            fg = "#fff" if a > 0.55 else "#1d2330"
            cells.append(f'<td class="{"diag" if i == j else ""}" style="background:rgba(47,93,138,{a:.2f});'
                         f'color:{fg}" title="true {esc(labels[i])}, predicted {esc(labels[j])}: {n} ({100 * a:.0f}% '
                         f'of the row)">{n}</td>')
        rows.append(f"<tr><th>{esc(labels[i])}</th>{''.join(cells)}</tr>")
    return (f'<table class="cm"><thead><tr><th>true ↓ / predicted →</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def section_classes(data: ReportData) -> str:
    if not data.classification:
        return ""
    cards = []
    for v in data.runs:
        cm = confusion(v)
        per = (v.run.info or {}).get("per_class")
        if cm is None and not per:
            continue
        parts = [f'<div class="card" data-run="{esc(v.label)}"><h3><span class="swatch" style="background:{v.color}">'
                 f"</span>{esc(v.label)}</h3>"]
        if cm is not None:
            parts.append(_cm_table(*cm))
        if per:
            rows = "".join(
                f'<tr><td>{esc(name)}</td><td class="num">{100 * d["precision"]:.1f}</td>'
                f'<td class="num">{100 * d["recall"]:.1f}</td><td class="num">{100 * d["f1"]:.1f}</td>'
                f'<td class="num">{d["support"]}</td></tr>'
                for name, d in per.items()
            )
            parts.append('<table style="margin-top:8px"><thead><tr><th>class</th><th class="num">precision</th>'
                         '<th class="num">recall</th><th class="num">F1</th><th class="num">support</th></tr></thead>'
                         f"<tbody>{rows}</tbody></table>")
        parts.append("</div>")
        cards.append("".join(parts))
    body = f'<div class="cards">{"".join(cards)}</div>' if cards else '<p class="note">No finished run yet.</p>'
    return ('<section id="classes"><h2>Per class</h2><p class="note">Confusion matrix of each run on the test split '
            "(rows: true label, columns: predicted; shading is the share of the row, the diagonal is outlined), and "
            f"per-class precision, recall and F1 (scikit-learn, 0-100).</p>{body}</section>")


_WORD = re.compile(r"\w+", re.UNICODE)
# Not highlighted when shared with the reference: they match almost anything.
_STOP = frozenset(["a", "an", "and", "at", "by", "for", "from", "in", "is", "of", "on", "or", "the", "to", "with"])


def _long(text: str, limit: int) -> str:
    if len(text) <= limit:
        return esc(text)
    return f"{esc(text[:limit])}<details><summary>… {len(text) - limit} more characters</summary>{esc(text[limit:])}</details>"


def _marked(out: str, refs: list[str]) -> str:
    """Escape an output and <mark> the words that also occur in a reference."""
    vocab = {w.lower() for r in refs for w in _WORD.findall(r)}
    pieces, last = [], 0
    for m in _WORD.finditer(out):
        pieces.append(esc(out[last:m.start()]))
        w = m.group(0)
        pieces.append(f"<mark>{esc(w)}</mark>" if w.lower() in vocab and w.lower() not in _STOP else esc(w))
        last = m.end()
    pieces.append(esc(out[last:]))
    return "".join(pieces)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def section_outputs(data: ReportData, opts: ReportOptions) -> str:
    runs = [v for v in data.runs if v.predictions]
    if not runs:
        return ('<section id="outputs"><h2>Outputs side by side</h2><p class="note">No predictions recorded yet.</p>'
                "</section>")
    by_run = [{p["input"]: (p, v.row_scores[i]["rougeL"] if v.row_scores else None)
               for i, p in enumerate(v.predictions or [])} for v in runs]
    inputs = list(dict.fromkeys(p["input"] for v in runs for p in v.predictions or []))
    total = len(inputs)
    if not opts.all_outputs and total > opts.sample:
        picked = sorted(random.Random(0).sample(range(total), opts.sample))
        inputs = [inputs[i] for i in picked]
        scope = (f"a fixed random sample of {len(inputs)} of the {total} test inputs (seed 0; use --all-outputs for "
                 "all of them)")
    else:
        scope = f"all {total} test inputs"
    head = "".join(f'<th><span class="swatch" style="background:{v.color}"></span>{esc(v.label)}</th>' for v in runs)
    rows = []
    n_disagree = n_wrong = 0
    for i, inp in enumerate(inputs, start=1):
        found = [m.get(inp) for m in by_run]
        preds = [f[0] if f is not None else None for f in found]
        scores = [f[1] if f is not None else None for f in found]
        first = next(p for p in preds if p is not None)
        refs = references(first)
        outs = {_norm(str(p.get("output", ""))) for p in preds if p is not None}
        disagree = len(outs) > 1
        top = max((s for s in scores if s is not None), default=None)
        cells = []
        any_wrong = False
        for p, s in zip(preds, scores, strict=True):
            if p is None:
                cells.append('<td class="empty">(not in this run)</td>')
                continue
            out = str(p.get("output", ""))
            flags = []
            if p.get("stopped") is False:
                flags.append("did not stop")
            if "pred_id" in p:  # classification: right or wrong
                right = p.get("pred_id") == p.get("gold_id")
                any_wrong |= not right
                conf = p.get("confidence")
                extra = f' <span class="sc">{100 * conf:.0f}%</span>' if isinstance(conf, int | float) else ""
                cells.append(f'<td class="{"right" if right else "wrong"}">{esc(out)}{extra}</td>')
                continue
            text = _marked(out, refs) if out.strip() else '<span class="empty">(empty)</span>'
            badge = f'<span class="sc" title="ROUGE-L F1 of this output">RL {s:.0f}</span>' if s is not None else ""
            flag = f'<div class="flags">{esc(", ".join(flags))}</div>' if flags else ""
            is_top = disagree and s is not None and top is not None and top > 0 and s == top
            cells.append(f'<td class="{"top" if is_top else ""}">{badge}{text}{flag}</td>')
        n_disagree += disagree
        n_wrong += any_wrong
        cls = " ".join(c for c, on in (("disagree", disagree), ("haswrong", any_wrong)) if on)
        ref_text = "\n".join(f"• {r}" for r in refs) if len(refs) > 1 else refs[0]
        rows.append(f'<tr class="{cls}"><td class="idx">{i}{" ≠" if disagree else ""}</td>'
                    f'<td class="inp">{_long(inp, 220)}</td><td class="ref">{esc(ref_text)}</td>{"".join(cells)}</tr>')
    filters = [f'<label><input type="checkbox" class="ofilter" value="disagree"> only rows where runs disagree '
               f"({n_disagree})</label>"]
    if data.classification:
        filters.append(f'<label><input type="checkbox" class="ofilter" value="haswrong"> only rows with a wrong '
                       f"prediction ({n_wrong})</label>")
    how = ("Green cells are right, red wrong (with the model's confidence)." if not data.generative else
           "Words that also occur in the reference are highlighted; RL is the row's ROUGE-L F1 (0-100); when runs "
           "disagree, the best-scoring output of the row is outlined in green.")
    return (f'<section id="outputs"><h2>Outputs side by side</h2><p class="note">Showing {esc(scope)}. Rows where '
            f"runs produce different outputs are marked ≠ with an orange edge. {how}</p>"
            f'<div class="filters">{"".join(filters)}<span id="outputs-count" class="note"></span></div>'
            f'<div class="scroll"><table class="outputs" id="outputs-table"><thead><tr><th>#</th><th>input</th>'
            f'<th>reference</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>')


def _setting_order(key: str) -> tuple[int, str]:
    for i, prefix in enumerate(("method", "learning_rate", "total_steps", "precision", "options.", "peft_config.",
                                "experiment.")):
        if key.startswith(prefix):
            return (i, "")  # stable sort keeps the recorded order inside a group
    return (9, "")


def section_config(data: ReportData) -> str:
    settings = [run_settings(v) for v in data.runs]
    keys = sorted(dict.fromkeys(k for s in settings for k in s), key=_setting_order)
    differ, same = [], []
    for k in keys:
        vals = [s.get(k) for s in settings]
        present = [x for x in vals if x is not None]
        (differ if len(set(present)) > 1 else same).append((k, vals))
    head = "".join(f'<th><span class="swatch" style="background:{v.color}"></span>{esc(v.label)}</th>'
                   for v in data.runs)
    if differ:
        rows = []
        for k, vals in differ:
            present = [x for x in vals if x is not None]
            common = max(set(present), key=present.count)
            if present.count(common) < 2:  # all different: no "odd one out" to point at
                common = None
            cells = "".join(
                '<td class="na" title="does not apply to this run">·</td>' if val is None else
                f'<td class="{"diff" if common is not None and val != common else ""}">{esc(val)}</td>'
                for val in vals)
            rows.append(f'<tr><td class="mono">{esc(k)}</td>{cells}</tr>')
        diff_table = (f'<div class="scroll"><table id="config-diff"><thead><tr><th>setting</th>{head}</tr></thead>'
                      f'<tbody>{"".join(rows)}</tbody></table></div>')
    else:
        diff_table = '<p class="note">All runs have identical settings.</p>'

    def same_row(k: str, vals: list[str | None]) -> str:
        val = next(x for x in vals if x is not None)
        missing = [v.label for v, x in zip(data.runs, vals, strict=True) if x is None]
        na = f' <span class="note">(n/a for {esc(", ".join(missing))})</span>' if missing else ""
        return f'<tr><td class="mono">{esc(k)}</td><td>{esc(val)}{na}</td></tr>'

    same_rows = "".join(same_row(k, vals) for k, vals in same)
    return ('<section id="config"><h2>Config diff</h2><p class="note">Settings that differ between the runs they '
            "apply to: the method's resolved options and defaults (learning rate, steps, precision, the peft config) "
            "and the experiment each run used. Highlighted: cells that differ from the most common value; · the "
            f"setting does not apply to that run.</p>{diff_table}<details><summary>Same for every run it applies to "
            f"({len(same)} settings)</summary><table><tbody>{same_rows}</tbody></table></details></section>")


def section_environment(data: ReportData) -> str:
    per_run: list[dict[str, str]] = []
    for v in data.runs:
        info = v.run.info or {}
        d = {f"version.{k}": str(val) for k, val in (info.get("versions") or {}).items()}
        d.update({f"machine.{k}": str(val) for k, val in (info.get("machine") or {}).items()})
        if info.get("seed") is not None:
            d["seed"] = str(info["seed"])
        if d and v.run.host:
            d["host"] = v.run.host
        per_run.append(d)
    have = [(v, d) for v, d in zip(data.runs, per_run, strict=True) if d]
    if not have:
        return ('<section id="environment"><h2>Versions &amp; machine</h2><p class="note">No finished run recorded '
                "its environment yet.</p></section>")
    keys = list(dict.fromkeys(k for _, d in have for k in d))
    identical = all(d == have[0][1] for _, d in have)
    if identical:
        rows = "".join(f'<tr><td class="mono">{esc(k)}</td><td>{esc(have[0][1].get(k, "–"))}</td></tr>' for k in keys)
        who = "the only run" if len(have) == 1 else f"all {len(have)} runs"
        table = (f'<table id="env-table"><thead><tr><th>setting</th><th>{who}</th></tr></thead>'
                 f"<tbody>{rows}</tbody></table>")
    else:
        head = "".join(f"<th>{esc(v.label)}</th>" for v, _ in have)
        rows = []
        for k in keys:
            vals = [d.get(k, "–") for _, d in have]
            diff = len(set(vals)) > 1
            rows.append(f'<tr><td class="mono">{esc(k)}</td>'
                        + "".join(f'<td class="{"diff" if diff else ""}">{esc(x)}</td>' for x in vals) + "</tr>")
        table = (f'<div class="scroll"><table id="env-table"><thead><tr><th>setting</th>{head}</tr></thead>'
                 f'<tbody>{"".join(rows)}</tbody></table></div>')
    missing = [v.label for v, d in zip(data.runs, per_run, strict=True) if not d]
    skip = f" Not recorded (did not finish): {', '.join(missing)}." if missing else ""
    drift = "".join(f'<p class="note err version-drift">{esc(n)}</p>' for n in version_drift(data.runs))
    return ('<section id="environment"><h2>Versions &amp; machine</h2><p class="note">Library versions, device and '
            f"seed recorded by each run{' (identical for all runs)' if identical else '; differences highlighted'}."
            f"{esc(skip)}</p>{drift}{table}</section>")


def section_metrics(data: ReportData, problems: list[str]) -> str:
    items = []
    if data.generative:
        items += [
            "<b>ROUGE-1/2/L</b> (precision, recall, F1): Google's <code>rouge-score</code>, Porter stemmer on, "
            "default tokenizer; multi-reference rows take the best reference; mean over test rows, 0-100.",
            "<b>BLEU</b>: <code>sacrebleu</code> corpus BLEU, 13a tokenizer, exp smoothing (sacrebleu defaults), "
            "multi-reference where rows have several references, 0-100.",
        ]
        enc = {}
        for v in data.runs:
            b = (v.run.info or {}).get("bertscore")
            if b:
                enc.setdefault((b.get("library"), b.get("model"), b.get("num_layers")), []).append(v.label)
        if enc:
            for (lib, model, layers), labels in enc.items():
                items.append(
                    f"<b>BERTScore</b> (precision, recall, F1): <code>{esc(lib)}</code> with encoder "
                    f"<code>{esc(model)}</code>, layer {esc(layers)}, no idf weighting, no baseline rescaling (raw "
                    "scores: compare runs with each other, not with published numbers); empty outputs score 0; mean "
                    f"over test rows, 0-100. Runs: {esc(', '.join(labels))}.")
            if len(enc) > 1:
                items.append("<b>Warning</b>: runs were scored with different BERTScore encoders or layers; their "
                             "BERTScores are not comparable.")
        else:
            items.append("<b>BERTScore</b>: not computed for this report.")
        items.append("<b>Per-row RL</b> in the outputs table: ROUGE-L F1 of that output (rouge-score, stemmer on).")
        items.append("<b>Generation health</b>: peftlab's own counts (<code>peftlab.evaluate.health</code>).")
    if data.classification:
        items += ["<b>Accuracy, macro-F1, per-class precision/recall/F1</b>: scikit-learn, 0-100.",
                  "<b>Confusion matrices</b>: <code>sklearn.metrics.confusion_matrix</code> of the predicted and true "
                  "label ids in each run's predictions.jsonl."]
    items += ["<b>Test loss</b> (eval_loss): mean cross-entropy on the test split, weighted by target tokens "
              "(generation) or examples (classification).",
              "<b>Costs</b>: trainable parameters from the wrapped model, peak memory of the run (peak resident "
              "memory of its process on CPU, peak allocated memory on CUDA), wall time of training and evaluation, size on disk of the saved adapter (or full model).",
              "<b>Pareto frontier</b>: a run is on it when no other run has a higher main metric at a lower or "
              "equal cost."]
    probs = "".join(f'<p class="note err">{esc(p)}</p>' for p in problems)
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f'<section id="metrics"><h2>How metrics are computed</h2><ul>{lis}</ul>{probs}</section>'


# -- whole report ----------------------------------------------------------------------
def render(data: ReportData, opts: ReportOptions, problems: list[str] | None = None) -> str:
    rec = recommend(data, opts.budget)
    parts = [
        section_header(data, opts),
        "<main>",
        section_recommendation(rec, data),
        section_leaderboard(data),
        section_curves(data),
        section_pareto(data),
        section_health(data),
        section_classes(data),
        section_outputs(data, opts),
        section_config(data),
        section_environment(data),
        section_metrics(data, problems or []),
        "</main>",
    ]
    title = opts.title or f"peftlab report: {data.title}"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{esc(title)}</title><style>{_asset("report.css")}</style></head>'
            f'<body>{"".join(parts)}<script>{_asset("report.js")}</script></body></html>\n')


def write_pngs(data: ReportData, out_dir: Path) -> list[Path]:
    """The report's charts as PNG files (150 dpi) for slides."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, title in curve_specs(data):
        series = curve_series(data, name)
        log = name == "learning_rate" and plots.spans_decades([y for s in series for _, y in s.points])
        written.append(plots.line_chart_png(out_dir / f"curve_{_slug(name)}.png", title, series, "step", name, log))
    for key, label, log, _ in PARETO_COSTS:
        pts = pareto_points(data, key)
        if pts:
            written.append(plots.pareto_png(out_dir / f"pareto_{_slug(key)}.png", f"{data.main_metric} vs {label}",
                                            pts, key, label, data.main_metric, log))
    for v in data.runs:
        cm = confusion(v)
        if cm is not None:
            written.append(plots.confusion_png(out_dir / f"confusion_{_slug(v.label)}.png",
                                               f"{v.label}: confusion matrix", *cm))
    return written


@dataclass
class ReportResult:
    path: Path
    data: ReportData
    recommendation: Recommendation
    pngs: list[Path]
    problems: list[str]


def build_report(
    store: Store,
    experiments: list[str] | None = None,
    out: str | Path = "report.html",
    run_ids: list[int] | None = None,
    options: ReportOptions | None = None,
) -> ReportResult:
    """Collect, score (BERTScore, cached), render and write the report; optionally the PNGs."""
    opts = options or ReportOptions()
    data = collect(store, experiments, run_ids)
    problems = add_bertscores(store, data, opts.bertscore_model) if opts.bertscore and data.generative else []
    problems += version_drift(data.runs)
    page = render(data, opts, problems)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    pngs = write_pngs(data, Path(opts.png_dir)) if opts.png_dir else []
    return ReportResult(path, data, recommend(data, opts.budget), pngs, problems)
