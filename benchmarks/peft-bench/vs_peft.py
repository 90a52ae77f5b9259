"""Our ranking beside peft's own method comparison (MetaMathQA training, GSM8K test accuracy on
Llama-3.2-3B, one seed per configuration), for the methods both have.

peft's figures are extracted once from a snapshot of huggingface/peft into
`reference/peft-metamathqa.json` (with the commit they come from), so the README can be written
offline:

    python benchmarks/peft-bench/vs_peft.py --extract PEFT_GIT_DIR [--commit REV]

`readme.py` calls `part()` for each task's results. A method's peft score is its best
configuration's (peft tried 1 to 7 configurations per method, not an equal budget: said beside
the table); the agreement is Spearman's rank correlation over the methods both ranked, with its
p-value (scipy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference" / "peft-metamathqa.json"
RESULTS = "method_comparison/MetaMathQA/results"
# peft's folder names where they differ from peftlab's method names; None: no counterpart here
FOLDERS = {"full-finetuning": "full", "prefixtuning": "prefix-tuning", "prompt_tuning": "prompt-tuning",
           "ptuning": "p-tuning", "ln_tuning": "ln-tuning", "adaptionprompt": None, "trainable_tokens": None}
LORA_VARIANTS = {"dora": "dora", "mica": None, "lorafa": None, "bdlora": None}  # by the name's last part


def ours(experiment: str) -> str | None:
    """peftlab's method for one of peft's experiment names ('lora/llama-3.2-3B-rank32-dora' -> 'dora')."""
    folder, config = experiment.split("/", 1)
    if folder == "lora":
        return LORA_VARIANTS.get(config.rsplit("-", 1)[-1], "lora")
    return FOLDERS.get(folder, folder)


def extract(git_dir: Path, commit: str = "HEAD") -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", f"--git-dir={git_dir}", *a], check=True, capture_output=True, text=True).stdout

    sha = git("rev-parse", commit).strip()
    rows = []
    for name in git("ls-tree", "--name-only", f"{sha}:{RESULTS}").split():
        if not name.endswith(".json"):
            continue
        d = json.loads(git("show", f"{sha}:{RESULTS}/{name}"))
        info, last = d["run_info"], d["train_info"]["metrics"][-1]
        if d["train_info"].get("status") != "success":
            continue
        rows.append({"experiment": info["experiment_name"], "method": ours(info["experiment_name"]),
                     "accuracy": round(100 * last["test accuracy"], 2), "forgetting": last.get("forgetting"),
                     "trainable_params": d["train_info"]["num_trainable_params"]})
    return {"source": f"huggingface/peft {sha}, {RESULTS}/*.json", "commit": sha,
            "about": "MetaMathQA training, GSM8K test accuracy (1,319 questions), Llama-3.2-3B, 5,000 steps, one "
                     "seed per configuration, an NVIDIA L40S", "experiments": sorted(rows, key=lambda r: -r["accuracy"])}


def best_per_method(ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in ref["experiments"]:
        m = r["method"]
        if m and (m not in best or r["accuracy"] > best[m]["accuracy"]):
            best[m] = {**r, "configs": sum(x["method"] == m for x in ref["experiments"])}
    return best


def part(res: dict[str, Any], ref: dict[str, Any] | None = None) -> str:
    """The table of the methods both benchmarks ranked, and their rank correlation."""
    from scipy.stats import spearmanr

    ref = ref if ref is not None else json.loads(REFERENCE.read_text())
    main, theirs = res["main_metric"], best_per_method(ref)
    mine = [r for r in res["rows"] if r.get("rank") is not None and r.get("method") in theirs]
    if len(mine) < 3:
        return f"**Beside peft's own benchmark**: fewer than 3 of the methods ranked here are in it ({ref['source']})."
    a = [r[main] for r in mine]
    b = [theirs[r["method"]]["accuracy"] for r in mine]
    rho, p = spearmanr(a, b)
    order = sorted(range(len(mine)), key=lambda i: -b[i])
    peft_rank = {i: k + 1 for k, i in enumerate(order)}
    lines = [f"**Beside peft's own benchmark** ({ref['about']}; {ref['source']}): the {len(mine)} methods both "
             f"rank, each at its best configuration there; Spearman's rank correlation {rho:.2f} (p = {p:.2g}).", "",
             f"| method | here: rank among these | {main} | peft: rank among these | GSM8K accuracy | configurations peft tried |",
             "| --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(mine):
        t = theirs[r["method"]]
        lines.append(f"| {r['method']} | {i + 1} | {r[main]:.2f} | {peft_rank[i]} | {t['accuracy']:.2f} | {t['configs']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extract", type=Path, required=True, help="a huggingface/peft git directory")
    ap.add_argument("--commit", default="HEAD")
    args = ap.parse_args()
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(extract(args.extract, args.commit), indent=1) + "\n")
    print(REFERENCE)


if __name__ == "__main__":
    main()
