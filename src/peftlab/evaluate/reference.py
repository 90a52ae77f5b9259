"""The reference set forgetting is measured on (`evaluation.forgetting`): prompts and continuations
that are not the task's data, with the base model's loss on each.

Default: the 64 general prompts shipped in `data/general_prompts.txt` (everyday questions, facts,
instructions, story openings), each continued by the base model itself, sampled at temperature 1
with no top-k or top-p cut, so the continuations are draws from the base's own distribution.
A chat model gets each prompt as one user turn of its own chat template (no system prompt); a
plain language model gets it as text after BOS; an encoder-decoder as its encoder input.

A user's set (`evaluation.forgetting: FILE` or `hf://org/name[:split]`): a .txt file (one text a
line) or rows of JSONL/CSV/Parquet/hub data: `{"text"}` is scored as it is, `{"prompt",
"completion"}` scores the completion after the prompt, and `{"prompt"}` alone is continued by the
base model as the default set is.

The set is made once per base model (its files as they are now), evaluation precision and source,
by the first run that needs it, under a file lock, and written whole into the store
(`cache/forgetting/<key>.json`), so every run of every experiment on that base scores the same tokens
against the same base losses. A copy goes to the machine's peftlab cache (`PEFTLAB_CACHE_DIR`), from
which another store on the same machine takes the same set instead of making it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError, DataError

PROMPTS = Path(__file__).with_name("data") / "general_prompts.txt"
NEW_TOKENS = 80  # tokens the base samples per prompt
SEED = 29  # the sampling seed (issue 29): the same set on every call
SAMPLE_BATCH = 16
MAX_ROWS = 512  # rows of a user's set that are used (the first ones)
MAX_COMPLETION = 256  # tokens of a given text or completion that are scored
MAX_PROMPT = 256  # tokens of a prompt (the experiment's max_source_length does not apply: one set per base)
VERSION = 1  # bump when the way a set is made changes: sets made before are made again


@dataclass
class RefRow:
    """One row of a reference source: a prompt, and its completion (None: the base samples one)."""

    prompt: str
    completion: str | None
    where: str


def _fix() -> str:
    return ('each row needs "text" (scored as it is), or "prompt" with an optional "completion" (without one, '
            "the base model continues the prompt); a .txt file holds one text a line")


def read_source(spec: str, base: Path | None = None) -> tuple[str, list[RefRow]]:
    """(a digest of the source, its rows) for `evaluation.forgetting: spec`. Raises ConfigError
    naming the file and line, and what a row must be."""
    from peftlab.data.sources import HUB_PREFIX, read_rows
    from peftlab.paths import resolve

    path = None if spec.startswith(HUB_PREFIX) else resolve(spec, "data", base)
    if path is not None and path.suffix.lower() == ".txt":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"evaluation.forgetting: {path}: cannot read it as UTF-8 text ({e})") from None
        rows = [RefRow("", line.strip(), f"{path}:{i}") for i, line in enumerate(text.splitlines(), start=1)
                if line.strip()]
        if not rows:
            raise ConfigError(f"evaluation.forgetting: {path}: no text in the file; {_fix()}")
        return hashlib.sha256(text.encode()).hexdigest(), rows[:MAX_ROWS]
    try:
        rs = read_rows(spec, base)
    except DataError as e:  # its advice on data.on_bad_rows is for the training data, not this file
        msg = str(e).replace(" (fix the row, or set data.on_bad_rows: skip to drop such rows)", "")
        raise ConfigError(f"evaluation.forgetting: {msg}; {_fix()}") from None
    out = []
    for i, r in enumerate(rs.rows[:MAX_ROWS], start=1):
        where = f"{rs.source}:{r.get('__line__', i)}"
        text, prompt, completion = r.get("text"), r.get("prompt"), r.get("completion")
        if isinstance(text, str) and text.strip() and prompt is None:
            out.append(RefRow("", text.strip(), where))
        elif isinstance(prompt, str) and prompt.strip() and (completion is None or isinstance(completion, str)):
            out.append(RefRow(prompt.strip(), completion, where))
        else:
            keys = ", ".join(sorted(k for k in r if k != "__line__")) or "none"
            raise ConfigError(f"evaluation.forgetting: {where}: a reference row with keys ({keys}) and no usable "
                              f"text; {_fix()}")
    digest = path.read_bytes() if path is not None else json.dumps(rs.rows[:MAX_ROWS], default=str).encode()
    return hashlib.sha256(digest).hexdigest(), out


def source_rows(setting: bool | str, base: Path | None) -> tuple[str, str, list[RefRow]]:
    """(source name, digest, rows) of the experiment's reference: the shipped prompts, or the user's."""
    if isinstance(setting, str):
        digest, rows = read_source(setting, base)
        return setting, digest, rows
    text = PROMPTS.read_text(encoding="utf-8")
    rows = [RefRow(line.strip(), None, f"{PROMPTS.name}:{i}") for i, line in enumerate(text.splitlines(), start=1)
            if line.strip()]
    return "peftlab general prompts, continued by the base model", hashlib.sha256(text.encode()).hexdigest(), rows


def model_fingerprint(path: str) -> str:
    """The base model's files as they are now (name, size, modification time): a model retrained
    into the same folder is another base. A hub id is itself (its revision is in the key)."""
    p = Path(path)
    if not p.exists():
        return path
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.is_file())
    stats = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    return hashlib.sha256(json.dumps([str(p.resolve()), stats]).encode()).hexdigest()[:16]


def reference_key(cfg: Any, model_path: str, digest: str) -> str:
    """What makes two runs' reference sets the same set: the base, its task and precision, the source."""
    body = {"model": model_path, "files": model_fingerprint(model_path), "revision": cfg.model.revision, "gguf": cfg.model.gguf_file, "task": cfg.task,
            "precision": cfg.evaluation.precision, "source": digest, "new_tokens": NEW_TOKENS, "seed": SEED,
            "version": VERSION}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def encode_prompt(task: Any, prompt: str) -> list[int]:
    """The prompt's tokens: its chat turn (chat models, no system prompt) or BOS + text (causal),
    the encoder input (seq2seq)."""
    if task.spec.decoder_only:
        from peftlab.tasks.causal_lm import PromptFormatter

        if not prompt:  # a text scored as it is: BOS only
            return _bos(task.tok)
        return PromptFormatter(task.tok, None).prompt_ids(prompt, MAX_PROMPT)[0]
    return task.tok(prompt)["input_ids"][:MAX_PROMPT]


