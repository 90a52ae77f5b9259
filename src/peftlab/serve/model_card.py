"""What a downloaded adapter or merged model carries besides its weights: a model card
(README.md: the experiment, the run's metrics with their intervals, its rank, the prompt
template, the training and method settings, how to load it) in place of peft's blank one, and
a portable `base_model_name_or_path` (a hub id, or the model folder's name) in place of the
absolute path of this machine's model folder.

    portable_zip(src_zip, dest, card, base)   a copy of the engine's zip with both replaced
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from peftlab import __version__
from peftlab.store import Run, Store
from peftlab.tasks.spec import SPECS


def portable_base(run: Run) -> str:
    """The base model as someone else can name it: the experiment's hub id, or the last part of
    its model path (a folder or .gguf file name; stories260k, not /home/me/models/stories260k)."""
    model = ((run.config or {}).get("experiment") or {}).get("model") or {}
    path = str(model.get("path") if isinstance(model, dict) else model or "")
    local = path.startswith((".", "/", "~")) or path.endswith(".gguf") or path.count("/") != 1
    if not local and not Path(path).exists():
        return path  # a hub id (org/name)
    p = Path(path.rstrip("/"))
    return p.stem if p.suffix == ".gguf" else p.name


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.2f}"
    return str(v)


def card(store: Store, run: Run, kind: str, rank_row: dict[str, Any] | None, recommended: bool) -> str:
    """README.md of an export (`kind`: adapter, model, merged)."""
    exp = store.experiment(run.experiment) or {}
    cfg = (run.config or {}).get("experiment") or exp.get("config") or {}
    entry = (run.config or {}).get("entry") or {}
    data, training, evaluation = cfg.get("data") or {}, cfg.get("training") or {}, cfg.get("evaluation") or {}
    base = portable_base(run)
    main = (run.info or {}).get("main_metric") or (rank_row or {}).get("main_metric")
    metrics = {k: v for k, v in (run.metrics or {}).items() if isinstance(v, int | float) and not k.startswith("_")}
    counts = ((run.info or {}).get("data") or {})
    lines = ["---", f"base_model: {base}", "library_name: " + ("peft" if kind == "adapter" else "transformers"),
             "tags:", "- peftlab", f"- {run.method}", f"- {exp.get('task', cfg.get('task', ''))}", "---", "",
             f"# {run.experiment} / {run.name}", ""]
    what = {"adapter": f"A {run.method} adapter", "model": "A fully fine-tuned model",
            "merged": f"The {run.method} adapter merged into its base model"}.get(kind, "A model")
    lines.append(f"{what} for **{exp.get('task', cfg.get('task', '?'))}** on `{base}`, trained and evaluated by "
                 f"peftlab {__version__} in the experiment `{run.experiment}`"
                 + (" (the run its report recommends)." if recommended else "."))
    lines += ["", "## Results (test split)", ""]
    if rank_row and rank_row.get("rank"):
        lines.append(f"Rank {rank_row['rank']} of the experiment by {main}"
                     + (f" (rank group {rank_row['rank_group']}: 1 = not significantly different from the best)"
                        if rank_row.get("rank_group") else "") + ".")
        lines.append("")
    lines += ["| metric | value | 95% CI |", "| --- | --- | --- |"]
    for k in sorted(metrics, key=lambda k: (k != main, k)):
        lo, hi = (rank_row or {}).get(f"{k}_ci_low"), (rank_row or {}).get(f"{k}_ci_high")
        ci = f"{lo:.2f} to {hi:.2f}" if isinstance(lo, int | float) and isinstance(hi, int | float) else ""
        lines.append(f"| {k}{' (main)' if k == main else ''} | {_fmt(metrics[k])} | {ci} |")
    if counts:
        lines += ["", f"Data: {counts.get('train', '?')} training, {counts.get('validation', '?')} validation and "
                      f"{counts.get('test', '?')} test examples from `{Path(str(data.get('train', ''))).name}`"
                      + (f" ({counts['truncated_train_rows']} training rows truncated to the max lengths)"
                         if counts.get("truncated_train_rows") else "") + "."]
    lines += ["", "## Input format", ""]
    if data.get("prompt"):
        lines += ["Prompt template (`{column}` placeholders filled from the data):", "", "```text",
                  str(data["prompt"]), "```"]
    elif data.get("input"):
        lines.append(f"Input column(s): `{data['input']}`.")
    if data.get("system_prompt"):
        lines += ["", f"System prompt: {data['system_prompt']}"]
    target = data.get("target") or data.get("label")
    if target:
        lines.append(f"\nTarget: the `{target}` column." if data.get("target") else
                     f"\nLabels: {', '.join((run.info or {}).get('labels') or [])} (column `{target}`).")
    lines += ["", "## Training", "", "| setting | value |", "| --- | --- |",
              f"| method | {run.method} |"]
    for k, v in (entry.get("options") or {}).items():
        lines.append(f"| {k} | {v} |")
    resolved = run.resolved or {}
    lr = entry.get("learning_rate") or resolved.get("learning_rate") or training.get("learning_rate")
    if lr:
        lines.append(f"| learning rate | {lr} |")
    for k in ("epochs", "max_steps", "batch_size", "max_source_length", "max_target_length", "seed", "precision"):
        if training.get(k) is not None:
            lines.append(f"| {k} | {training[k]} |")
    for k in ("max_new_tokens", "num_beams"):
        if evaluation.get(k) is not None:
            lines.append(f"| evaluation.{k} | {evaluation[k]} |")
    cost = run.cost or {}
    for k, label in (("trainable_params", "trainable parameters"), ("train_seconds", "train seconds"),
                     ("peak_memory_mb", "peak memory (MB)")):
        if isinstance(cost.get(k), int | float):
            lines.append(f"| {label} | {_fmt(cost[k])} |")
    lines += ["", "## Use", "", "```python"]
    task = SPECS.get(str(cfg.get("task")))
    auto = task.auto_class if task is not None else "AutoModel"
    if kind == "adapter":
        lines += [f"from transformers import {auto}", "from peft import PeftModel", "",
                  f'base = {auto}.from_pretrained("{base}")  # the base model (a hub id or your copy of the folder)',
                  'model = PeftModel.from_pretrained(base, "path/to/this/folder")']
    else:
        lines += [f"from transformers import {auto}", "", f'model = {auto}.from_pretrained("path/to/this/folder")']
    lines += ["```", "", "Format inputs as at training time (the template above, and the tokenizer's chat template "
              "when it has one) to get the scores above.", ""]
    return "\n".join(lines)


def portable_zip(src: Path, dest: Path, readme: str, base: str) -> Path:
    """A copy of the engine's zip `src` with README.md replaced by `readme` and the absolute base
    model path in adapter_config.json (and config.json's _name_or_path) replaced by `base`."""
    if dest.is_file() and dest.stat().st_mtime >= src.stat().st_mtime:
        with zipfile.ZipFile(dest) as z:
            old = next((z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith("/README.md")), "")
        if old == readme:
            return dest
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        names = zin.namelist()
        root = names[0].split("/", 1)[0] if names else dest.stem
        for n in names:
            leaf = n.rsplit("/", 1)[-1]
            if leaf == "README.md":
                continue
            raw = zin.read(n)
            if leaf in ("adapter_config.json", "config.json"):
                try:
                    d = json.loads(raw)
                    if leaf == "adapter_config.json" and d.get("base_model_name_or_path"):
                        d["base_model_name_or_path"] = base
                    if leaf == "config.json" and str(d.get("_name_or_path", "")).startswith(("/", "~")):
                        d["_name_or_path"] = base
                    raw = json.dumps(d, indent=2).encode("utf-8")
                except ValueError:
                    pass
            zout.writestr(n, raw)
        zout.writestr(f"{root}/README.md", readme)
    tmp.replace(dest)
    return dest
