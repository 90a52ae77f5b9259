"""README's measured figures against a re-run of the commands that produced them
(`scripts/check-readme-figures.sh` runs them, then this compares).

    python scripts/readme_figures.py README.md RESULTS_DIR

RESULTS_DIR holds what the re-run wrote: `speed.json` (benchmarks/speed.py --quick --json) and
`openai.json` (benchmarks/openai_load.py --json). Prints README's figure, the new one and whether
it is within the noise README states for it (`TOLERANCE`, relative); exits 1 if one is not, 0 if
all are (a figure README has but the re-run lacks, or the reverse, is listed and not counted).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Relative noise allowed per figure family; README's Speed and OpenAI sections state the same.
TOLERANCE = {"speed": 0.30, "openai": 0.50}

SPEED_ROW = re.compile(r"^\| quick \| (fp32|bf16|fp16) \| ([\d.]+)x \| ([\d.]+)x \| ([\d.]+)% \|", re.M)
OPENAI_ROW = re.compile(r"^\| (one adapter|mixed LoRA|mixed types)[^|]*\| ([\d.]+) \| [\d.]+ / [\d.]+ \| ([\d.]+) \|"
                        r".*\| x([\d.]+) \|$", re.M)


def readme_figures(text: str) -> dict[str, float]:
    """The figures the check knows how to re-measure, as README states them."""
    out: dict[str, float] = {}
    for prec, train, ev, mfu in SPEED_ROW.findall(text):
        out[f"speed.quick.{prec}.train_speedup"] = float(train)
        out[f"speed.quick.{prec}.eval_speedup"] = float(ev)
        out[f"speed.quick.{prec}.mfu_percent"] = float(mfu)
    for scenario, batched, single, gain in OPENAI_ROW.findall(text):
        out[f"openai.{scenario}.batched_rps"] = float(batched)
        out[f"openai.{scenario}.one_at_a_time_rps"] = float(single)
        out[f"openai.{scenario}.gain"] = float(gain)
    return out


def measured_figures(results: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    speed = results / "speed.json"
    if speed.is_file():
        for prec, r in json.loads(speed.read_text())["by_precision"].items():
            out[f"speed.quick.{prec}.train_speedup"] = r["train_speedup"]
            out[f"speed.quick.{prec}.eval_speedup"] = r["eval_speedup"]
            out[f"speed.quick.{prec}.mfu_percent"] = 100 * r["mfu"]
    openai = results / "openai.json"
    if openai.is_file():
        for scenario, row in json.loads(openai.read_text())["scenarios"].items():
            out[f"openai.{scenario}.batched_rps"] = row["batched"]["rps"]
            out[f"openai.{scenario}.one_at_a_time_rps"] = row["one at a time"]["rps"]
            out[f"openai.{scenario}.gain"] = row["gain"]
    return out


def compare(old: dict[str, float], new: dict[str, float]) -> tuple[list[str], int]:
    """Report lines, and how many figures are outside their noise."""
    lines = [f"{'figure':<40} {'README':>9} {'now':>9}  within"]
    outside = 0
    for key in sorted(old.keys() | new.keys()):
        tol = TOLERANCE[key.split(".")[0]]
        if key not in new or key not in old:
            lines.append(f"{key:<40} {old.get(key, '-')!s:>9} {new.get(key, '-')!s:>9}  "
                         f"{'not re-measured' if key not in new else 'not in README'}")
            continue
        ok = abs(new[key] - old[key]) <= tol * abs(old[key])
        outside += not ok
        lines.append(f"{key:<40} {old[key]:>9.3g} {new[key]:>9.3g}  {'yes' if ok else 'NO'} (+-{tol:.0%})")
    return lines, outside


def main(argv: list[str]) -> int:
    readme, results = Path(argv[0]), Path(argv[1])
    lines, outside = compare(readme_figures(readme.read_text(encoding="utf-8")), measured_figures(results))
    print("\n".join(lines))
    print(f"{outside} figure(s) outside their stated noise" if outside else "every re-measured figure is within its noise")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
