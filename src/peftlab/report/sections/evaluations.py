"""Extra evaluations (`peftlab evaluate EXP RUN --test FILE`) beside each run's own test
evaluation: the main metric with its 95% interval on each file the run was scored on since.
Shown only when some run has one; the numbers are those recorded with the evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.report.collect import ReportData
from peftlab.report.sections.common import RunTag, esc, note, section, swatch, table, tag

ID, TITLE = "evaluations", "Other evaluations"


@dataclass
class Row:
    run: RunTag
    name: str
    source: str
    examples: int
    value: float | None
    low: float | None
    high: float | None
    test: float | None  # the run's own test value of the same metric
    test_low: float | None
    test_high: float | None


def view(data: ReportData) -> tuple[str, list[Row]] | None:
    main = data.main_metric
    rows = []
    for v in data.runs:
        for name, rec in sorted(((v.run.info or {}).get("evaluations") or {}).items()):
            iv = (rec.get("intervals") or {}).get(main) or {}
            rows.append(Row(tag(v), name, str(rec.get("source", "")), int(rec.get("examples", 0)),
                            (rec.get("metrics") or {}).get(main), iv.get("low"), iv.get("high"),
                            v.row.get(main), v.row.get(f"{main}_ci_low"), v.row.get(f"{main}_ci_high")))
    return (main, rows) if rows else None


def _value(value: Any, low: Any, high: Any) -> str:
    if not isinstance(value, int | float):
        return '<td class="num">–</td>'
    ci = f' <span class="note">[{low:.2f}, {high:.2f}]</span>' if isinstance(low, int | float) and \
        isinstance(high, int | float) else ""
    return f'<td class="num" data-v="{value}">{value:.2f}{ci}</td>'


def render(v: tuple[str, list[Row]]) -> str:
    main, rows = v
    head = (f'<th>run</th><th>evaluation</th><th>file</th><th class="num">examples</th>'
            f'<th class="num">{esc(main)} [95% CI]</th><th class="num">test {esc(main)} [95% CI]</th>')
    body = "".join(
        f"<tr><td>{swatch(r.run.color)}{esc(r.run.label)}</td><td>{esc(r.name)}</td><td>{esc(r.source)}</td>"
        f'<td class="num">{r.examples}</td>{_value(r.value, r.low, r.high)}{_value(r.test, r.test_low, r.test_high)}'
        "</tr>" for r in rows)
    explain = note("Each run scored since on another labelled file (<code>peftlab evaluate</code>), next to its own "
                   "test split: the same metric, a bootstrap 95% interval over that file's examples. Files differ, "
                   "so compare a run's two columns for how it carries over, not runs across different files.")
    return section(ID, TITLE, explain + table(head, body, cls="sortable", id="evaluations-table", scroll=True))
