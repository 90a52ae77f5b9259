"""Generation health per run (`peftlab.evaluate.health`): outputs that never stop, empty ones,
repetition against the references'. Shown for generation tasks only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.report.collect import ReportData
from peftlab.report.sections.common import RunTag, esc, note, section, swatch, table, tag

ID, TITLE = "health", "Generation health"


@dataclass
class Row:
    run: RunTag
    healthy: bool
    counts: dict[str, Any]  # the run's recorded health numbers (hit_max_pct, empty_pct, ...)
    problems: str


def view(data: ReportData) -> list[Row] | None:
    if not data.generative:
        return None
    return [Row(tag(v), h.get("healthy", True), h, "; ".join(h.get("problems", [])) or "–")
            for v in data.runs if (h := v.health)]


def _num(value: Any, text: str) -> str:
    return f'<td class="num" data-v="{value}">{text}</td>'


def _row(r: Row) -> str:
    h = r.counts
    return (
        f'<tr class="{"" if r.healthy else "bad"}"><td>{swatch(r.run.color)}{esc(r.run.label)}</td>'
        f'<td>{"✔ healthy" if r.healthy else "⚠ unhealthy"}</td>'
        + _num(h.get("hit_max_pct", 0), f'{h.get("hit_max_pct", 0):.0f}%')
        + _num(h.get("empty_pct", 0), f'{h.get("empty_pct", 0):.0f}%')
        + _num(h.get("repeat_3gram_pct", 0), f'{h.get("repeat_3gram_pct", 0):.1f}% '
               f'<span class="note">(ref {h.get("reference_repeat_3gram_pct", 0):.1f}%)</span>')
        + _num(h.get("mean_output_words", 0), f'{h.get("mean_output_words", 0):.1f} '
               f'<span class="note">(ref {h.get("mean_reference_words", 0):.1f})</span>')
        + f'<td class="{"" if r.healthy else "err"}">{esc(r.problems)}</td></tr>'
    )


def render(rows: list[Row]) -> str:
    if not rows:
        body = note("No finished generation run yet.")
    else:
        head = ('<th>run</th><th>verdict</th><th class="num">never stopped</th><th class="num">empty</th>'
                '<th class="num">repeated 3-grams</th><th class="num">mean words</th><th>problems</th>')
        body = table(head, "".join(_row(r) for r in rows), cls="sortable", id="health-table", scroll=True)
    explain = note("Per run, on the test outputs: share of outputs that ran into max_new_tokens without an "
                   "end-of-sequence token (EOS not learned), empty outputs, and repeated word 3-grams next to the "
                   "same rate in the references. Flagged when over 20% never stop, over 10% are empty, or repetition "
                   "is far above the references'. Where even trained runs never stop, the base may never have "
                   "learned to end a text (stories260k was pretrained without end tokens): train its end token "
                   "beside LoRA with trainable_tokens: [eos] (docs/methods.md).")
    return section(ID, "Generation health", explain + body)
