"""llama.cpp's own tools, as GGUF export uses them: its converter, its quantizer, its runtime.

- The runtime and the quantizer are llama-cpp-python's bindings of the llama.cpp library (the
  `gguf` extra: `pip install 'peftlab[gguf]'`, which compiles llama.cpp).
- The converter (`convert_hf_to_gguf.py`, with its `conversion` package and its `gguf-py`) is in
  no wheel: it is part of llama.cpp's source tree, which the llama-cpp-python source distribution
  on PyPI carries under `vendor/llama.cpp`. The first export fetches that distribution, of exactly
  the installed version (so the converter and the library that checks its output are one
  llama.cpp), and unpacks the converter's files into a cache folder
  (`$PEFTLAB_LLAMA_CPP_DIR`, default `~/.cache/peftlab/llama.cpp-VERSION`). Nothing is rewritten
  here: the converter runs as llama.cpp ships it, in a subprocess with its own `gguf-py`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError

# Types the export writes: llama.cpp's file types by their usual names (llama-quantize's).
QUANTS = {
    "f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
    "q6_k": "MOSTLY_Q6_K", "q5_k_m": "MOSTLY_Q5_K_M", "q5_k_s": "MOSTLY_Q5_K_S", "q5_0": "MOSTLY_Q5_0",
    "q4_k_m": "MOSTLY_Q4_K_M", "q4_k_s": "MOSTLY_Q4_K_S", "q4_0": "MOSTLY_Q4_0", "q3_k_m": "MOSTLY_Q3_K_M",
    "q2_k": "MOSTLY_Q2_K",
}
FLOAT_TYPES = ("f32", "f16", "bf16")  # only rounding: the check asks for the adapter's exact outputs
_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE", "conversion/", "gguf-py/")


def llama_cpp() -> Any:
    """The llama-cpp-python module, or an error that says how to install it."""
    try:
        import llama_cpp as lc
    except ImportError:
        raise PeftlabError("GGUF export needs llama.cpp's Python bindings: pip install 'peftlab[gguf]' (it compiles "
                           "llama.cpp: about 7 minutes on 2 cores; ./scripts/setup.sh installs it)") from None
    return lc


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def quant_list(text: str) -> list[str]:
    """`--quant f16,q8_0` as a checked list of llama.cpp type names (lower case)."""
    quants = [q.strip().lower() for q in text.split(",") if q.strip()]
    bad = [q for q in quants if q not in QUANTS]
    if bad or not quants:
        raise PeftlabError(f"--quant {text!r}: {', '.join(bad) or 'none given'} is not a type this export writes; "
                           f"choose among {', '.join(QUANTS)} (comma-separated)")
    return list(dict.fromkeys(quants))


def converter_dir() -> Path:
    """The folder holding llama.cpp's converter for the installed llama.cpp, fetched on first use."""
    version = llama_cpp().__version__
    root = os.environ.get("PEFTLAB_LLAMA_CPP_DIR")
    d = Path(root) if root else Path.home() / ".cache" / "peftlab" / f"llama.cpp-{version}"
    if (d / "convert_hf_to_gguf.py").is_file():
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d.parent, prefix=".fetch-") as tmp:
        got = subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                              "--no-binary", ":all:", "-d", tmp],
                             capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            raise PeftlabError(f"could not fetch llama.cpp's converter (the llama-cpp-python {version} source from "
                               f"PyPI): {(got.stderr or got.stdout).strip()[-400:]}. Set PEFTLAB_LLAMA_CPP_DIR to a "
                               "llama.cpp checkout of the same version instead")
        unpacked = Path(tmp) / "llama.cpp"
        with tarfile.open(sdists[0]) as tar:
            for m in tar.getmembers():
                parts = m.name.split("/", 3)  # llama_cpp_python-V/vendor/llama.cpp/<rest>
                if len(parts) == 4 and parts[1:3] == ["vendor", "llama.cpp"] and m.isfile() and \
                        any(parts[3] == f or (f.endswith("/") and parts[3].startswith(f)) for f in _FILES):
                    m.name = parts[3]
                    tar.extract(m, unpacked, filter="data")
        if not (unpacked / "convert_hf_to_gguf.py").is_file():
            raise PeftlabError(f"{sdists[0].name}: has no vendor/llama.cpp/convert_hf_to_gguf.py")
        if not (d / "convert_hf_to_gguf.py").is_file():  # another process may have finished first
            shutil.rmtree(d, ignore_errors=True)
            unpacked.replace(d)
    return d


def _converter(args: list[str], what: str) -> str:
    script = converter_dir() / "convert_hf_to_gguf.py"
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # the converter uses its own gguf-py, not the installed gguf package
    p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-6:])
        raise PeftlabError(f"llama.cpp's converter failed on {what}:\n{tail}")
    return p.stdout + p.stderr


@cache
def supported_architectures() -> frozenset[str]:
    """The Hugging Face architectures (`config.json`'s `architectures`) llama.cpp's converter knows."""
    out = _converter(["--print-supported-models"], "its list of models")
    return frozenset(line.strip()[2:] for line in out.splitlines() if line.strip().startswith("- "))


def convert(model_dir: Path, out_file: Path) -> Path:
    """The Hugging Face model folder as a float32 GGUF (the quantizer makes every other type from it)."""
    _converter([str(model_dir), "--outfile", str(out_file), "--outtype", "f32"], str(model_dir))
    return out_file


def quantize(src: Path, dst: Path, quant: str, threads: int = 0) -> Path:
    """llama.cpp's quantizer (llama-quantize's function): `src` (f32) to `dst` of type `quant`."""
    lc = llama_cpp()
    if quant == "f32":
        shutil.copyfile(src, dst)
        return dst
    params = lc.llama_model_quantize_default_params()
    params.ftype = getattr(lc, f"LLAMA_FTYPE_{QUANTS[quant]}")
    params.nthread = threads
    log: list[str] = []
    with _captured(log):
        rc = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.is_file():
        tail = "\n".join("".join(log).strip().splitlines()[-4:])
        raise PeftlabError(f"llama.cpp's quantizer failed to write {quant} (code {rc}):\n{tail}")
    return dst


@contextlib.contextmanager
def _captured(log: list[str]) -> Iterator[None]:
    """The C library's stdout and stderr (llama.cpp prints a line per tensor) into `log`, for errors."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.NamedTemporaryFile(prefix="peftlab-llama-", suffix=".log", delete=False) as f:
        path = Path(f.name)
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    log.append(path.read_text(errors="replace"))
    path.unlink(missing_ok=True)
