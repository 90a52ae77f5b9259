"""Config diff: the settings that differ between runs (resolved method options, learning rate,
steps, precision, peft config, experiment), and the ones every run shares, collapsed."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from peftlab.report.collect import ReportData, RunView
from peftlab.report.sections.common import RunTag, esc, note, run_th, section, table, tag

ID, TITLE = "config", "Config diff"
_GROUPS = ("method", "learning_rate", "total_steps", "precision", "options.", "peft_config.", "experiment.")


@dataclass
class Differs:
    key: str
    values: list[str | None]  # one per run; None: does not apply to it
    common: str | None  # the most common value (first in run order on a tie), when at least two runs share it


@dataclass
class Same:
    key: str
    value: str
    missing: list[str]  # runs it does not apply to


@dataclass
class ConfigView:
    runs: list[RunTag]
    differ: list[Differs]
    same: list[Same]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        if not d and prefix:
            out[prefix] = "{}"
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _normalise(v: Any) -> str:
    """Comparable text for a setting; peft writes sets as "{'q', 'v'}" in arbitrary order."""
    if isinstance(v, str) and v.startswith("{") and v.endswith("}"):
        try:
            parsed = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, set):
            return ", ".join(sorted(map(str, parsed)))
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if v is None:
        return "null"
    return str(v)


def run_settings(v: RunView) -> dict[str, str]:
    """What configured a run: the method's resolved settings plus the experiment it ran in."""
    res = v.run.resolved
    cfg = v.run.config or {}
    out: dict[str, Any] = {"method": v.run.method}
    if res:
        for k in ("options", "learning_rate", "total_steps", "precision", "peft_config"):
            if k in res:
                out.update(_flatten(res[k], k) if isinstance(res[k], dict) else {k: res[k]})
    else:  # the run failed before its settings were resolved: show what was written
        entry = cfg.get("entry") or {}
        out.update(_flatten(entry.get("options") or {}, "options"))
        out["learning_rate"] = entry.get("learning_rate")
    exp = dict(cfg.get("experiment") or (res or {}).get("experiment") or {})
    exp.pop("methods", None)
    out.update(_flatten(exp, "experiment"))
    return {k: _normalise(val) for k, val in out.items()}


def _setting_order(key: str) -> int:
    """Group of a setting; the stable sort keeps the recorded order inside a group."""
    return next((i for i, prefix in enumerate(_GROUPS) if key.startswith(prefix)), len(_GROUPS))


def view(data: ReportData) -> ConfigView:
    settings = [run_settings(v) for v in data.runs]
    keys = sorted(dict.fromkeys(k for s in settings for k in s), key=_setting_order)
    differ, same = [], []
    for k in keys:
        vals = [s.get(k) for s in settings]
        present = [x for x in vals if x is not None]
        if len(set(present)) > 1:
            common = max(dict.fromkeys(present), key=present.count)  # a tie: the first run's value
            # all different: no "odd one out" to point at
            differ.append(Differs(k, vals, common if present.count(common) >= 2 else None))
        else:
            missing = [v.label for v, x in zip(data.runs, vals, strict=True) if x is None]
            same.append(Same(k, present[0], missing))
    return ConfigView([tag(v) for v in data.runs], differ, same)


def _diff_row(d: Differs) -> str:
    cells = "".join(
        '<td class="na" title="does not apply to this run">·</td>' if val is None else
        f'<td class="{"diff" if d.common is not None and val != d.common else ""}">{esc(val)}</td>'
        for val in d.values)
    return f'<tr><td class="mono">{esc(d.key)}</td>{cells}</tr>'


def _same_row(s: Same) -> str:
    na = f' <span class="note">(n/a for {esc(", ".join(s.missing))})</span>' if s.missing else ""
    return f'<tr><td class="mono">{esc(s.key)}</td><td>{esc(s.value)}{na}</td></tr>'


def render(c: ConfigView) -> str:
    if c.differ:
        head = "<th>setting</th>" + "".join(run_th(t) for t in c.runs)
        diff = table(head, "".join(_diff_row(d) for d in c.differ), id="config-diff", scroll=True)
    else:
        diff = note("All runs have identical settings.")
    explain = note("Settings that differ between the runs they apply to: the method's resolved options and defaults "
                   "(learning rate, steps, precision, the peft config) and the experiment each run used. "
                   "Highlighted: cells that differ from the most common value; · the setting does not apply to that "
                   "run.")
    same = table("", "".join(_same_row(s) for s in c.same))
    return section(ID, "Config diff", f"{explain}{diff}<details><summary>Same for every run it applies to "
                                      f"({len(c.same)} settings)</summary>{same}</details>")
