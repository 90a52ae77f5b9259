"""A small, bounded load test of `peftlab serve`: N concurrent clients on the playground and
the list endpoints, against 127.0.0.1 only. Reports requests, errors, median and p95 latency.

    python benchmarks/load_playground.py                       # builds a tiny experiment, starts a server
    python benchmarks/load_playground.py --store S --experiment E  # an existing store (server started here)
    python benchmarks/load_playground.py --url http://127.0.0.1:8000 --experiment E [--token T]
    python benchmarks/load_playground.py --tiny --json out.json   # 2 clients x 2 requests: checks it runs

Without --store/--url it trains zero-shot, lora and ia3 on stories260k in this process (a
few seconds; needs ../shared), starts `peftlab serve --no-worker` on a free port, runs the
clients, stops the server. Each client sends --requests requests, alternating a playground
generation (a random subset of the runs, --max-new-tokens) with a list endpoint. The
playground serialises generations on its one model copy, so its latency grows with the
number of clients: that queueing is what this measures.
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
from urllib.parse import urlparse

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny import build_store as build_tiny  # noqa: E402
from tiny import experiment  # noqa: E402

INPUTS = ["0 Year: 2019, Revenue in million euros: 42", "0 Country: France, Share of respondents: 31%",
          "0 Year: 2020, Number of visitors in millions: 3.4 1 Year: 2019, Number of visitors in millions: 5.1",
          "0 Brand: Acme, Sales in units: 1200 1 Brand: Globex, Sales in units: 900"]
LIST_PATHS = ["/api/runs", "/api/experiments", "/api/runs?experiment={e}", "/api/experiments/{e}/leaderboard",
              "/api/datasets", "/api/playground/{e}/runs"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_store(root: Path) -> tuple[Path, str]:
    """A store with experiment `load`: zero-shot, lora and ia3 on stories260k, trained here."""
    body = experiment("load", [{"name": "zero-shot"}, {"name": "lora", "options": {"r": 4}}, {"name": "ia3"}])
    return build_tiny(root / "store", body), "load"


def start_server(store: Path, port: int, token: str | None) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    args = [sys.executable, "-m", "peftlab.cli", "--store", str(store), "serve", "--host", "127.0.0.1",
            "--port", str(port), "--no-worker"]
    if token:
        args += ["--token", token]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start in 90 s")


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(q * (len(xs) - 1))))
    return xs[k]


def run_load(url: str, experiment: str, clients: int, requests: int, max_new_tokens: int, token: str | None,
             timeout: float, seed: int = 0) -> dict[str, Any]:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host}: this script only targets 127.0.0.1")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as c:
        runs = [r["name"] for r in c.get(f"/api/playground/{experiment}/runs").json()["runs"] if r["available"]]
        c.post("/api/playground", json={"experiment": experiment, "text": INPUTS[0], "runs": runs,
                                        "max_new_tokens": max_new_tokens})  # warm-up: load the base model once
    if not runs:
        raise SystemExit(f"experiment {experiment!r} has no finished runs to try")
    results: list[tuple[str, float, bool, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        rng = random.Random(seed + i)
        with httpx.Client(base_url=url, headers=headers, timeout=timeout) as c:
            start.wait()
            for k in range(requests):
                if k % 2 == 0:
                    kind = "playground"
                    chosen = rng.sample(runs, rng.randint(1, len(runs)))
                    body = {"experiment": experiment, "text": rng.choice(INPUTS), "runs": chosen,
                            "max_new_tokens": max_new_tokens}
                    t0 = time.perf_counter()
                    try:
                        r = c.post("/api/playground", json=body)
                        ok, why = r.status_code == 200 and len(r.json()["outputs"]) == len(chosen), str(r.status_code)
                    except httpx.HTTPError as e:
                        ok, why = False, type(e).__name__
                else:
                    path = rng.choice(LIST_PATHS).format(e=experiment)
                    kind = "list " + path.split("?")[0].replace(experiment, "{e}")
                    t0 = time.perf_counter()
                    try:
                        r = c.get(path)
                        ok, why = r.status_code == 200, str(r.status_code)
                    except httpx.HTTPError as e:
                        ok, why = False, type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    results.append((kind, dt, ok, why))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0

    def summary(rows: list[tuple[str, float, bool, str]]) -> dict[str, Any]:
        lat = [r[1] for r in rows]
        errs = [r[3] for r in rows if not r[2]]
        return {"requests": len(rows), "errors": len(errs), "error_kinds": sorted(set(errs)),
                "median_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                "p95_ms": round(1000 * percentile(lat, 0.95), 1) if lat else None,
                "max_ms": round(1000 * max(lat), 1) if lat else None}

    kinds = sorted({r[0] for r in results})
    return {"url": url, "experiment": experiment, "clients": clients, "requests_per_client": requests,
            "max_new_tokens": max_new_tokens, "wall_seconds": round(wall, 2),
            "throughput_rps": round(len(results) / wall, 2) if wall else None,
            "overall": summary(results),
            "playground": summary([r for r in results if r[0] == "playground"]),
            "lists": summary([r for r in results if r[0] != "playground"]),
            "by_endpoint": {k: summary([r for r in results if r[0] == k]) for k in kinds}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running service on 127.0.0.1 (default: start one here)")
    ap.add_argument("--store", type=Path, help="an existing store to serve (default: build a tiny one)")
    ap.add_argument("--experiment", help="experiment whose runs the playground uses")
    ap.add_argument("--token", default=os.environ.get("PEFTLAB_TOKEN"))
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=10, help="requests per client (bounded; default 10)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--tiny", action="store_true",
                    help="2 clients x 2 requests, 2 new tokens: checks the benchmark runs (the test suite)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.clients, args.requests, args.max_new_tokens = 2, 2, 2
    if args.clients < 1 or args.requests < 1 or args.clients * args.requests > 10_000:
        raise SystemExit("keep it bounded: 1..10000 requests in all")
    proc = None
    tmp = None
    try:
        if args.url:
            url, experiment = args.url.rstrip("/"), args.experiment
            if not experiment:
                raise SystemExit("--experiment is required with --url")
        else:
            if args.store:
                store, experiment = args.store, args.experiment
                if not experiment:
                    raise SystemExit("--experiment is required with --store")
            else:
                tmp = tempfile.TemporaryDirectory(prefix="peftlab-load-")
                print("building a tiny experiment (zero-shot, lora, ia3 on stories260k)...", file=sys.stderr)
                store, experiment = build_store(Path(tmp.name))
            port = _free_port()
            proc = start_server(store, port, args.token)
            url = f"http://127.0.0.1:{port}"
        print(f"{args.clients} clients x {args.requests} requests against {url} ...", file=sys.stderr)
        report = run_load(url, experiment, args.clients, args.requests, args.max_new_tokens, args.token,
                          args.timeout)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if tmp is not None:
            tmp.cleanup()
    o, p, li = report["overall"], report["playground"], report["lists"]
    print(f"requests {o['requests']}  errors {o['errors']}  median {o['median_ms']} ms  p95 {o['p95_ms']} ms  "
          f"({report['throughput_rps']} req/s over {report['wall_seconds']} s)")
    print(f"  playground: {p['requests']} requests, {p['errors']} errors, median {p['median_ms']} ms, "
          f"p95 {p['p95_ms']} ms")
    print(f"  lists:      {li['requests']} requests, {li['errors']} errors, median {li['median_ms']} ms, "
          f"p95 {li['p95_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
