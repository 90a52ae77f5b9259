"""Per class (classification): each run's confusion matrix and per-class precision, recall, F1."""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.report.collect import ReportData, RunView
from peftlab.report.sections.common import RunTag, esc, note, section, swatch, table, tag

ID, TITLE = "classes", "Per class"


@dataclass
class Card:
    run: RunTag
    confusion: tuple[list[list[int]], list[str]] | None  # (matrix, labels)
    per_class: list[tuple[str, float, float, float, int]]  # (class, precision, recall, F1 (0-1), support)


def confusion(v: RunView) -> tuple[list[list[int]], list[str]] | None:
    """Confusion matrix (rows: true label, columns: predicted) from predictions.jsonl, with scikit-learn."""
    labels = (v.run.info or {}).get("labels")
    preds = v.predictions or []
    if not labels or not preds or "pred_id" not in preds[0]:
        return None
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix([p["gold_id"] for p in preds], [p["pred_id"] for p in preds], labels=list(range(len(labels))))
    return cm.tolist(), list(labels)


def view(data: ReportData) -> list[Card] | None:
    if not data.classification:
        return None
    cards = []
    for v in data.runs:
        cm = confusion(v)
        per = (v.run.info or {}).get("per_class") or {}
        if cm is None and not per:
            continue
        cards.append(Card(tag(v), cm, [(name, d["precision"], d["recall"], d["f1"], d["support"])
                                       for name, d in per.items()]))
    return cards


def _cm_table(matrix: list[list[int]], labels: list[str]) -> str:
    head = "<th>true ↓ / predicted →</th>" + "".join(f"<th>{esc(lab)}</th>" for lab in labels)
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
    return table(head, "".join(rows), cls="cm")


def _card(c: Card) -> str:
    parts = [f'<div class="card" data-run="{esc(c.run.label)}"><h3>{swatch(c.run.color)}{esc(c.run.label)}</h3>']
    if c.confusion is not None:
        parts.append(_cm_table(*c.confusion))
    if c.per_class:
        rows = "".join(f'<tr><td>{esc(name)}</td><td class="num">{100 * p:.1f}</td><td class="num">{100 * r:.1f}</td>'
                       f'<td class="num">{100 * f:.1f}</td><td class="num">{n}</td></tr>'
                       for name, p, r, f, n in c.per_class)
        head = ('<th>class</th><th class="num">precision</th><th class="num">recall</th><th class="num">F1</th>'
                '<th class="num">support</th>')
        parts.append(table(head, rows, style="margin-top:8px"))
    parts.append("</div>")
    return "".join(parts)


def render(cards: list[Card]) -> str:
    body = f'<div class="cards">{"".join(_card(c) for c in cards)}</div>' if cards else note("No finished run yet.")
    explain = note("Confusion matrix of each run on the test split (rows: true label, columns: predicted; shading is "
                   "the share of the row, the diagonal is outlined), and per-class precision, recall and F1 "
                   "(scikit-learn, 0-100).")
    return section(ID, "Per class", explain + body)
