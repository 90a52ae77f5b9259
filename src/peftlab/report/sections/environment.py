"""Versions & machine: library versions, device and seed each run recorded, and a warning for a
run trained on other library versions than the rest of its experiment."""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.report.collect import ReportData, version_drift
from peftlab.report.sections.common import esc, note, section, table

ID, TITLE = "environment", "Versions & machine"
HEADING = "Versions &amp; machine"


@dataclass
class EnvironmentView:
    runs: list[tuple[str, dict[str, str]]]  # (label, recorded settings) of each run that recorded any
    missing: list[str]  # runs that recorded nothing (did not finish)
    drift: list[str]  # version-drift warnings

    @property
    def identical(self) -> bool:
        return all(d == self.runs[0][1] for _, d in self.runs)


def view(data: ReportData) -> EnvironmentView:
    have, missing = [], []
    for v in data.runs:
        info = v.run.info or {}
        d = {f"version.{k}": str(val) for k, val in (info.get("versions") or {}).items()}
        d.update({f"machine.{k}": str(val) for k, val in (info.get("machine") or {}).items()})
        if info.get("seed") is not None:
            d["seed"] = str(info["seed"])
        if d and v.run.host:
            d["host"] = v.run.host
        if d:
            have.append((v.label, d))
        else:
            missing.append(v.label)
    return EnvironmentView(have, missing, version_drift(data.runs))


def render(e: EnvironmentView) -> str:
    if not e.runs:
        return section(ID, HEADING, note("No finished run recorded its environment yet."))
    keys = list(dict.fromkeys(k for _, d in e.runs for k in d))
    if e.identical:
        first = e.runs[0][1]
        rows = "".join(f'<tr><td class="mono">{esc(k)}</td><td>{esc(first.get(k, "–"))}</td></tr>' for k in keys)
        who = "the only run" if len(e.runs) == 1 else f"all {len(e.runs)} runs"
        tbl = table(f"<th>setting</th><th>{who}</th>", rows, id="env-table")
    else:
        out = []
        for k in keys:
            vals = [d.get(k, "–") for _, d in e.runs]
            diff = len(set(vals)) > 1
            out.append(f'<tr><td class="mono">{esc(k)}</td>'
                       + "".join(f'<td class="{"diff" if diff else ""}">{esc(x)}</td>' for x in vals) + "</tr>")
        head = "<th>setting</th>" + "".join(f"<th>{esc(label)}</th>" for label, _ in e.runs)
        tbl = table(head, "".join(out), id="env-table", scroll=True)
    skip = f" Not recorded (did not finish): {', '.join(e.missing)}." if e.missing else ""
    drift = "".join(note(esc(n), "err version-drift") for n in e.drift)
    explain = note("Library versions, device and seed recorded by each run"
                   f"{' (identical for all runs)' if e.identical else '; differences highlighted'}.{esc(skip)}")
    return section(ID, HEADING, f"{explain}{drift}{tbl}")
