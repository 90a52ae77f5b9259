"""The leaderboard (`report.leaderboard.rows`, the one every surface shows) as one sortable table:
a row per method configuration (the mean over its seeds, with the interval, rank group and p
against the best), its seeds under it in its colour with their own values; rank, status (with
the error of failed and diverged runs), headline metrics, costs, then the detailed metrics;
★ marks the best value of each column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftlab.report import plots
from peftlab.report.collect import ReportData
from peftlab.report.fmt import COST_LABELS, fmt_p, fmt_value, higher_is_better
from peftlab.report.leaderboard import COST_KEYS
from peftlab.report.sections.common import RunTag, esc, note, section, swatch, table

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
    seed: bool = False  # one seed of the row above it (its own values)
    recommended: bool = False


@dataclass
class LeaderboardView:
    main_metric: str
    columns: list[Column]
    rows: list[Row]
    encoders: list[tuple[str, str]]  # BERTScore (encoder, layer) pairs the runs were scored with
    ranking: list[plots.Ranked] = field(default_factory=list)  # the ranking chart (runs with an interval)


def _tag(data: ReportData, r: dict[str, Any]) -> RunTag:
    v = data.view_of(r)
    label = r["run"] if len({x.get("experiment") for x in data.rows}) < 2 or "/" in r["run"] \
        else f"{r['experiment']}/{r['run']}"
    return RunTag(label, v.color if v else "#9aa1ad", v.index if v else -1)


def _n(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def ranking(data: ReportData) -> list[plots.Ranked]:
    """Finished rows with the main metric's interval, best first: the ranking chart's rows."""
    m = data.main_metric
    out = []
    for r in data.rows:
        if r.get("baseline") or r.get("rank") is None or _n(r.get(m)) is None:
            continue
        t = _tag(data, r)
        out.append(plots.Ranked(t.label, t.index, t.color, _n(r.get(m)), _n(r.get(f"{m}_ci_low")),
                                _n(r.get(f"{m}_ci_high")), r.get("rank_group")))
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
    tail = [k for k in ("eval_loss", "forgetting") if k in present]
    rest = sorted(k for k in present if k not in first and k not in preferred and k not in tail)
    return first + preferred + tail, rest


def _best(data: ReportData, key: str, cost: bool) -> float | None:
    """Best value of a column: over finished rows; for costs, over rows that train.

    None when there is nothing to choose from (fewer than two values, or all equal): marking
    every cell of a tied column as best would say nothing.
    """
    vals = [x for r in data.rows if not r.get("baseline") and r.get("rank") is not None
            and (r.get("trains", True) or not cost) and (x := _n(r.get(key))) is not None]
    if len(vals) < 2 or len(set(vals)) == 1:
        return None
    return max(vals) if higher_is_better(key) else min(vals)


def _column(key: str, main: str, label: str | None = None) -> Column:
    up = higher_is_better(key)
    tip = f"{COST_LABELS.get(key, key)}{' (main metric)' if key == main else ''}: {'higher' if up else 'lower'} is better"
    return Column(key, label or key, tip, up)


def view(data: ReportData, recommended: str | None = None) -> LeaderboardView:
    metrics, detail = metric_columns(data)
    costs = list(COST_KEYS)
    if "forgetting" not in metrics and any(r.get("forgetting_na") for r in data.rows):
        metrics.append("forgetting")  # classification: the column says n/a, with why
    # forgetting is a cost of the model: its best is over the runs that train (the zero-shot row is 0)
    keys = [(k, k == "forgetting") for k in metrics] + [(k, True) for k in costs] + [(k, False) for k in detail]
    columns = [_column(k, data.main_metric, COST_LABELS.get(k, k) if cost else None) for k, cost in keys]
    best = {k: _best(data, k, cost) for k, cost in keys}

    stats = any(r.get("rank_group") is not None for r in data.rows)
    main = data.main_metric
    if stats:  # the uncertainty of the ranking, right after the main metric
        at = next((i for i, (k, _) in enumerate(keys) if k == main), -1) + 1
        keys[at:at] = [("rank_group", False), ("p_vs_best", False), ("n_seeds", False)]
        columns[at:at] = [Column("rank_group", "group", "rank group: 1 = not significantly different from the best "
                                 "(paired test on the same test examples, over seeds too, Holm-corrected)", False),
                          Column("p_vs_best", "p vs best", "Holm-adjusted p-value of the paired test against the best "
                                 "row ('≤': at the test's resolution floor)", True),
                          Column("n_seeds", "seeds", "how many seeds the row's values are the mean of", True)]

    def cell(r: dict[str, Any], k: str, cost: bool, seed: bool) -> Cell:
        if k in ("rank_group", "p_vs_best", "n_seeds"):
            x = None if seed else r.get(k)
            text = "–" if x is None else (fmt_p(x, bool(r.get("p_vs_best_bound"))) if k == "p_vs_best" else str(x))
            return Cell(x, text, False)
        if k == "forgetting" and r.get("forgetting_na"):
            return Cell(None, f'<span title="{esc(r["forgetting_na"])}">n/a</span>', False)
        x = _n(r.get(k))
        win = (not seed and x is not None and r.get("rank") is not None and (r.get("trains", True) or not cost)
               and best.get(k) is not None and x == best[k])
        text = fmt_value(k, x)
        lo, hi = _n(r.get(f"{k}_ci_low")), _n(r.get(f"{k}_ci_high"))
        if not seed and k == main and x is not None and lo is not None and hi is not None:
            text += f' <span class="ci" title="95% confidence interval">[{lo:.1f}, {hi:.1f}]</span>'
        elif not seed and k == "forgetting" and x is not None and lo is not None and hi is not None:
            text += f' <span class="ci" title="95% confidence interval">[{lo:.3f}, {hi:.3f}]</span>'
        return Cell(x, text, win)

    rows = []
    for r in data.rows:
        if r.get("baseline"):
            cells = [Cell(_n(r.get(k)), fmt_value(k, r.get(k)) if _n(r.get(k)) is not None
                          and k not in ("rank_group", "p_vs_best", "n_seeds") else "–", False) for k, _ in keys]
            rows.append(Row(None, RunTag(r["run"], "#9aa1ad", -1), r["method"], "baseline", "baseline",
                            r.get("note", ""), None, cells, baseline=True))
            continue
        err = f"at step {r['diverged_step']}: {r.get('error') or ''}" if r.get("status") == "diverged" \
            else str(r.get("error") or "")
        t = _tag(data, r)
        rows.append(Row(r.get("rank"), t, r["method"], r.get("family", ""), r["status"], err,
                        "; ".join(r["health_problems"]) if r.get("health_problems") else None,
                        [cell(r, k, cost, False) for k, cost in keys], r.get("collapsed"),
                        bool(r.get("untrained_head")), recommended=recommended == r["run"]))
        seeds = r.get("seeds") or []
        for sd in seeds if len(seeds) > 1 else []:
            rows.append(Row(None, RunTag(f"{sd['run']}", t.color, t.index), r["method"], r.get("family", ""),
                            sd["status"], "", None, [cell(sd, k, cost, True) for k, cost in keys], seed=True))
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
    if r.recommended:
        flag += ' <span class="badge done" title="the recommendation">★ recommended</span>'
    status = f'<span class="badge {esc(r.status)}">{esc(r.status)}</span>'
    status += f'<div class="{"note" if r.baseline else "err"}">{esc(r.note)}</div>' if r.note else ""
    label = f'<span class="seed" title="one seed of the row above: its own values">↳ {esc(r.run.label)}</span>' \
        if r.seed else esc(r.run.label)
    cells = [f'<td class="num" data-v="{rank}">{rank if r.rank is not None else "–"}</td>',
             f'<td class="nowrap" data-v="{esc(r.run.label.lower())}">{swatch(r.run.color)}{label}{flag}</td>',
             f'<td class="nowrap">{esc(r.method)}</td>', f'<td class="nowrap">{esc(r.family)}</td>',
             f'<td data-v="{esc(r.status)}">{status}</td>']
    cells += [f'<td class="{"num best" if c.best else "num"}" data-v="{"" if c.value is None else c.value}">{c.text}</td>'
              for c in r.cells]
    bad = r.status in ("failed", "diverged")
    cls = "bad" if bad else "baseline" if r.baseline else "seed-row" if r.seed else ""
    return f'<tr class="{cls}" data-family="{esc(r.family)}">{"".join(cells)}</tr>'


def render(lb: LeaderboardView) -> str:
    head = ['<th class="num" title="rank by the main metric">#</th>', "<th>run</th>", "<th>method</th>",
            '<th title="the method\'s family">family</th>', "<th>status</th>"] + [_head(c) for c in lb.columns]
    encoders = ""
    if lb.encoders:
        names = ", ".join(f"{esc(n)} (layer {esc(layer)})" for n, layer in lb.encoders)
        encoders = f" BERTScore encoder: <b>{names}</b> (see How metrics are computed)."
    explain = note(
        f"One row per method configuration, ranked by <b>{esc(lb.main_metric)}</b>; trained over several seeds, a "
        "row holds the mean over its seeds and the seeds follow it (↳, in its colour) with their own values. "
        "Click a header to sort. ★ marks the "
        "best value of each column (metrics over finished runs, costs over runs that train; none when all tie). "
        "Metrics are on the test split; ROUGE, BLEU, BERTScore, accuracy and F1 on a 0-100 scale; the detailed "
        "metric columns follow the costs. Brackets: the main metric's 95% confidence interval (bootstrap over test "
        "examples; over seeds and examples with several seeds). <b>group</b> 1: cannot be told apart from the best "
        "run (paired test on the same test examples, Holm-corrected; <b>p vs best</b>); the next group starts where "
        f"the difference becomes significant. <b>forgetting</b>: the run's loss minus the base model's on a general "
        "reference set that is not the task's data (nats/token, with its 95% interval over the reference examples; "
        f"0 for the zero-shot row, lower is better; see README, Forgetting).{encoders}")
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
