#!/usr/bin/env bash
# One-time setup on a fresh machine: a virtualenv with the CPU build of PyTorch and peftlab,
# every package at the version of the locked set (constraints.txt; ./scripts/lock.sh makes it).
# Idempotent: re-running installs what is missing and moves any package off the lock back onto it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
quiet() { "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }  # this machine's local indexes are noisy
quiet python -m pip install -q --upgrade pip
# The CPU build of torch first (an unpinned torch would pull a multi-GB CUDA build).
quiet python -m pip install -q -c constraints.txt "torch==2.13.0"
# The gguf extra compiles llama.cpp (llama-cpp-python has no Linux wheel on PyPI): about 7 minutes on 2 cores,
# once per machine (pip keeps the built wheel in its cache). Only the library: no tools, server or examples.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
quiet python -m pip install -q -c constraints.txt -e ".[report,serve,dev,ray,gguf]"
# llama.cpp's converter, from the llama-cpp-python source of the installed version (peftlab.infer.gguf_tools).
python -c "from peftlab.infer.gguf_tools import converter_dir; converter_dir()"
# Headless Chromium for the browser tests (Debian packages; skipped where apt is unavailable).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
