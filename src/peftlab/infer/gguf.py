"""Export a run as GGUF for llama.cpp, Ollama and LM Studio, checked in llama.cpp before it is kept.

`peftlab export EXP RUN --gguf [--quant f16,q8_0] -o DIR`:
1. The adapter is merged into the base and the merge checked (`infer.export.merge`); a fully
   fine-tuned run is its own model. The model folder gets a chat template that formats a prompt
   as training did (`infer.modelfile`) where the base's own would not (a prompt template, or a
   model without one).
2. llama.cpp's converter writes a float32 GGUF, its quantizer each type asked for (`gguf_tools`).
3. **The check**, per type: llama.cpp loads the file (llama-cpp-python) and answers the run's
   first test inputs, each formatted as the Modelfile formats it, greedily, with the Modelfile's
   stops and length, beside the run's adapter (peft, float32, the run's decoding). Recorded per
   input: whether llama.cpp's prompt tokens equal training's, both outputs, how each stopped
   (an end token or the length), and the mean gap of the log-probabilities the two give the
   adapter's output (teacher-forced, llama.cpp's own forward). Float types (f32, f16, bf16) pass
   when every prompt's tokens, output and stop agree; quantized types when the tokens agree and
   the file ends its answer wherever the adapter ended its own (their outputs and gap are
   reported: quantization may change a word, it must not make the model babble past its end).
   A type that fails is not kept.
4. Beside each GGUF an Ollama Modelfile, and the check as `peftlab-gguf-check.json`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.infer import gguf_tools
from peftlab.infer.decode import Row, decode
from peftlab.infer.export import _probes, artifact, export_root, merge
from peftlab.infer.loading import load_base
from peftlab.infer.modelfile import PromptFormat, context_of, modelfile, ollama_prompt, prompt_format
from peftlab.infer.prompts import source_prompt
from peftlab.methods import get_method
from peftlab.models import resolve_model
from peftlab.models.trained import run_config
from peftlab.store import Run, Store
from peftlab.tasks.build import build_task
from peftlab.tasks.causal_lm import stop_ids
from peftlab.tasks.spec import CAUSAL_LM

CHECK_FILE = "peftlab-gguf-check.json"


def gguf_dir(store: Store, run: Run) -> Path:
    return export_root(store, run) / "gguf"


def gguf_state(store: Store, run: Run) -> dict[str, Any]:
    """The web page's view of the run's GGUF export: none, passed (some type kept) or failed."""
    check = gguf_dir(store, run) / CHECK_FILE
    if not check.is_file():
        return {"state": "none"}
    report = json.loads(check.read_text(encoding="utf-8"))
    return {"state": "passed" if report.get("passed") else "failed", "check": report,
            "files": sorted(p.name for p in gguf_dir(store, run).iterdir() if p.is_file() and p.name != CHECK_FILE)}


def exportable(run: Run) -> None:
    """Raise with the reason when the run cannot become a GGUF (before any work)."""
    cfg, _, _ = run_config(run)
    if cfg.task != CAUSAL_LM:
        raise PeftlabError(f"GGUF export is for causal language models (what llama.cpp and Ollama run); this run is "
                           f"{cfg.task}: download its adapter or merged model instead")
    method = get_method(run.method)
    if method.is_baseline:
        raise PeftlabError(f"{run.method} trains nothing: convert the base model itself with llama.cpp")
    if not (method.is_full or method.mergeable):
        raise PeftlabError(f"{run.method} adds virtual tokens (or modules) instead of weight deltas, so it cannot be "
                           "merged into the weights that a GGUF holds; export a method that merges (LoRA, DoRA, IA3, …)")
    artifact(run)


def _model_folder(store: Store, run: Run, dest: Path, n_probes: int) -> tuple[Any, Any, Any]:
    """The run as one Hugging Face model folder in `dest`; (cfg, labels, merge check or None)."""
    cfg, _, base_dir = run_config(run)
    labels = (run.info or {}).get("labels")
    check = None
    if get_method(run.method).is_full:
        model, tok, _ = load_base(cfg, base_dir, labels, weights=str(artifact(run)))
        model.save_pretrained(dest)
        tok.save_pretrained(dest)
    else:
        check = merge(store, run, dest, n_probes=n_probes)
    # The base's SentencePiece model: transformers saves only tokenizer.json, from which llama.cpp's
    # converter would build a BPE vocabulary that splits some words otherwise than training did.
    spm = Path(resolve_model(cfg.model, base_dir).path) / "tokenizer.model"
    if spm.is_file() and not (dest / spm.name).exists():
        shutil.copyfile(spm, dest / spm.name)
    return cfg, labels, check


def _architecture(folder: Path) -> str:
    archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or ["?"]
    if archs[0] not in gguf_tools.supported_architectures():
        raise PeftlabError(f"llama.cpp's converter does not support the architecture {archs[0]} "
                           f"(llama-cpp-python {gguf_tools.llama_cpp().__version__}); download the merged model instead")
    return archs[0]


def _set_chat_template(folder: Path, fmt: PromptFormat, base_has_template: bool) -> bool:
    """Give the model folder a chat template that formats as training did, where the base's own does
    not (a prompt template around the input, or no chat template). True when it was replaced."""
    if base_has_template and fmt.field is None:
        return False
    p = folder / "tokenizer_config.json"
    d = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    d["chat_template"] = fmt.jinja_template()
    p.write_text(json.dumps(d, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return True


def export_gguf(store: Store, run: Run, out: Path, quants: list[str], n_probes: int = 4) -> dict[str, Any]:
    """Convert, quantize, check and write the run as GGUF files with Modelfiles to `out`.
    Returns the check report (also in out/peftlab-gguf-check.json). Raises PeftlabError when the
    run cannot be exported, or when no type passed (then only the report is kept)."""
    exportable(run)
    gguf_tools.llama_cpp()
    if out.exists() and any(p.name != CHECK_FILE for p in out.iterdir()):
        raise PeftlabError(f"{out}: exists and is not empty; choose a new folder")
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".gguf-"))
    try:
        folder = work / "model"
        cfg, labels, merge_check = _model_folder(store, run, folder, n_probes)
        arch = _architecture(folder)
        check = Check(run, cfg, labels, n_probes)
        replaced = _set_chat_template(folder, check.fmt, check.task.fmt.chat)
        f32 = gguf_tools.convert(folder, work / "model-f32.gguf")
        stem = f"{run.experiment}-{run.name}"
        results, kept = [], []
        for q in quants:
            path = gguf_tools.quantize(f32, work / f"{stem}-{q}.gguf", q)
            res = check.gguf(path, q)
            results.append(res)
            if res["passed"]:
                mf = modelfile(path.name, check.fmt, cfg, check.context,
                               f"{run.experiment}/{run.name} ({run.method}, {q}), exported by peftlab")
                (work / f"Modelfile.{q}").write_text(mf, encoding="utf-8")
                kept += [path, work / f"Modelfile.{q}"]
        if kept:
            first = next(r["type"] for r in results if r["passed"])
            shutil.copyfile(work / f"Modelfile.{first}", work / "Modelfile")
            kept.append(work / "Modelfile")
        for p in kept:
            p.replace(out / p.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "run": run.name, "experiment": run.experiment, "method": run.method, "architecture": arch,
        "llama_cpp_python": gguf_tools.llama_cpp().__version__, "passed": any(r["passed"] for r in results),
        "types": results, "prompt_template": check.fmt.go_template(), "chat_template_replaced": replaced,
        "merge_check": None if merge_check is None else {k: merge_check[k] for k in
                                                           ("passed", "same_greedy_outputs", "max_abs_logit_diff")},
        "seconds": round(time.perf_counter() - t0, 2), "checked_at": time.time(),
    }
    (out / CHECK_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if not report["passed"]:
        raise PeftlabError("GGUF check failed for every type: " + "; ".join(f"{r['type']}: {r['why']}" for r in results)
                           + f". Nothing was kept but {CHECK_FILE}")
    return report


class Check:
    """The run's adapter (or model) on its probe inputs: the reference each GGUF is held to."""

    def __init__(self, run: Run, cfg: Any, labels: Any, n_probes: int) -> None:
        from peft import PeftModel

        _, _, base_dir = run_config(run)
        full = get_method(run.method).is_full
        model, tok, _ = load_base(cfg, base_dir, labels, weights=str(artifact(run)) if full else None)
        self.model = model if full else PeftModel.from_pretrained(model, str(artifact(run)), is_trainable=False).eval()
        self.cfg, self.tok = cfg, tok
        self.task = build_task(cfg, tok, None, labels, precision="fp32")
        self.fmt = prompt_format(self.task, cfg)
        self.context = context_of(model)
        self.stops = stop_ids(tok)
        self.rows = []
        for source, _ in _probes(run, None, n_probes):
            ids, _ = source_prompt(self.task, cfg, source)
            row = Row(prompt=ids, max_tokens=cfg.evaluation.max_new_tokens)
            decode(self.model, tok, [row], self.stops, repetition_penalty=cfg.evaluation.repetition_penalty,
                   no_repeat_ngram_size=cfg.evaluation.no_repeat_ngram_size)
            value = self.fmt.value_of(source)
            self.rows.append((value, row, self._logprobs(ids, self._answer_ids(row))))

    def _answer_ids(self, row: Row) -> list[int]:
        return row.tokens + ([row.stop_token] if row.stop_token is not None else [])

    def _logprobs(self, prompt: list[int], answer: list[int]) -> list[float]:
        import torch

        if not answer:
            return []
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
        lp = logits.log_softmax(-1)
        return [float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(answer)]

    def gguf(self, path: Path, quant: str) -> dict[str, Any]:
        """Load the GGUF in llama.cpp and hold it to the adapter's answers."""
        lc = gguf_tools.llama_cpp()
        ev = self.cfg.evaluation
        n_ctx = max(len(r.prompt) for _, r, _ in self.rows) + ev.max_new_tokens + 16
        llm = lc.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False, seed=0)
        template = self.fmt.go_template()
        details = []
        try:
            for value, row, ref_lp in self.rows:
                text = ollama_prompt(template, value)  # formatted as the Modelfile formats it
                ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
                got = llm.create_completion(text, max_tokens=ev.max_new_tokens, temperature=0.0,
                                            repeat_penalty=ev.repetition_penalty, stop=list(self.fmt.stops))
                choice = got["choices"][0]
                gaps = self._gaps(llm, row.prompt, self._answer_ids(row), ref_lp)
                details.append({
                    "input": value[:300], "same_prompt_tokens": ids == row.prompt, "prompt_tokens": len(row.prompt),
                    "adapter_output": row.text, "gguf_output": choice["text"].strip(),
                    "adapter_stop": row.finish_reason, "gguf_stop": choice["finish_reason"],
                    "mean_logprob_gap": _mean(gaps), "max_logprob_gap": max(gaps, default=0.0),
                })
        finally:
            llm.close()
        for d in details:
            d["same_output"] = d["adapter_output"] == d["gguf_output"]
            d["same_stop"] = d["adapter_stop"] == d["gguf_stop"]
            # where the adapter ended its answer, the file must too (where the adapter ran to the length
            # limit, a quantized file that ends sooner is no fault)
            d["stops_where_adapter_stops"] = d["adapter_stop"] != "stop" or d["gguf_stop"] == "stop"
        exact = quant in gguf_tools.FLOAT_TYPES
        why = []
        if not all(d["same_prompt_tokens"] for d in details):
            why.append("llama.cpp tokenizes the formatted prompt differently from training")
        runs_on = sum(not d["stops_where_adapter_stops"] for d in details)
        if runs_on:
            why.append(f"runs on past the adapter's end on {runs_on} of {len(details)} inputs")
        if exact and not all(d["same_stop"] for d in details):
            why.append(f"stops differently on {sum(not d['same_stop'] for d in details)} of {len(details)} inputs")
        if exact and not all(d["same_output"] for d in details):
            why.append(f"greedy outputs differ on {sum(not d['same_output'] for d in details)} of {len(details)} inputs")
        return {"type": quant, "file": path.name, "bytes": path.stat().st_size, "passed": not why,
                "why": "; ".join(why) or None, "requires_equal_outputs": exact, "probes": len(details),
                "same_outputs": sum(d["same_output"] for d in details),
                "same_stops": sum(d["same_stop"] for d in details),
                "mean_logprob_gap": _mean([d["mean_logprob_gap"] for d in details]), "details": details}

    @staticmethod
    def _gaps(llm: Any, prompt: list[int], answer: list[int], ref: list[float]) -> list[float]:
        """|log p_adapter - log p_gguf| of each answer token, teacher-forced in llama.cpp."""
        import numpy as np

        if not answer:
            return []
        llm.reset()
        llm.eval(prompt + answer)
        scores = np.asarray(llm.scores[len(prompt) - 1: len(prompt) - 1 + len(answer)], dtype=np.float64)
        top = scores.max(-1, keepdims=True)
        lp = scores - top - np.log(np.exp(scores - top).sum(-1, keepdims=True))
        return [abs(r - float(lp[i, t])) for i, (t, r) in enumerate(zip(answer, ref, strict=True))]


def _mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0
