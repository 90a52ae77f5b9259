"""Outputs side by side: input, reference and every run's output per test row (a fixed sample
unless all are asked for), rows where runs disagree marked, each output's ROUGE-L from
`RunView.row_scores` (generation) or right/wrong with its confidence (classification)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from peftlab.report.collect import ReportData, references
from peftlab.report.sections.common import RunTag, esc, note, run_th, section, table, tag

ID, TITLE = "outputs", "Outputs"


@dataclass
class Cell:
    output: str
    score: float | None = None  # the output's ROUGE-L F1, 0-100 (generation)
    flags: list[str] = field(default_factory=list)
    top: bool = False  # best-scoring output of a row where runs disagree
    right: bool | None = None  # classification: the prediction is right
    confidence: float | None = None  # classification: the model's probability, 0-1


@dataclass
class Row:
    index: int
    input: str
    references: list[str]
    disagree: bool
    wrong: bool  # some run predicted a wrong class
    cells: list[Cell | None]  # one per run; None: the input is not in that run


@dataclass
class OutputsView:
    runs: list[RunTag]  # runs with predictions, one column each
    rows: list[Row]
    scope: str  # which inputs are shown
    generative: bool
    classification: bool

    @property
    def n_disagree(self) -> int:
        return sum(r.disagree for r in self.rows)

    @property
    def n_wrong(self) -> int:
        return sum(r.wrong for r in self.rows)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def _cell(p: dict[str, Any], score: float | None) -> Cell:
    out = str(p.get("output", ""))
    if "pred_id" in p:  # classification: right or wrong
        conf = p.get("confidence")
        return Cell(out, right=p.get("pred_id") == p.get("gold_id"),
                    confidence=float(conf) if isinstance(conf, int | float) else None)
    return Cell(out, score, ["did not stop"] if p.get("stopped") is False else [])


def view(data: ReportData, sample: int, all_outputs: bool) -> OutputsView:
    runs = [v for v in data.runs if v.predictions]
    by_run = []
    for v in runs:
        scores = v.row_scores
        by_run.append({p["input"]: (p, scores[i]["rougeL"] if scores else None)
                       for i, p in enumerate(v.predictions or [])})
    inputs = list(dict.fromkeys(p["input"] for v in runs for p in v.predictions or []))
    total = len(inputs)
    if not all_outputs and total > sample:
        picked = sorted(random.Random(0).sample(range(total), sample))
        inputs = [inputs[i] for i in picked]
        scope = (f"a fixed random sample of {len(inputs)} of the {total} test inputs (seed 0; use --all-outputs for "
                 "all of them)")
    else:
        scope = f"all {total} test inputs"
    rows = []
    for i, inp in enumerate(inputs, start=1):
        found = [m.get(inp) for m in by_run]
        first = next(f[0] for f in found if f is not None)
        cells = [None if f is None else _cell(*f) for f in found]
        disagree = len({_norm(c.output) for c in cells if c is not None}) > 1
        top = max((c.score for c in cells if c is not None and c.score is not None), default=None)
        for c in cells:
            if c is not None and c.score is not None:
                c.top = disagree and top is not None and top > 0 and c.score == top
        wrong = any(c is not None and c.right is False for c in cells)
        rows.append(Row(i, inp, references(first), disagree, wrong, cells))
    return OutputsView([tag(v) for v in runs], rows, scope, data.generative, data.classification)


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


def _td(c: Cell | None, refs: list[str]) -> str:
    if c is None:
        return '<td class="empty">(not in this run)</td>'
    if c.right is not None:
        extra = f' <span class="sc">{100 * c.confidence:.0f}%</span>' if c.confidence is not None else ""
        return f'<td class="{"right" if c.right else "wrong"}">{esc(c.output)}{extra}</td>'
    text = _marked(c.output, refs) if c.output.strip() else '<span class="empty">(empty)</span>'
    badge = f'<span class="sc" title="ROUGE-L F1 of this output">RL {c.score:.0f}</span>' if c.score is not None else ""
    flag = f'<div class="flags">{esc(", ".join(c.flags))}</div>' if c.flags else ""
    return f'<td class="{"top" if c.top else ""}">{badge}{text}{flag}</td>'


def _tr(r: Row) -> str:
    cls = " ".join(c for c, on in (("disagree", r.disagree), ("haswrong", r.wrong)) if on)
    ref_text = "\n".join(f"• {x}" for x in r.references) if len(r.references) > 1 else r.references[0]
    return (f'<tr class="{cls}"><td class="idx">{r.index}{" ≠" if r.disagree else ""}</td>'
            f'<td class="inp">{_long(r.input, 220)}</td><td class="ref">{esc(ref_text)}</td>'
            f'{"".join(_td(c, r.references) for c in r.cells)}</tr>')


def render(o: OutputsView) -> str:
    if not o.runs:
        return section(ID, "Outputs side by side", note("No predictions recorded yet."))
    filters = [f'<label><input type="checkbox" class="ofilter" value="disagree"> only rows where runs disagree '
               f"({o.n_disagree})</label>"]
    if o.classification:
        filters.append(f'<label><input type="checkbox" class="ofilter" value="haswrong"> only rows with a wrong '
                       f"prediction ({o.n_wrong})</label>")
    how = ("Green cells are right, red wrong (with the model's confidence)." if not o.generative else
           "Words that also occur in the reference are highlighted; RL is the row's ROUGE-L F1 (0-100); when runs "
           "disagree, the best-scoring output of the row is outlined in green.")
    explain = note(f"Showing {esc(o.scope)}. Rows where runs produce different outputs are marked ≠ with an orange "
                   f"edge. {how}")
    head = "<th>#</th><th>input</th><th>reference</th>" + "".join(run_th(t) for t in o.runs)
    return section(ID, "Outputs side by side",
                   f'{explain}<div class="filters">{"".join(filters)}<span id="outputs-count" class="note"></span>'
                   f'</div>{table(head, "".join(_tr(r) for r in o.rows), cls="outputs", id="outputs-table", scroll=True)}')
