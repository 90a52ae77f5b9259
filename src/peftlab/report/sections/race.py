"""The race (`tuning.budget`): each method's best validation score per rung, where it dropped out
and why, and the budget spent (`report.race` reads it from the store)."""

from __future__ import annotations

from peftlab.report import plots
from peftlab.report.collect import PALETTE, ReportData
from peftlab.report.race import RaceView
from peftlab.report.race import text as dropped_text
from peftlab.report.sections.common import esc, note, section, table

ID, TITLE = "race", "Race"


def view(data: ReportData) -> list[RaceView] | None:
    return data.races or None


def _minutes(s: float | None) -> str:
    return "–" if s is None else f"{s / 60:.1f} min"


def budget_line(v: RaceView) -> str:
    """The budget and what the race spent of it, in one sentence."""
    b = v.plan["budget"]
    out = f"Budget {_minutes(b)}: the rungs took {_minutes(v.spent)}"
    if v.total_seconds is not None:
        out += (f", the finals {_minutes(v.finals_seconds)}; in all {_minutes(v.total_seconds)}, "
                f"{100 * v.total_seconds / b:.0f}% of the budget")
    else:
        out += "; the finals have not ended"
    c = v.calibration
    if c and not c.get("pending") and c.get("replanned"):
        before = c["before"]
        out += (f". This store had measured no run of the model: {c['run']} took {c['seconds']:.0f} s where the "
                f"estimate said {c['expected']:.0f} s, and the race planned again from it ({before['candidates']} "
                f"configuration{'s' if before['candidates'] > 1 else ''} per method and rungs of "
                f"{', '.join(map(str, before['steps']))} steps before; {v.plan['candidates']} and "
                f"{', '.join(map(str, v.plan['steps']))} after)")
    return out + "."


def _one(v: RaceView, many: bool) -> str:
    steps = v.plan["steps"]
    series = [plots.Series(m.method, 500 + i, PALETTE[i % len(PALETTE)],
                           [(float(steps[j]), s) for j, s in enumerate(m.scores) if s is not None])
              for i, m in enumerate(v.methods)]
    svg = plots.line_chart_svg(f"Best validation {v.main_metric} per rung", series, "training steps of the rung",
                               v.main_metric)
    head = "<th>method</th>" + "".join(f"<th class='num'>rung {i + 1} ({n} steps)</th>" for i, n in enumerate(steps)) \
        + "<th>outcome</th>"
    rows = ""
    for m in v.methods:
        cells = "".join(f"<td class='num'>{m.scores[i]:.2f}</td>" if i < len(m.scores) and m.scores[i] is not None
                        else "<td class='num'>–</td>" for i in range(len(steps)))
        outcome = "finalist: trained over every seed and tested" if m.finalist else (
            "not raced" if m.out_at is None else dropped_text(m, len(steps), v.main_metric))
        rows += f"<tr><td>{esc(m.method)}</td>{cells}<td>{esc(outcome)}</td></tr>"
    title = f"<h3>{esc(v.experiment)}</h3>" if many else ""
    stop = note(esc(v.stopped)) if v.stopped else ""
    return title + note(esc(budget_line(v))) + stop + f'<div class="chartbox" data-chart="race">{svg}</div>' \
        + table(head, rows, id="race-table", scroll=True)


def render(views: list[RaceView]) -> str:
    explain = note(
        "The methods raced on the validation split within the budget (never the test split): every method's "
        "configurations trained a short first rung; after each rung, runs that failed or collapsed and "
        "configurations significantly worse than the leader on the same validation examples (paired test, "
        "Holm-corrected) dropped out, and as many of the rest as the budget carries trained a longer rung. Each "
        "surviving method's best configuration then trained over every seed and was tested once: the "
        "leaderboard's ranked rows. A score here is the method's best configuration at that rung.")
    return section(ID, TITLE, explain + "".join(_one(v, len(views) > 1) for v in views))
