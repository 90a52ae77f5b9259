"""The title bar above the sections: what was compared, when, by which peftlab, and the menu."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
from dataclasses import dataclass

from peftlab.report.collect import ReportData
from peftlab.report.sections.common import esc


@dataclass
class HeaderView:
    title: str
    experiments: str  # "name (task, model m); ..."
    n_runs: int
    main_metric: str
    generated: str
    version: str
    nav: list[tuple[str, str]]  # (section id, menu entry) of the sections shown


def view(data: ReportData, title: str, nav: list[tuple[str, str]]) -> HeaderView:
    try:
        version = md.version("peftlab")
    except md.PackageNotFoundError:
        version = "?"
    exps = "; ".join(f"{e['name']} ({e.get('task')}, model {e.get('model')})" for e in data.experiments)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return HeaderView(title, exps, len(data.runs), data.main_metric, now, version, nav)


def render(h: HeaderView) -> str:
    nav = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in h.nav)
    return (f'<header class="top"><h1>{esc(h.title)}</h1><div class="sub">{esc(h.experiments)} · {h.n_runs} runs · '
            f"ranked by {esc(h.main_metric)} · generated {esc(h.generated)} by peftlab {esc(h.version)}</div></header>"
            f'<nav class="toc">{nav}</nav>')
