"""Every run in one sortable table: rank, status (with the error of failed and diverged runs),
headline metrics, costs, then the detailed metrics; ★ marks the best value of each column."""

from __future__ import annotations

from dataclasses import dataclass, field

from peftlab.report import plots
from peftlab.report.collect import ReportData, RunView
from peftlab.report.fmt import COST_LABELS, fmt_value, higher_is_better
from peftlab.report.leaderboard import COST_KEYS
from peftlab.report.sections.common import RunTag, esc, note, section, swatch, table, tag

ID, TITLE = "leaderboard", "Leaderboard"
METRIC_PREFERRED = ("rouge1", "rouge2", "rougeL", "bleu", "bertscore_f1", "bertscore_precision", "bertscore_recall",
                    "accuracy", "macro_f1")


@dataclass
class Column:
    key: str
    label: str
    tip: str  # what the column is and which way is better
    up: bool  # higher is better


@dataclass
class Cell:
    value: float | None
    text: str  # formatted value
    best: bool


@dataclass
class Row:
    rank: int | None
    run: RunTag
    method: str
    family: str  # the method's family (Method.family): low-rank, orthogonal, prompt, ...
    status: str
    note: str  # the error of a failed or diverged run
    unhealthy: str | None  # the generation problems of an unhealthy run, joined
    cells: list[Cell]
    collapsed: str | None = None  # a classifier whose predictions collapse onto one class
    untrained: bool = False  # zero-shot classification: an untrained head (chance level)
    baseline: bool = False  # a row that is not a run (the majority-class baseline)


@dataclass
class LeaderboardView:
    main_metric: str
    columns: list[Column]
    rows: list[Row]
    encoders: list[tuple[str, str]]  # BERTScore (encoder, layer) pairs the runs were scored with
    ranking: list[plots.Ranked] = field(default_factory=list)  # the ranking chart (runs with an interval)


def ranking(data: ReportData) -> list[plots.Ranked]:
    """Finished runs with the main metric's interval, best first: the ranking chart's rows."""
    m = data.main_metric
    out = [plots.Ranked(v.label, v.index, v.color, v.metric(m), v.row.get(f"{m}_ci_low"), v.row.get(f"{m}_ci_high"),
                        v.row.get("rank_group"))
           for v in data.runs if v.done and v.metric(m) is not None]
    return out if any(r.low is not None for r in out) else []


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


def _column(key: str, main: str, label: str | None = None) -> Column:
    up = higher_is_better(key)
    tip = f"{COST_LABELS.get(key, key)}{' (main metric)' if key == main else ''}: {'higher' if up else 'lower'} is better"
    return Column(key, label or key, tip, up)


def view(data: ReportData) -> LeaderboardView:
    metrics, detail = metric_columns(data)
    costs = list(COST_KEYS)
    keys = [(k, False) for k in metrics] + [(k, True) for k in costs] + [(k, False) for k in detail]
    columns = [_column(k, data.main_metric, COST_LABELS.get(k, k) if cost else None) for k, cost in keys]
    best = {k: _best(data, k, cost) for k, cost in keys}

    stats = any(v.row.get("rank_group") is not None for v in data.runs)
    main = data.main_metric
    if stats:  # the uncertainty of the ranking, right after the main metric
        at = next((i for i, (k, _) in enumerate(keys) if k == main), -1) + 1
        keys[at:at] = [("rank_group", False), ("p_vs_best", False)]
        columns[at:at] = [Column("rank_group", "group", "rank group: 1 = not significantly different from the best "
                                 "(paired test on the same test examples, Holm-corrected)", False),
                          Column("p_vs_best", "p vs best", "Holm-adjusted p-value of the paired test against the best "
                                 "run", True)]

    def cell(v: RunView, k: str, cost: bool) -> Cell:
        if k in ("rank_group", "p_vs_best"):
            x = v.row.get(k)
            return Cell(x, "–" if x is None else (str(x) if k == "rank_group" else f"{x:.2g}"), False)
        x = v.cost(k) if cost else v.metric(k)
        win = x is not None and v.done and (v.trains or not cost) and best.get(k) is not None and x == best[k]
        text = fmt_value(k, x)
        lo, hi = v.row.get(f"{k}_ci_low"), v.row.get(f"{k}_ci_high")
        if k == main and x is not None and lo is not None and hi is not None:
            text += f' <span class="ci" title="95% confidence interval">[{lo:.1f}, {hi:.1f}]</span>'
        return Cell(x, text, win)

    rows = []
    for v in data.runs:
        err = ""
        if v.run.status == "diverged":
            err = f"at step {v.run.diverged_step}: {v.run.error or ''}"
        elif v.run.error:
            err = v.run.error
        h = v.health
        unhealthy = "; ".join(h.get("problems", [])) if h and not h.get("healthy", True) else None
        rows.append(Row(v.row.get("rank"), tag(v), v.run.method, v.method.family if v.method else "", v.run.status,
                        err, unhealthy,
                        [cell(v, k, cost) for k, cost in keys], v.collapsed, v.untrained_head))
    for b in data.baselines:  # in metric order among the finished runs, without a rank
        val = b.get(main)
        cells = [Cell(b.get(k) if isinstance(b.get(k), int | float) else None,
                      fmt_value(k, b.get(k)) if isinstance(b.get(k), int | float) and k not in ("rank_group", "p_vs_best")
                      else "–", False) for k, _ in keys]
        brow = Row(None, RunTag(b["label"], "#9aa1ad", -1), b["method"], "baseline", "baseline", b.get("note", ""),
                   None, cells, baseline=True)
        at = next((i for i, r in enumerate(rows) if r.rank is None or not isinstance(val, int | float)
                   or (r.cells[0].value is not None and r.cells[0].value < val)), len(rows))
        rows.insert(at, brow)
    encoders = {(b.get("model_name"), b.get("num_layers")) for v in data.runs
                if (b := (v.run.info or {}).get("bertscore"))}
    return LeaderboardView(data.main_metric, columns, rows, sorted(encoders, key=str), ranking(data))


