"""What the answer precision costs and buys (issue 26): the same runs, trained in bf16, answering
in fp32 (`evaluation.precision: fp32`, the default since) and in bf16 (the previous policy: answers
at the training precision), measured side by side in one run.

    python benchmarks/answer_precision.py                 # stories260k, 32 test rows, 8 clients x 8 requests
    python benchmarks/answer_precision.py --tiny --json out.json   # checks it runs (the test suite)

For each policy it builds a store (experiment `load`: lora and ia3 on stories260k, trained with
`precision: bf16` forced, same seed and data, so both policies answer with the same weights) and
measures:
- evaluation throughput: test examples per second of the run's own test evaluation (the median
  over the runs of `cost.eval_seconds`, measured by the run) and of `predict` on the same rows
  (median of 3 timings);
- serving throughput: `peftlab serve` on a free port, `--clients` concurrent clients sending
  `--requests` greedy /v1/completions each (`openai_load.load`): requests/s, tokens/s, p50/p95;
- agreement: the /v1 answer of each test row sent alone against the run's test output; the
  concurrent answers against the same request sent alone; and the run loaded in plain fp32 (what
  a user who downloads the adapter gets) against the test outputs.
The JSON line names the CPU and its flags: bf16 is native only with AVX512-BF16 or AMX; elsewhere
torch emulates it, many times slower than fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_load import EXPERIMENT, free_port, load, start_server, wait_ready  # noqa: E402
from tiny import SHARED, build_store, experiment  # noqa: E402

RUNS = ["lora", "ia3"]


def test_file(root: Path, n: int) -> Path:
    """The first `n` statista test rows, tables cut to 80 characters (stories260k's 512 positions)."""
    root.mkdir(parents=True, exist_ok=True)
    out = root / "short-test.jsonl"
    with open(SHARED / "data" / "statista" / "test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(n)]
    out.write_text("".join(json.dumps({"table": r["table"][:80], "title": r["title"]}) + "\n" for r in rows),
                   encoding="utf-8")
    return out


def build(root: Path, answers: str, n_test: int, n_train: int, steps: int, new_tokens: int) -> Path:
    body = experiment(EXPERIMENT, [{"name": "lora", "learning_rate": 0.01}, {"name": "ia3", "learning_rate": 0.05}],
                      n_train=n_train, n_test=n_test, precision="bf16", max_steps=steps, max_source_length=96)
    body["data"]["test"] = str(test_file(root, n_test))
    body["evaluation"] = {"max_new_tokens": new_tokens, "batch_size": 16, "precision": answers}
    return build_store(root / "store", body)


def outputs(store: Path, run: str) -> list[dict[str, Any]]:
    from peftlab.store import Store

    with open(Store(store).find_run(EXPERIMENT, run).file("predictions"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def predict_rate(store: Path, run: str, precision: str | None, repeat: int) -> tuple[float, list[str]]:
    """Test examples per second of `predict` (median of `repeat`), and its outputs; `precision`
    forces the task's (None: the run's own answer precision)."""
    from peftlab.data.inputs import read_examples
    from peftlab.models.trained import load_trained
    from peftlab.store import Store

    r = Store(store).find_run(EXPERIMENT, run)
    t = load_trained(r)
    if precision:
        t.task.precision = precision
    ex = read_examples(t.cfg.data, t.cfg.task, str(t.cfg.data.test), need_target=False, labels=t.task.labels).examples
    times, outs = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        outs = [p.output for p in t.task.predict(t.model, ex, desc="benchmark")]
        times.append(time.perf_counter() - t0)
    return len(ex) / statistics.median(times), outs


def policy(root: Path, answers: str, args: argparse.Namespace) -> dict[str, Any]:
    from peftlab.store import Store

    store = build(root / answers, answers, args.n_test, args.n_train, args.steps, args.max_tokens)
    runs = {r.name: r for r in Store(store).runs(EXPERIMENT)}
    want = {n: outputs(store, n) for n in RUNS}
    texts = [json.loads(line)["table"] for line in
             Path(runs["lora"].config["experiment"]["data"]["test"]).read_text(encoding="utf-8").splitlines()]
    out: dict[str, Any] = {"answers_in": answers, "trained_in": runs["lora"].resolved["precision"],
                           "eval_examples_per_s": round(statistics.median(
                               len(want[n]) / runs[n].cost["eval_seconds"] for n in RUNS), 2)}
    rates, fp32_same = [], 0
    for n in RUNS:
        rate, _ = predict_rate(store, n, None, args.repeat)
        rates.append(rate)
        _, plain = predict_rate(store, n, "fp32", 1)  # the download, loaded the usual way (float32)
        fp32_same += sum(a == b["output"] for a, b in zip(plain, want[n], strict=True))
    out["predict_examples_per_s"] = round(statistics.median(rates), 2)
    total = sum(len(w) for w in want.values())
    out["fp32_load_equal"] = f"{fp32_same}/{total}"
    port = free_port()
    proc = start_server(store, port, threads=1)
    try:
        wait_ready(proc, port)
        url = f"http://127.0.0.1:{port}"
        alone: dict[tuple[str, str], str] = {}
        same = 0
        with httpx.Client(base_url=url, timeout=600) as c:
            for n in RUNS:
                for text, w in zip(texts, want[n], strict=True):
                    r = c.post("/v1/completions", json={"model": f"{EXPERIMENT}/{n}", "prompt": text,
                                                        "temperature": 0, "max_tokens": args.max_tokens})
                    alone[(n, text)] = r.json()["choices"][0]["text"]
                    same += alone[(n, text)].strip() == w["output"]
        out["v1_alone_equal_test"] = f"{same}/{total}"
        got = load(url, RUNS, texts, args.clients, args.requests, args.max_tokens, alone)
        out["serve"] = {k: got[k] for k in ("requests", "rps", "tokens_per_s", "p50_ms", "p95_ms", "errors")}
        out["v1_concurrent_equal_alone"] = f"{got['requests'] - got['errors']}/{got['requests']}"
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="4 test rows, 2 clients x 2 requests: checks it runs")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args(argv)
    args.n_test, args.n_train, args.steps = (4, 16, 2) if args.tiny else (32, 64, 20)
    args.clients, args.requests, args.repeat = (2, 2, 1) if args.tiny else (8, 8, 3)
    args.max_tokens = 16
    os.environ.setdefault("TQDM_DISABLE", "1")
    from peftlab.device import cpu_model

    cpu, flags = cpu_model()
    root = args.work or Path(tempfile.mkdtemp(prefix="answer-precision-"))
    t0 = time.time()
    report = {"benchmark": "answer_precision", "mode": "tiny" if args.tiny else "full", "cpu": cpu, "flags": flags,
              "date": time.strftime("%Y-%m-%d"), "load_avg": os.getloadavg()[0],
              "test_rows": args.n_test, "clients": args.clients, "requests_per_client": args.requests,
              "policies": {a: policy(root, a, args) for a in ("fp32", "bf16")}}
    report["seconds"] = round(time.time() - t0, 1)
    line = json.dumps(report)
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    print(line)
    return report


if __name__ == "__main__":
    main()
