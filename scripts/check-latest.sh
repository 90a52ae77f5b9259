#!/usr/bin/env bash
# Check peftlab against the newest releases its ranges allow (not part of CI's pass/fail).
#
#   ./scripts/check-latest.sh              newest versions pyproject.toml allows, no lock
#   ./scripts/check-latest.sh --unbounded  also lift the upper bounds (transformers, peft): the newest
#                                          releases, to see whether a bound can be raised
#
# A throwaway venv (no pip cache) gets those versions; then the method x task matrix, the
# generation checks and the warnings test run in it. It prints the versions, the failing tests
# and a summary. Run it before raising any bound, and record the date and versions in README.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
UNBOUNDED=0
[ "${1:-}" = "--unbounded" ] && UNBOUNDED=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1
export PEFTLAB_TEST_CACHE="$tmp/cache"
"$PY" -m venv "$tmp/venv"
pip() { "$tmp/venv/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
pip install -q "torch==2.13.0" || exit 1
pip install -q ".[report,serve,dev,ray,gguf]" || exit 1
if [ "$UNBOUNDED" = 1 ]; then
  # The newest releases, past pyproject.toml's upper bounds (pip notes the conflict; that is the point).
  pip install -q --upgrade transformers peft 2>&1 | grep -v "^ERROR: pip's dependency resolver" || true
fi
echo "== versions ($( [ "$UNBOUNDED" = 1 ] && echo "newest releases, upper bounds lifted" || echo "newest allowed by pyproject.toml"), $(date -u +%Y-%m-%d))"
"$tmp/venv/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "tokenizers", "safetensors"):
    try:
        print(f"  {p} {md.version(p)}")
    except md.PackageNotFoundError:
        pass
PY
echo "== method x task matrix, generation and warnings checks"
"$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider -rfExX --no-header \
  tests/test_matrix.py tests/test_generation.py tests/test_warnings.py 2>&1 \
  | grep -E "^(FAILED|ERROR|XPASS|XFAIL)|passed|failed|error" | grep -v "^E "
code=${PIPESTATUS[0]}
echo "== $( [ "$code" = 0 ] && echo "no breakage beyond the known cases (xfail above)" || echo "BROKEN: see FAILED/ERROR above (exit $code)")"
exit "$code"
