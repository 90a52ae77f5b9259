"""Export a run: its adapter as a zip, or a merged model checked against the adapter.

Merging (`merge_and_unload`) folds LoRA / DoRA / AdaLoRA / IA3 weights into the base so
the result loads with plain `from_pretrained`, no peft needed. Before a merged model is
offered, it is checked against the unmerged adapter on a few probe inputs (the run's first
test inputs, or the ones given): the greedy outputs must be identical and the logits
(teacher-forced on prompt + reference) within `atol + rtol * max|logit|`. The check is
written beside the model as `peftlab-merge-check.json`; a model that fails it is not kept.

Prompt-learning adapters (prefix-tuning, prompt-tuning, p-tuning) add virtual tokens
rather than weight deltas and cannot be merged; their adapter is the export. qlora
adapters merge into the full-precision base (the 4-bit base cannot hold the merge).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.infer.loading import adapter_dir, adapter_type, example, load_base, text_task_or_error
from peftlab.methods import get_method
from peftlab.methods.common import merge_and_unload
from peftlab.models.trained import run_config
from peftlab.store import Run, Store
from peftlab.tasks.build import build_task

CHECK_FILE = "peftlab-merge-check.json"
ATOL = 1e-3
RTOL = 1e-4


def artifact(run: Run) -> Path:
    if run.status != "done":
        raise PeftlabError(f"run {run.name!r} is {run.status}; only done runs can be exported")
    method = get_method(run.method)
    if method.is_baseline:
        raise PeftlabError(f"{run.method} trains nothing: there is no adapter; the base model itself is the result")
    d = adapter_dir(run)
    if d is None or not d.is_dir():
        raise PeftlabError(f"run {run.name!r}: its saved {'model' if method.is_full else 'adapter'} is "
                           "missing from the store")
    return d


def export_root(store: Store, run: Run) -> Path:
    d = store.root / "exports" / store.run_dir(run.experiment, run.name).relative_to(store.root / "runs")
    d.mkdir(parents=True, exist_ok=True)
    return d


def zip_dir(src: Path, dest: Path, arc_root: str) -> Path:
    """Zip a folder (atomically: written beside, then renamed)."""
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, f"{arc_root}/{p.relative_to(src)}")
    tmp.replace(dest)
    return dest


def adapter_zip(store: Store, run: Run) -> Path:
    """The run's adapter folder (or, for full fine-tuning, model folder) as a zip, cached."""
    src = artifact(run)
    dest = export_root(store, run) / f"{run.experiment}-{run.name}-{src.name}.zip"
    newest = max((p.stat().st_mtime for p in src.rglob("*") if p.is_file()), default=0)
    if not dest.is_file() or dest.stat().st_mtime < newest:
        zip_dir(src, dest, f"{run.experiment}-{run.name}-{src.name}")
    return dest


def check_output(out: Path, store: Store) -> None:
    """A user-given export folder: new or empty, a folder, and outside the store (a copy inside
    the store's folders would end up inside every later zip of them)."""
    if out.exists() and not out.is_dir():
        raise PeftlabError(f"{out}: is a file; -o needs a folder (new or empty)")
    try:
        inside = out.resolve().is_relative_to(store.root.resolve())
    except (OSError, ValueError) as e:
        raise PeftlabError(f"{out}: not a usable path ({e})") from None
    if inside:
        raise PeftlabError(f"{out}: is inside the store ({store.root}); export to a folder outside it")


def copy_adapter(run: Run, out: Path) -> Path:
    src = artifact(run)
    if out.exists() and not out.is_dir():
        raise PeftlabError(f"{out}: is a file; -o needs a folder (new or empty)")
    if out.exists() and any(out.iterdir()):
        raise PeftlabError(f"{out}: exists and is not empty; choose a new folder")
    shutil.copytree(src, out, dirs_exist_ok=True)
    return out