def _bos(tok: Any) -> list[int]:
    probe = tok("a")["input_ids"]
    return [tok.bos_token_id] if tok.bos_token_id is not None and probe and probe[0] == tok.bos_token_id else []


def build(model: Any, task: Any, rows: list[RefRow]) -> list[dict[str, Any]]:
    """The reference items for `rows` on the base `model`: prompt and completion tokens (sampled
    where the row has none) and the base's loss on the completion (`base_nll`, nats/token)."""
    items = []
    for r in rows:
        p = encode_prompt(task, r.prompt)
        c = task.tok(r.completion, add_special_tokens=False)["input_ids"][:MAX_COMPLETION] if r.completion else None
        if c is not None and not p:  # no BOS to start from: the text's first token is its context
            p, c = c[:1], c[1:]
        if c is not None and not c:
            raise ConfigError(f"evaluation.forgetting: {r.where}: the text is a single token; nothing to score")
        items.append({"prompt": r.prompt, "prompt_ids": p, "completion_ids": c, "where": r.where})
    todo = [i for i, it in enumerate(items) if it["completion_ids"] is None]
    if todo:
        for i, c in zip(todo, sample(model, task, [items[i]["prompt_ids"] for i in todo]), strict=True):
            items[i]["completion_ids"] = c
            items[i]["sampled"] = True
    for it, nll in zip(items, example_nll(model, task, items), strict=True):
        it["completion"] = task.tok.decode(it["completion_ids"], skip_special_tokens=True)
        it["base_nll"] = nll
    return items


