"""Export a run's adapter as a plain LoRA (`peftlab export EXP RUN --as-lora RANK`), for servers
that load LoRA adapters only (vLLM and others).

peft's `save_as_lora` approximates an adapter whose update is a weight delta (LoHa, LoKr, OFT,
VeRA, ...) by a rank-`RANK` LoRA (an SVD of each layer's delta). The approximation is checked
before it is kept, like a merge: the converted LoRA is loaded on a fresh copy of the base and run
on the run's probe inputs against the original adapter. The check reports the largest logit
difference, and the export is refused (nothing kept but the report, `peftlab-lora-check.json`)
when any greedy output differs. A LoRA run is already a LoRA: its adapter is the export.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.infer.export import _observe, _probes, artifact
from peftlab.infer.loading import example, load_base, text_task_or_error
from peftlab.methods import get_method
from peftlab.models.trained import run_config
from peftlab.store import Run
from peftlab.tasks.build import build_task

CHECK_FILE = "peftlab-lora-check.json"


def as_lora(run: Run, out: Path, rank: int, probes: list[str] | None = None, n_probes: int = 4) -> dict[str, Any]:
    """Convert, check and save to `out`; the check report. Raises PeftlabError when the method
    cannot be converted, or when the converted adapter's greedy outputs differ (nothing kept)."""
    from peft import PeftModel, save_as_lora

    from peftlab.methods.catalog import type_of

    method = get_method(run.method)
    if rank < 1:
        raise PeftlabError(f"--as-lora {rank}: the LoRA rank must be 1 or more")
    if method.is_baseline or method.is_full:
        raise PeftlabError(f"{run.name} has no adapter to convert ({run.method})")
    if type_of(method) == "LORA":  # lora, dora, qlora: their adapter is a LoRA
        raise PeftlabError(f"{run.name} is a LoRA already: export its adapter as it is (no --as-lora)")
    if out.exists() and any(p.name != CHECK_FILE for p in out.iterdir()):
        raise PeftlabError(f"{out}: exists and is not empty; choose a new folder")
    src = artifact(run)
    cfg, _, base_dir = run_config(run)
    text_task_or_error(cfg)
    labels = (run.info or {}).get("labels")
    t0 = time.perf_counter()
    base, tok, base_path = load_base(cfg, base_dir, labels)
    original = PeftModel.from_pretrained(base, str(src), is_trainable=False).eval()
    task = build_task(cfg, tok, None, labels, precision="fp32")  # the check compares arithmetic: fp32
    exs = [example(s, r) for s, r in _probes(run, probes, n_probes)]
    before_out, before_logits = _observe(original, task, exs)
    tmp = Path(tempfile.mkdtemp(prefix="peftlab-as-lora-"))
    try:
        try:
            save_as_lora(str(tmp), original, rank=rank)
        except (TypeError, ValueError, NotImplementedError) as e:
            raise PeftlabError(f"{run.method} cannot be converted to LoRA by peft: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        fresh, _, _ = load_base(cfg, base_dir, labels)
        converted = PeftModel.from_pretrained(fresh, str(tmp), is_trainable=False).eval()
        after_out, after_logits = _observe(converted, task, exs)
        diffs = [float((a - b).abs().max()) for a, b in zip(before_logits, after_logits, strict=True)]
        same = [a == b for a, b in zip(before_out, after_out, strict=True)]
        report = {
            "run": run.name, "experiment": run.experiment, "method": run.method, "rank": rank,
            "base_model": base_path, "passed": all(same), "probes": len(exs), "same_greedy_outputs": all(same),
            "max_abs_logit_diff": max(diffs), "max_abs_logit": max(float(b.abs().max()) for b in before_logits),
            "details": [{"input": e.source[:300], "adapter_output": a, "lora_output": b, "max_abs_logit_diff": d}
                        for e, a, b, d in zip(exs, before_out, after_out, diffs, strict=True)],
            "checked_at": time.time(),
        }
        out.mkdir(parents=True, exist_ok=True)
        if report["passed"]:
            for p in tmp.iterdir():
                shutil.move(str(p), out / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    (out / CHECK_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if not report["passed"]:
        raise PeftlabError(f"LoRA conversion check failed: greedy outputs differ on {same.count(False)} of "
                           f"{len(same)} probes (largest logit difference {max(diffs):.3g}); the LoRA was not kept. "
                           "Try a higher --as-lora rank, or export the adapter as it is")
    return report
