"""What a downloaded adapter or merged model carries besides its weights: a model card
(README.md: the experiment, the run's metrics with their intervals, its rank, the prompt
template, the training and method settings, how to load it) in place of peft's blank one, and
a portable `base_model_name_or_path` (a hub id, or the model folder's name) in place of the
absolute path of this machine's model folder.

    portable_zip(src_zip, dest, card, base)   a copy of the engine's zip with both replaced
    finish_folder(store, run, out, kind)      the same for a folder `peftlab export` wrote

One export, the same from the command line and the web service: both write this card and this
base name, and the checks beside a merged model or a converted LoRA name the base portably.
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
    chat = _chat_format(run, cfg)
    if chat:
        lines += chat
    elif data.get("prompt"):
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
    answered = resolved.get("eval_precision") or resolved.get("precision")
    if answered:
        lines.append(f"| evaluation precision | {answered} |")
    cost = run.cost or {}
    for k, label in (("trainable_params", "trainable parameters"), ("train_seconds", "train seconds"),
                     ("peak_memory_mb", "peak memory (MB)")):
        if isinstance(cost.get(k), int | float):
            lines.append(f"| {label} | {_fmt(cost[k])} |")
    lines += ["", "## Use", ""]
    if answered == "fp32":
        lines += ["Loaded as below (float32, transformers' default), greedy decoding gives the run's test "
                  "outputs, the answers its leaderboard scored.", ""]
    elif answered:
        lines += [f"The run's test outputs were computed under {answered} autocast "
                  f"(`torch.autocast(..., dtype=torch.{'bfloat16' if answered == 'bf16' else 'float16'})`); "
                  "loaded in float32 alone, some greedy answers may differ.", ""]
    lines += ["```python"]
    task = SPECS.get(str(cfg.get("task")))
    auto = task.auto_class if task is not None else "AutoModel"
    labels = (run.info or {}).get("labels") or []
    heads = ""
    if labels and task is not None and task.target_key == "label":  # the head's size and names, as trained
        id2label = {i: name for i, name in enumerate(labels)}
        heads = (f", num_labels={len(labels)},\n    id2label={id2label!r},\n"
                 f"    label2id={ {v: k for k, v in id2label.items()}!r},\n"
                 "    ignore_mismatched_sizes=True")  # a base with its own head of another size, as training loaded it
    if kind == "adapter":
        lines += [f"from transformers import {auto}", "from peft import PeftModel", "",
                  f'base = {auto}.from_pretrained("{base}"{heads})  # the base model (a hub id or your copy of '
                  "the folder)",
                  'model = PeftModel.from_pretrained(base, "path/to/this/folder")']
    else:
        lines += [f"from transformers import {auto}", "", f'model = {auto}.from_pretrained("path/to/this/folder")']
    if labels and task is not None and task.target_key == "label":
        lines += [f"# the labels, in the head's order: {', '.join(labels)}"]
    lines += ["```", "", "Format inputs as at training time (the template above, and the tokenizer's chat template "
              "when it has one) to get the scores above.", ""]
    return "\n".join(lines)


def _chat_format(run: Run, cfg: dict[str, Any]) -> list[str]:
    """How a run trained on conversations formats its input: the chat template it was encoded
    with, or the plain layout when the base model has none (`data.chat_encoding`)."""
    data = cfg.get("data") or {}
    fmt = str(data.get("format") or "")
    if fmt not in ("messages", "sharegpt", "alpaca") and not data.get("as_chat"):
        return []
    from peftlab.data.chat_encoding import PLAIN_ASSISTANT, PLAIN_SYSTEM, PLAIN_USER

    template = None
    try:
        from peftlab.config import ExperimentConfig
        from peftlab.models.loading import load_tokenizer, resolve_model

        ec = ExperimentConfig.model_validate(cfg)
        base_dir = Path(str((run.config or {}).get("base_dir"))) if (run.config or {}).get("base_dir") else None
        tok = load_tokenizer(resolve_model(ec.model, base_dir), ec.model, ec.task)
        template = getattr(tok, "chat_template", None)
    except Exception:  # noqa: BLE001 - a moved model: the card says both layouts
        template = ""
    out = [f"Conversations ({fmt or 'chat'} rows, read as messages with a role and content); the model "
           "answers the last user turn."]
    if template:
        out += ["", "They were encoded with the base model's chat template (prompt: "
                "`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`):", "",
                "```jinja", str(template).strip(), "```"]
    else:
        out += ["", ("The base model has no chat template, so" if template is None else "If the base model has no "
                     "chat template,") + " conversations use this plain layout (the reply follows the last line):",
                "", "```text", f"{PLAIN_SYSTEM}{{system}}", f"{PLAIN_USER}{{message}}", f"{PLAIN_ASSISTANT}", "```"]
    return out


def card_for(store: Store, run: Run, kind: str) -> str:
    """The card of an export, with the run's leaderboard row and whether it is the recommendation
    (the one answer: `report.recommend`)."""
    from peftlab.report.collect import collect
    from peftlab.report.leaderboard import is_trial, rows
    from peftlab.report.recommend import recommend

    if is_trial(run):
        return card(store, run, kind, None, False)
    data = collect(store, [run.experiment])
    rec = recommend(data)
    row = next((x for x in rows(store, run.experiment) if x["run"] == run.name
                or run.name in [s["run"] for s in x.get("seeds") or []]), None)
    return card(store, run, kind, row, rec.representative == run.name)


def finish_folder(store: Store, run: Run, out: Path, kind: str) -> None:
    """A folder `peftlab export` wrote: peftlab's card in place of peft's blank one, the portable
    base name in adapter_config.json and config.json, and in the check file beside them."""
    base = portable_base(run)
    for name in ("adapter_config.json", "config.json", "peftlab-merge-check.json", "peftlab-lora-check.json"):
        f = out / name
        if not f.is_file():
            continue
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if name == "adapter_config.json" and d.get("base_model_name_or_path"):
            d["base_model_name_or_path"] = base
        elif name == "config.json" and str(d.get("_name_or_path", "")).startswith(("/", "~")):
            d["_name_or_path"] = base
        elif name.startswith("peftlab-") and d.get("base_model"):
            d["base_model"] = base
        f.write_text(json.dumps(d, indent=2), encoding="utf-8")
    (out / "README.md").write_text(card_for(store, run, kind), encoding="utf-8")


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
            if leaf in ("adapter_config.json", "config.json", "peftlab-merge-check.json"):
                try:
                    d = json.loads(raw)
                    if leaf == "adapter_config.json" and d.get("base_model_name_or_path"):
                        d["base_model_name_or_path"] = base
                    if leaf == "config.json" and str(d.get("_name_or_path", "")).startswith(("/", "~")):
                        d["_name_or_path"] = base
                    if leaf == "peftlab-merge-check.json" and d.get("base_model"):
                        d["base_model"] = base
                    raw = json.dumps(d, indent=2).encode("utf-8")
                except ValueError:
                    pass
            zout.writestr(n, raw)
        zout.writestr(f"{root}/README.md", readme)
    tmp.replace(dest)
    return dest