def features(task: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items as the task's features: prompt then completion, loss on the completion only."""
    if task.spec.decoder_only:
        return [{"input_ids": it["prompt_ids"] + it["completion_ids"],
                 "labels": [-100] * len(it["prompt_ids"]) + it["completion_ids"]} for it in items]
    return [{"input_ids": it["prompt_ids"], "labels": it["completion_ids"]} for it in items]


def example_nll(model: Any, task: Any, items: list[dict[str, Any]]) -> list[float]:
    """Each item's mean loss per completion token under `model`, with the task's own loss (as the
    test loss is computed: virtual tokens of prompt methods included), one item per batch, so no
    padding touches the numbers."""
    import torch

    from peftlab.device import autocast

    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode(), autocast(task.precision):
            for f in features(task, items):
                batch = {k: v.to(dev) for k, v in task.collate([f]).items()}
                out.append(float(task.loss(model, batch)))
    finally:
        model.train(was)
    return out


def sample(model: Any, task: Any, prompts: list[list[int]]) -> list[list[int]]:
    """The base's continuation of each prompt: ancestral sampling (temperature 1, no top-k/top-p),
    seeded per batch, cut after the first stop token (kept: ending there is part of the base's answer)."""
    import torch
    from transformers import GenerationConfig

    from peftlab.device import autocast
    from peftlab.tasks.causal_lm import stop_ids

    stop = stop_ids(task.tok) if task.spec.decoder_only else [task.tok.eos_token_id]
    pad = task.tok.pad_token_id if task.tok.pad_token_id is not None else stop[0]
    gc = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=NEW_TOKENS,
                          eos_token_id=stop, pad_token_id=pad)
    dev = next(model.parameters()).device
    out: list[list[int]] = []
    model.eval()
    with torch.inference_mode(), autocast(task.precision):
        for b, s in enumerate(range(0, len(prompts), SAMPLE_BATCH)):
            rows = prompts[s : s + SAMPLE_BATCH]
            n = max(len(r) for r in rows)
            ids = torch.full((len(rows), n), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), n), dtype=torch.long)
            for i, r in enumerate(rows):  # decoder-only: left padding; an encoder's input: right padding
                at = slice(n - len(r), n) if task.spec.decoder_only else slice(0, len(r))
                ids[i, at], mask[i, at] = torch.tensor(r), 1
            torch.manual_seed(SEED + b)
            gen = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), generation_config=gc)
            new = gen[:, n:] if task.spec.decoder_only else gen[:, 1:]
            for toks in new.tolist():
                cut = next((k for k, t in enumerate(toks) if t in stop), None)
                out.append(toks[: cut + 1] if cut is not None else toks)
    return [c or stop[:1] for c in out]


def cache_path(store_root: Path, key: str) -> Path:
    return store_root / "cache" / "forgetting" / f"{key}.json"


def shared_path(key: str) -> Path:
    from peftlab.models.loading import cache_dir

    return cache_dir() / "forgetting" / f"{key}.json"


def _read(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        ref = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(ref, dict) and ref.get("items"):
            return ref
    return None


def _write(path: Path, ref: dict[str, Any]) -> None:
    """Written whole: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ref), encoding="utf-8")
    os.replace(tmp, path)


def load_or_make(path: Path, make: Any, shared: Path | None = None) -> dict[str, Any]:
    """The reference at `path` (the store's); when absent, the machine cache's copy (`shared`), or
    one made by `make()`, under a file lock (a second run asking meanwhile waits, then reads it)."""
    ref = _read(path)
    if ref is not None:
        return ref
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ref = _read(path) or (_read(shared) if shared is not None else None)
            if ref is None:
                ref = make()
                if shared is not None:
                    with contextlib.suppress(OSError):  # a read-only cache: the store's copy is enough
                        _write(shared, ref)
            _write(path, ref)
            return ref
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