def _head(c: Column) -> str:
    return f'<th class="num" title="{esc(c.tip)}">{esc(c.label)} {"↑" if c.up else "↓"}</th>'


def _row(r: Row) -> str:
    rank = "" if r.rank is None else r.rank
    flag = f' <span class="badge flag" title="{esc(r.unhealthy)}">⚠ unhealthy</span>' if r.unhealthy is not None else ""
    if r.collapsed:
        flag += f' <span class="badge flag" title="{esc(r.collapsed)}">⚠ one class</span>'
    if r.untrained:
        flag += (' <span class="badge" title="zero-shot classification: the classification head is freshly '
                 'initialised, so this row is chance level">untrained head</span>')
    if r.baseline:
        flag += ' <span class="badge baseline" title="not a run: always predicts the majority class">baseline</span>'
    status = f'<span class="badge {esc(r.status)}">{esc(r.status)}</span>'
    status += f'<div class="{"note" if r.baseline else "err"}">{esc(r.note)}</div>' if r.note else ""
    cells = [f'<td class="num" data-v="{rank}">{rank if r.rank is not None else "–"}</td>',
             f'<td class="nowrap" data-v="{esc(r.run.label.lower())}">{swatch(r.run.color)}{esc(r.run.label)}{flag}</td>',
             f'<td class="nowrap">{esc(r.method)}</td>', f'<td class="nowrap">{esc(r.family)}</td>',
             f'<td data-v="{esc(r.status)}">{status}</td>']
    cells += [f'<td class="{"num best" if c.best else "num"}" data-v="{"" if c.value is None else c.value}">{c.text}</td>'
              for c in r.cells]
    bad = r.status in ("failed", "diverged")
    return (f'<tr class="{"bad" if bad else "baseline" if r.baseline else ""}" data-family="{esc(r.family)}">'
            f'{"".join(cells)}</tr>')


def render(lb: LeaderboardView) -> str:
    head = ['<th class="num" title="rank by the main metric">#</th>', "<th>run</th>", "<th>method</th>",
            '<th title="the method\'s family">family</th>', "<th>status</th>"] + [_head(c) for c in lb.columns]
    encoders = ""
    if lb.encoders:
        names = ", ".join(f"{esc(n)} (layer {esc(layer)})" for n, layer in lb.encoders)
        encoders = f" BERTScore encoder: <b>{names}</b> (see How metrics are computed)."
    explain = note(
        f"Every run, ranked by <b>{esc(lb.main_metric)}</b> (ties by test loss). Click a header to sort. ★ marks the "
        "best value of each column (metrics over finished runs, costs over runs that train; none when all tie). "
        "Metrics are on the test split; ROUGE, BLEU, BERTScore, accuracy and F1 on a 0-100 scale; the detailed "
        "metric columns follow the costs. Brackets: the main metric's 95% confidence interval (bootstrap over test "
        "examples; over seeds and examples with several seeds). <b>group</b> 1: cannot be told apart from the best "
        "run (paired test on the same test examples, Holm-corrected; <b>p vs best</b>); the next group starts where "
        f"the difference becomes significant.{encoders}")
    body = "".join(_row(r) for r in lb.rows)
    families = sorted({r.family for r in lb.rows if r.family})
    chips = ""
    if len(families) > 1:  # a leaderboard of 35 rows stays readable: show one family at a time
        chips = ('<div class="families">Families: ' + "".join(
            f'<label><input type="checkbox" class="family-toggle" data-family="{esc(f)}" checked> {esc(f)}</label> '
            for f in families) + "</div>")
    chart = ""
    if lb.ranking:
        svg = plots.ranking_svg(f"{lb.main_metric} with 95% confidence intervals", lb.ranking, lb.main_metric)
        chart = f'<div class="chartbox" data-chart="ranking">{svg}</div>' + note(
            "Shaded: rank group 1, the runs the test set cannot tell apart from the best.")
    return section(ID, "Leaderboard",
                   explain + chips + table("".join(head), body, cls="sortable", id="leaderboard-table", scroll=True)
                   + chart)
