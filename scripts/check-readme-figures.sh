#!/usr/bin/env bash
# Re-run the quick versions of the commands behind README's measured figures and compare each
# figure with README's, within the noise README states (scripts/readme_figures.py).
#
#   scripts/check-readme-figures.sh                   # speed --quick (fp32 and bf16) + the OpenAI load test
#   PRECISION=fp32 scripts/check-readme-figures.sh    # speed in fp32 only
#   OUT=DIR scripts/check-readme-figures.sh           # keep the runs' JSON and logs in DIR
#   scripts/check-readme-figures.sh --tiny            # the tiny modes only: checks the pipeline in seconds,
#                                                     # compares nothing (tiny figures measure nothing)
#
# Quick runs take minutes on 2 cores (speed: under 3 min per precision idle; far longer beside
# other jobs: their JSON records the load average, and a figure measured under load is not
# comparable). The full benchmark (`python benchmarks/speed.py`, about 30 min) and the examples'
# tables are not re-run here. Exit status: 1 if a re-measured figure is outside its noise.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ -n "${OUT:-}" ]]; then  # OUT=DIR keeps the JSON and logs (to update README from them)
    out=$OUT; mkdir -p "$out"
else
    out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
fi

if [[ "${1:-}" == "--tiny" ]]; then
    for s in speed eval_levers executors openai_load load_playground answer_precision race peft-bench/run; do
        echo "== benchmarks/$s.py --tiny" >&2
        "$PY" "benchmarks/$s.py" --tiny --json "$out/${s//\//-}.json" > "$out/${s//\//-}.log" 2>&1 || { tail -20 "$out/${s//\//-}.log"; exit 1; }
    done
    echo "every benchmark's tiny mode ran (figures not compared: tiny measures nothing)"
    exit 0
fi

echo "== benchmarks/speed.py --quick --precision ${PRECISION:-fp32,bf16}" >&2
"$PY" benchmarks/speed.py --quick --precision "${PRECISION:-fp32,bf16}" --json "$out/speed.json" > "$out/speed.log" 2>&1 \
    || { tail -30 "$out/speed.log"; exit 1; }
echo "== benchmarks/openai_load.py (20 clients x 5 requests, 16 tokens)" >&2
"$PY" benchmarks/openai_load.py --clients 20 --requests 5 --max-tokens 16 --json "$out/openai.json" > "$out/openai.log" 2>&1 \
    || { tail -30 "$out/openai.log"; exit 1; }
"$PY" - "$out/speed.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"machine: {r['cpu']}, flags {' '.join(r['cpu_flags']) or '-'}, {r['cpus']} CPUs, "
      f"load average {r['load_average'][0]} -> {r['load_average'][1]}, {r['date']}")
EOF
"$PY" scripts/readme_figures.py README.md "$out"
