"""Find and load base models and tokenizers, safely.

- Local folders, `.gguf` files, names on PEFTLAB_MODEL_PATH / shared/models, or hub ids.
- GGUF checkpoints are dequantized once by transformers and cached as a plain safetensors
  folder (PEFTLAB_CACHE_DIR, default ~/.cache/peftlab): later loads take seconds instead of
  half a minute, and full fine-tuning works (transformers refuses to train "quantized" models).
- Remote code never runs unless `trust_remote_code: true`; weights load from safetensors or
  GGUF only unless `allow_pickle: true`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.config.schema import ExperimentConfig, ModelConfig
from peftlab.errors import ModelError
from peftlab.paths import resolve, search_dirs
from peftlab.tasks.spec import spec


@dataclass
class ResolvedModel:
    path: str  # what from_pretrained receives: a local folder or a hub id
    local: bool
    gguf_source: str | None = None  # the original .gguf, when `path` is its cached plain copy


def cache_dir() -> Path:
    return Path(os.environ.get("PEFTLAB_CACHE_DIR", Path.home() / ".cache" / "peftlab"))


def resolve_model(cfg: ModelConfig, base: Path | None = None) -> ResolvedModel:
    p = resolve(cfg.path, "models", base)
    if p is None:
        looks_local = cfg.path.startswith((".", "/", "~")) or cfg.path.endswith(".gguf") or cfg.path.count("/") != 1
        searched = ", ".join(str(d) for d in search_dirs("models", base)) or "(none)"
        if looks_local:
            raise ModelError(
                f"model {cfg.path!r} not found. Searched relative to the experiment file, the current "
                f"directory and: {searched}. Give a folder, a .gguf file or a hub id (org/name)."
            )
        return ResolvedModel(cfg.path, local=False)
    gguf = _gguf_file(p, cfg.gguf_file)
    if gguf is not None:
        return ResolvedModel(str(_plain_copy(gguf, p if p.is_dir() else p.parent)), True, str(gguf))
    if not (p / "config.json").is_file():
        raise ModelError(f"{p}: no config.json; a model folder needs config.json and weights")
    _check_weights(p, cfg.allow_pickle)
    return ResolvedModel(str(p), local=True)


def _gguf_file(p: Path, name: str | None) -> Path | None:
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise ModelError(f"{p}: a model file must be .gguf; otherwise give the model's folder")
        f = p
    elif name:
        f = p / name
        if not f.is_file():
            raise ModelError(f"{f}: gguf_file not found in {p}")
    else:
        found = sorted(p.glob("*.gguf"))
        if not found:
            return None
        if len(found) > 1:
            raise ModelError(f"{p}: several .gguf files {[x.name for x in found]}; choose one with `gguf_file`")
        f = found[0]
    with open(f, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ModelError(f"{f}: not a GGUF file (bad magic bytes); re-download or convert it")
    return f


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _check_weights(p: Path, allow_pickle: bool) -> None:
    shards = sorted(p.glob("*.safetensors"))
    if shards:
        for f in shards:
            _check_safetensors(f)
        return
    pickled = sorted(f.name for f in p.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES and f.is_file())
    if pickled:
        if not allow_pickle:
            raise ModelError(
                f"{p}: weights are pickled ({', '.join(pickled[:3])}), which can run arbitrary code when loaded. "
                "Convert them to safetensors, or set model.allow_pickle: true if you trust the source."
            )
        return
    raise ModelError(f"{p}: no weights (*.safetensors) found; a model folder needs config.json and weights")


def _check_safetensors(f: Path) -> None:
    """Open a weight file's header: a truncated or corrupt file is named here, in preflight,
    instead of failing in the worker with "incomplete metadata" and no file name."""
    import json
    import struct

    try:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header length")
            n = struct.unpack("<Q", head)[0]
            if n > size - 8:
                raise ValueError(f"its header claims {n:,} bytes but the file has {size - 8:,} after the length")
            header = json.loads(fh.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise ValueError(f"its tensors need {8 + n + end:,} bytes but the file has {size:,} (cut short?)")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ModelError(f"{f}: not a complete safetensors file ({e}); copy or download it again") from None


def _missing_tokenizer_files(path: str) -> str | None:
    """Which tokenizer files a local model folder lacks, or None when it has one of them."""
    p = Path(path)
    if not p.is_dir():
        return None
    have = {f.name for f in p.iterdir()}
    if have & {"tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model"}:
        return None
    return ("it has no tokenizer files (none of tokenizer.json, tokenizer.model, vocab.txt, vocab.json + "
            "merges.txt, spiece.model); copy the tokenizer files that came with the model into the folder")


def explain_load_error(path: str, what: str, e: BaseException) -> str:
    """One line for a failed transformers load, with the fix for the refusals we cause on purpose."""
    text = str(e)
    first = text.splitlines()[0] if text else ""
    if "custom code" in text or "trust_remote_code" in text:
        return (
            f"{path}: the model ships its own Python code (auto_map in its config), which peftlab does not run "
            f"unless model.trust_remote_code: true. Set it only if you trust the source"
        )
    return f"{path}: could not load {what} ({type(e).__name__}: {first})"


def _plain_copy(gguf: Path, folder: Path) -> Path:
    """Dequantize a GGUF checkpoint once into a cached float32 safetensors folder."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_dir() / "gguf" / f"{gguf.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM

    try:
        q = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{gguf}: transformers could not read this GGUF file ({type(e).__name__}: {e})") from None
    cfg = q.config.to_dict()
    cfg.pop("quantization_config", None)
    plain_cfg = type(q.config).from_dict(cfg)
    plain = AutoModelForCausalLM.from_config(plain_cfg, dtype=torch.float32)
    plain.load_state_dict(q.state_dict(), strict=True)
    plain.tie_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
    try:
        plain.save_pretrained(tmp)
        _gguf_tokenizer(folder, gguf, plain_cfg).save_pretrained(tmp)
        for extra in ("generation_config.json", "chat_template.jinja"):
            if (folder / extra).is_file() and not (tmp / extra).exists():
                shutil.copy(folder / extra, tmp / extra)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _gguf_tokenizer(folder: Path, gguf: Path, config: Any) -> Any:
    """The tokenizer stored in a GGUF file, with its special tokens.

    transformers' versions differ here: some find the GGUF beside it only when the folder is
    given alone, others read it only with `gguf_file` but then drop the special tokens. Try
    both, and restore missing special tokens from the ids the GGUF metadata put in the config.
    """
    from transformers import AutoTokenizer

    tok, errors = None, []
    for kw in ({}, {"gguf_file": gguf.name}):
        try:
            t = AutoTokenizer.from_pretrained(str(folder), **kw)
        except (OSError, ValueError) as e:
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
            continue
        if t.eos_token is not None:
            return t
        tok = tok or t
    if tok is None:
        raise ModelError(f"{gguf}: transformers could not read the tokenizer in this GGUF file ({'; '.join(errors)})")
    for name in ("bos", "eos", "pad", "unk"):
        i = getattr(config, f"{name}_token_id", None)
        if isinstance(i, int) and getattr(tok, f"{name}_token") is None:
            setattr(tok, f"{name}_token", tok.convert_ids_to_tokens(i))
    return tok


def load_tokenizer(rm: ResolvedModel, cfg: ModelConfig, task: str) -> Any:
    if spec(task).image_input:
        return None
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(rm.path, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    except Exception as e:  # noqa: BLE001
        missing = _missing_tokenizer_files(rm.path) if rm.local else None
        if missing:
            raise ModelError(f"{rm.path}: could not load its tokenizer: {missing}") from None
        raise ModelError(explain_load_error(rm.path, "its tokenizer", e)) from None
    tok.model_max_length = 10**9  # we truncate ourselves; silences "longer than max length" noise
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def load_image_processor(rm: ResolvedModel, cfg: ModelConfig) -> Any:
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(rm.path, trust_remote_code=cfg.trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise ModelError(explain_load_error(rm.path, "its image processor (preprocessor_config.json)", e)) from None


def load_model(
    rm: ResolvedModel,
    cfg: ModelConfig,
    task: str,
    labels: list[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Load the base model for `task` in float32 (autocast handles lower precision)."""
    import torch
    import transformers

    auto = getattr(transformers, spec(task).auto_class)
    kw: dict[str, Any] = {
        "trust_remote_code": cfg.trust_remote_code,
        "revision": cfg.revision,
        "dtype": torch.float32,
        **kwargs,
    }
    if not cfg.allow_pickle:
        kw["use_safetensors"] = True
    if labels is not None:
        kw.update(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
    try:
        model = auto.from_pretrained(rm.path, **kw)
    except (OSError, ValueError, ImportError) as e:
        raise ModelError(explain_load_error(rm.path, f"it as a {task} model", e)) from None
    if "quantization_config" in kwargs:
        _guard_bnb_cpu_packing(model)
    return model


def _guard_bnb_cpu_packing(model: Any) -> None:
    """bitsandbytes repacks a 4-bit layer's weights for its fast inference kernel on CPUs with
    AVX512-BF16 (in eval mode, without gradients), and that repacking fails for layers whose
    input width is not a multiple of the quantization block (64) or whose output width is not a
    multiple of 32 ("N must be divisible by block_n", "shape '[32, 0]' is invalid", measured with
    bitsandbytes 0.50 on stories260k's 172-wide MLP and 32-wide layers). Those layers keep the
    generic kernel, which computes the same outputs."""
    for mod in model.modules():
        if hasattr(mod, "support_avx512bf16_for_cpu") and getattr(mod, "in_features", None):
            block = getattr(getattr(mod.weight, "quant_state", None), "blocksize", 64) or 64
            if mod.in_features % block or mod.out_features % 32:
                mod.support_avx512bf16_for_cpu = False


def empty_model(cfg: ExperimentConfig, rm: ResolvedModel, labels: list[str] | None) -> Any:
    """The model's architecture with no weights (meta device): free to build, even for big models."""
    import torch
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(
            rm.path, trust_remote_code=cfg.model.trust_remote_code, revision=cfg.model.revision
        )
    except Exception as e:  # noqa: BLE001 - any failure to read the config is the user's to fix
        what = "its config.json" if rm.local else "the config of this hub id (offline? use a local folder)"
        raise ModelError(explain_load_error(rm.path, what, e)) from None
    if labels is not None:
        config.num_labels = len(labels)
    auto = getattr(transformers, spec(cfg.task).auto_class)
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return auto.from_config(config, trust_remote_code=cfg.model.trust_remote_code)
    except ValueError as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"{rm.path}: a {config.model_type!r} model cannot be used for task {cfg.task!r} ({first})") from None
