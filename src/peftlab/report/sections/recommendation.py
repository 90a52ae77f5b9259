"""The recommendation paragraph (`report.recommend`, computed once per report) and collection notes."""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.report.recommend import Recommendation
from peftlab.report.sections.common import esc, note, section

ID, TITLE = "recommendation", "Recommendation"


@dataclass
class RecommendationView:
    html: str  # the recommendation's paragraphs, already markup (`Recommendation.html`)
    notes: list[str]


def view(rec: Recommendation, notes: list[str]) -> RecommendationView:
    return RecommendationView(rec.html, list(notes))


def render(r: RecommendationView) -> str:
    notes = "".join(note(esc(n)) for n in r.notes)
    return section(ID, "Recommendation", f'<div class="recommend">{r.html}</div>{notes}')
