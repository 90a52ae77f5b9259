"""Markup every section shares: escaping, a run's colour swatch, the series legend, tables.

Section-specific markup stays in its section module; what two or more sections write the same
way goes here.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peftlab.report.collect import RunView


@dataclass(frozen=True)
class RunTag:
    """How a run is named and drawn on the page: label, colour and series index (the toggles)."""

    label: str
    color: str
    index: int


def tag(v: RunView) -> RunTag:
    return RunTag(v.label, v.color, v.index)


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def run_th(t: RunTag) -> str:
    """A table header cell naming a run: its swatch and label."""
    return f"<th>{swatch(t.color)}{esc(t.label)}</th>"


def legend(runs: Iterable[RunTag]) -> str:
    """One checkbox per run; ticking it shows or hides the run's series in every chart (report.js)."""
    items = "".join(
        f'<label><input type="checkbox" class="toggle" data-series="{t.index}" checked> '
        f"{swatch(t.color)}{esc(t.label)}</label>"
        for t in runs
    )
    return (f'<div class="legend">{items}<button type="button" class="all-on">all</button>'
            f'<button type="button" class="all-off">none</button></div>')


def table(head: str, body: str, *, cls: str = "", id: str = "", style: str = "", scroll: bool = False) -> str:
    """A table from the header cells and body rows (markup); `scroll` wraps it for wide content."""
    attrs = "".join(f' {k}="{v}"' for k, v in (("class", cls), ("id", id), ("style", style)) if v)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    out = f"<table{attrs}>{thead}<tbody>{body}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def note(text: str, cls: str = "") -> str:
    """A paragraph of explanation (`text` is markup)."""
    return f'<p class="{"note " + cls if cls else "note"}">{text}</p>'


def section(sid: str, heading: str, body: str) -> str:
    """A section of the page (`heading` and `body` are markup)."""
    return f'<section id="{sid}"><h2>{heading}</h2>{body}</section>'