def _probes(run: Run, probes: list[str] | None, n: int) -> list[tuple[str, str]]:
    if probes:
        return [(p, "") for p in probes[:n]]
    pred = run.file("predictions")
    out: list[tuple[str, str]] = []
    if pred is not None and pred.is_file():
        with open(pred, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                ref = d.get("reference")
                out.append((d["input"], ref[0] if isinstance(ref, list) else str(ref or "")))
                if len(out) >= n:
                    break
    if not out:
        raise PeftlabError("no probe inputs: the run has no predictions file; pass probe inputs")
    return out


def _observe(model: Any, task: Any, exs: list[Any]) -> tuple[list[str], list[Any]]:
    import torch

    outputs = [p.output for p in task.predict(model, exs, desc="merge check")]
    logits = []
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for ex in exs:
            batch = task.collate([task.encode(ex)])
            out = model(**{k: v.to(dev) for k, v in batch.items()})
            logits.append(out.logits.float().cpu())
    return outputs, logits


def merge(store: Store, run: Run, out: Path, probes: list[str] | None = None, n_probes: int = 4,
          atol: float = ATOL, rtol: float = RTOL) -> dict[str, Any]:
    """Merge the run's adapter into its base, check it, and save it to `out` if the check passes.

    Returns the check report (also written to out/peftlab-merge-check.json). Raises
    PeftlabError when merging is impossible or the check fails (then nothing is kept in `out`
    but the report).
    """
    src = artifact(run)
    cfg, _, base_dir = run_config(run)
    text_task_or_error(cfg)
    if out.exists() and any(p.name != CHECK_FILE for p in out.iterdir()):
        raise PeftlabError(f"{out}: exists and is not empty; choose a new folder")
    labels = (run.info or {}).get("labels")
    t0 = time.perf_counter()
    refusal = get_method(run.method).merge_refusal
    if refusal:
        raise PeftlabError(refusal)
    from peft import PeftModel

    base, tok, base_path = load_base(cfg, base_dir, labels)
    peft_model = PeftModel.from_pretrained(base, str(src), is_trainable=False)
    peft_model.eval()
    # The check compares the merge's arithmetic, so both sides run in fp32 whatever the training
    # precision: bf16 autocast noise alone flips greedy choices of a small model.
    task = build_task(cfg, tok, None, labels, precision="fp32")
    pairs = _probes(run, probes, n_probes)
    exs = [example(s, r) for s, r in pairs]
    before_out, before_logits = _observe(peft_model, task, exs)
    merged = merge_and_unload(peft_model)
    merged.eval()
    after_out, after_logits = _observe(merged, task, exs)
    diffs = [float((a - b).abs().max()) for a, b in zip(before_logits, after_logits, strict=True)]
    scale = max(float(b.abs().max()) for b in before_logits)
    tol = atol + rtol * scale
    same = [a == b for a, b in zip(before_out, after_out, strict=True)]
    ok = all(same) and max(diffs) <= tol
    report = {
        "run": run.name, "experiment": run.experiment, "method": run.method, "adapter_type": adapter_type(src),
        "base_model": base_path, "passed": ok, "probes": len(exs),
        "same_greedy_outputs": all(same), "max_abs_logit_diff": max(diffs), "tolerance": tol,
        "atol": atol, "rtol": rtol, "max_abs_logit": scale,
        "details": [{"input": e.source[:300], "adapter_output": a, "merged_output": b, "max_abs_logit_diff": d}
                    for e, a, b, d in zip(exs, before_out, after_out, diffs, strict=True)],
        "seconds": 0.0, "checked_at": time.time(),
    }
    out.mkdir(parents=True, exist_ok=True)
    if ok:
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=".merging-"))
        try:
            merged.save_pretrained(tmp)
            if tok is not None:
                tok.save_pretrained(tmp)
            for p in tmp.iterdir():
                p.replace(out / p.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    (out / CHECK_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if not ok:
        why = [] if all(same) else [f"greedy outputs differ on {same.count(False)} of {len(same)} probes"]
        if max(diffs) > tol:
            why.append(f"logits differ by up to {max(diffs):.3g} (tolerance {tol:.3g})")
        raise PeftlabError(f"merge check failed: {'; '.join(why)}. The merged model was not kept; use the adapter")
    return report


def merged_dir(store: Store, run: Run) -> Path:
    return export_root(store, run) / "merged"


def merged_state(store: Store, run: Run) -> dict[str, Any]:
    d = merged_dir(store, run)
    check = d / CHECK_FILE
    if not check.is_file():
        return {"state": "none"}
    report = json.loads(check.read_text(encoding="utf-8"))
    return {"state": "passed" if report.get("passed") else "failed", "check": report}


def merged_zip(store: Store, run: Run) -> Path:
    st = merged_state(store, run)
    if st["state"] != "passed":
        raise PeftlabError("no checked merged model for this run yet; merge it first (POST .../export/merged)")
    d = merged_dir(store, run)
    dest = export_root(store, run) / f"{run.experiment}-{run.name}-merged.zip"
    if not dest.is_file() or dest.stat().st_mtime < (d / CHECK_FILE).stat().st_mtime:
        zip_dir(d, dest, f"{run.experiment}-{run.name}-merged")
    return dest
