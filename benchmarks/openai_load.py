"""A bounded load test of the OpenAI-compatible endpoint: N concurrent clients on
/v1/completions, 127.0.0.1 only, with batching on and off (`--no-batching`) in the same run.

    python benchmarks/openai_load.py                    # builds a tiny experiment, starts its servers
    python benchmarks/openai_load.py --clients 20 --requests 5 --max-tokens 16 --json out.json
    python benchmarks/openai_load.py --tiny --json out.json   # 2 clients x 1 request: checks it runs (test suite)
    python benchmarks/openai_load.py --model smollm2 --clients 1,8,32,64 --requests 1 --json out.json

It trains the runs in this process (needs ../shared), then starts `peftlab serve --no-worker`
twice on free ports, once as is and once with `--no-batching`, and sends each scenario's requests
to both, at each client count of `--clients` in turn. `--model stories260k` (default: seconds)
trains zero-shot, two LoRA adapters and IA3; its scenarios:
- one adapter: every request for `load/lora`;
- mixed LoRA: `load/lora`, `load/lora-b` and `load/zero-shot` at random (one mixed batch in peft);
- mixed types: the same plus `load/ia3` (IA3 cannot mix: batched on its own).
`--model smollm2` (SmolLM2-135M-Instruct, the GGUF in ../shared/models; 2-3 minutes on 2 cores) trains
zero-shot, LoRA and IA3 for 4 steps on 32 statista rows (just so they exist and differ); its one
scenario, mixed types, picks one of the three at random per request.
Requests are greedy (temperature 0), so every answer must equal the one the unbatched server
gives for the same run and prompt: a different answer counts as an error, like a non-200 (a 429,
the queue full at `--max-queued` 64, is counted apart as well). Reports requests/s, completion
tokens/s (the answers' `usage`), p50/p95/p99 latency and errors per client count, scenario and
server, the batching's gain, the machine (CPU model and flags), the date and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny import SHARED, experiment  # noqa: E402
from tiny import build_store as build_tiny  # noqa: E402

EXPERIMENT = "load"
MODELS: dict[str, dict[str, Any]] = {
    "stories260k": {"scenarios": {"one adapter": ["lora"], "mixed LoRA": ["lora", "lora-b", "zero-shot"],
                                  "mixed types": ["lora", "lora-b", "zero-shot", "ia3"]},
                    "prompt_chars": 80},  # stories260k has 512 positions
    "smollm2": {"scenarios": {"mixed types": ["lora", "ia3", "zero-shot"]}, "prompt_chars": 160},
}
SCENARIOS = MODELS["stories260k"]["scenarios"]


def build_store(root: Path, model: str = "stories260k") -> Path:
    """Experiment `load`, trained here with short test tables. stories260k: zero-shot, lora,
    lora-b and ia3; smollm2: zero-shot, lora and ia3 on SmolLM2-135M-Instruct (GGUF), 4 steps."""
    if model == "smollm2":
        body = experiment(EXPERIMENT, [{"name": "zero-shot"}, {"name": "lora"}, {"name": "ia3"}], precision="fp32",
                          max_source_length=64)
        body["model"] = "smollm2-135m-instruct-gguf"  # as examples/samsum-smollm2.yaml names it
        return build_tiny(root / "store", body)
    return build_tiny(root / "store", experiment(EXPERIMENT, [
        {"name": "zero-shot"}, {"name": "lora", "options": {"r": 4}},
        {"name": "lora", "label": "lora-b", "options": {"r": 8}}, {"name": "ia3"}], precision="fp32"))


def prompts(n: int = 8, chars: int = 80) -> list[str]:
    """The first statista test tables, cut to `chars` (80 fits stories260k's 512 positions)."""
    with open(SHARED / "data" / "statista" / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(next(f))["table"][:chars] for _ in range(n)]


def client_counts(text: str) -> list[int]:
    """`--clients 1,8,32,64` -> [1, 8, 32, 64]."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of client counts: {text!r}") from None
    if not counts:
        raise argparse.ArgumentTypeError("no client count")
    return counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, port: int, *extra: str, threads: int = 1) -> subprocess.Popen:
    """Start `peftlab serve` on `port` (not waiting for it: `wait_ready`)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    extra = (*extra, "--threads", str(threads)) if threads else extra  # 0: torch's default
    return subprocess.Popen([sys.executable, "-m", "peftlab.cli", "--store", str(store), "serve", "--host",
                             "127.0.0.1", "--port", str(port), "--no-worker", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the server on port {port} did not start in {timeout:.0f} s (exit code {proc.poll()})")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, round(q * (len(xs) - 1))))] if xs else float("nan")


def ask(c: httpx.Client, run: str, prompt: str, max_tokens: int) -> tuple[str | None, str, int]:
    """The answer's text (None on an error), "ok" or what went wrong, and its completion tokens."""
    try:
        r = c.post("/v1/completions", json={"model": f"{EXPERIMENT}/{run}", "prompt": prompt, "temperature": 0,
                                            "max_tokens": max_tokens})
    except httpx.HTTPError as e:
        return None, type(e).__name__, 0
    if r.status_code != 200:
        return None, str(r.status_code), 0
    body = r.json()
    return body["choices"][0]["text"], "ok", int(body.get("usage", {}).get("completion_tokens", 0))


def load(url: str, runs: list[str], texts: list[str], clients: int, requests: int, max_tokens: int,
         reference: dict[tuple[str, str], str], seed: int = 0) -> dict[str, Any]:
    """`clients` threads, `requests` each; latency of each, and whether it answered what `reference` holds."""
    results: list[tuple[float, str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        rng = random.Random(seed + i)
        with httpx.Client(base_url=url, timeout=600) as c:
            start.wait()
            for _ in range(requests):
                run, prompt = rng.choice(runs), rng.choice(texts)
                t0 = time.perf_counter()
                text, why, tokens = ask(c, run, prompt, max_tokens)
                dt = time.perf_counter() - t0
                if text is not None and text != reference[(run, prompt)]:
                    why = "wrong answer"
                with lock:
                    results.append((dt, why, tokens))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = [r[0] for r in results]
    errs = [r[1] for r in results if r[1] != "ok"]
    tokens = sum(r[2] for r in results)
    with httpx.Client(base_url=url, timeout=30) as c:
        batches = c.get("/api/health").json()["inference"]["last_batches"]
    return {"requests": len(results), "errors": len(errs), "error_kinds": sorted(set(errs)),
            "error_counts": {k: errs.count(k) for k in sorted(set(errs))}, "refused_429": errs.count("429"),
            "wall_s": round(wall, 2), "rps": round(len(results) / wall, 2),
            "completion_tokens": tokens, "tokens_per_s": round(tokens / wall, 2),
            "p50_ms": round(1000 * statistics.median(lat), 1), "p95_ms": round(1000 * percentile(lat, 0.95), 1),
            "p99_ms": round(1000 * percentile(lat, 0.99), 1), "last_batch_rows": [b[0] for b in batches]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=client_counts, default=[20],
                    help="concurrent clients, or a comma-separated list run in turn (1,8,32,64; default 20)")
    ap.add_argument("--requests", type=int, default=5, help="requests per client, scenario and count (default 5)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--model", choices=sorted(MODELS), default="stories260k",
                    help="the base of the experiment built (default stories260k; smollm2: SmolLM2-135M-Instruct)")
    ap.add_argument("--store", type=Path, help="a store holding experiment `load` for --model (default: build one)")
    ap.add_argument("--threads", type=int, default=1,
                    help="each server's `peftlab serve --threads` (0: torch's default; default 1: on a small shared "
                         "CPU, more threads than free cores make every matmul wait; measured 30x slower with 2 "
                         "threads at load 10 on 2 cores)")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--tiny", action="store_true",
                    help="2 clients x 1 request, 2 tokens, 2 prompts: checks the benchmark runs (the test suite)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.clients, args.requests, args.max_tokens = [2], 1, 2
    if not (all(1 <= n <= 200 for n in args.clients) and len(args.clients) <= 8 and args.requests >= 1
            and sum(args.clients) * args.requests <= 5000):
        raise SystemExit("keep it bounded: 1..200 clients, at most 8 counts and 5000 requests a scenario in all")
    scenarios: dict[str, list[str]] = MODELS[args.model]["scenarios"]
    every_run = sorted({r for runs in scenarios.values() for r in runs})
    from peftlab.device import cpu_model

    cpu, flags = cpu_model()
    load_start, t_start = os.getloadavg(), time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="peftlab-openai-load-")
    procs: list[subprocess.Popen] = []
    try:
        if args.store:
            store = args.store
        else:
            print(f"building experiment {EXPERIMENT} ({', '.join(every_run)} on {args.model})...", file=sys.stderr)
            store = build_store(Path(tmp.name), args.model)
        build_s = time.perf_counter() - t_start
        ports = {"batched": free_port(), "one at a time": free_port()}
        procs = [start_server(store, ports["batched"], threads=args.threads),  # both start side by side
                 start_server(store, ports["one at a time"], "--no-batching", threads=args.threads)]
        for proc, port in zip(procs, ports.values(), strict=True):
            wait_ready(proc, port)
        urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        texts = prompts(2 if args.tiny else 8, MODELS[args.model]["prompt_chars"])
        reference: dict[tuple[str, str], str] = {}
        with httpx.Client(base_url=urls["one at a time"], timeout=300) as c:  # also loads the models
            for run in every_run:
                for t in texts:
                    text, why, _ = ask(c, run, t, args.max_tokens)
                    if text is None:
                        raise SystemExit(f"the reference request for {run} failed: {why}")
                    reference[(run, t)] = text
        with httpx.Client(base_url=urls["batched"], timeout=300) as c:
            for run in every_run:
                ask(c, run, texts[0], 2)  # warm-up: load the base and every adapter
        report: dict[str, Any] = {"model": args.model, "clients": args.clients[0] if len(args.clients) == 1
                                  else args.clients, "requests_per_client": args.requests,
                                  "max_tokens": args.max_tokens, "threads": args.threads, "max_queued": 64,
                                  "cpus": os.cpu_count(), "cpu": cpu, "cpu_flags": flags,
                                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                  "build_s": round(build_s, 1), "distinct_answers": len(set(reference.values())),
                                  "by_clients": {}}
        for n in args.clients:
            rows: dict[str, Any] = {}
            for name, runs in scenarios.items():
                row = {}
                for mode, url in urls.items():
                    print(f"{name}, {mode}: {n} clients x {args.requests} requests ...", file=sys.stderr)
                    row[mode] = load(url, runs, texts, n, args.requests, args.max_tokens, reference)
                row["gain"] = round(row["batched"]["rps"] / row["one at a time"]["rps"], 2)
                rows[name] = row
            report["by_clients"][str(n)] = rows
        if len(args.clients) == 1:
            report["scenarios"] = report["by_clients"][str(args.clients[0])]  # the one-count report, as before
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        tmp.cleanup()
    report["load_average"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]  # 1-minute, start and end
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(f"\n{args.model}, {args.requests} request(s) per client and scenario, max_tokens {args.max_tokens}, greedy, "
          f"{args.threads} torch thread(s) per server; {cpu} ({' '.join(flags) or '-'}), {os.cpu_count()} CPU(s), "
          f"load average {report['load_average'][0]} -> {report['load_average'][1]}, {report['date']}")
    print(f"{'clients':>7} {'scenario':<13} {'server':<14} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'tok/s':>7} "
          f"{'req/s':>7} {'errors':>7}  gain")
    for n, rows in report["by_clients"].items():
        for name, row in rows.items():
            for mode in ("batched", "one at a time"):
                m = row[mode]
                gain = f"x{row['gain']}" if mode == "batched" else ""
                errs = f"{m['errors']}" + (f" {m['error_counts']}" if m["errors"] else "")
                print(f"{n:>7} {name:<13} {mode:<14} {m['p50_ms']:>8} {m['p95_ms']:>8} {m['p99_ms']:>8} "
                      f"{m['tokens_per_s']:>7} {m['rps']:>7} {errs:>7}  {gain}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
