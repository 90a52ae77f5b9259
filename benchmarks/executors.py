"""Wall time of one experiment with the local executor (one run after another, every core) against
`--executor ray` with N slots of one thread (runs side by side), each in a fresh store, and
whether the two give the same metrics.

    python benchmarks/executors.py examples/financial-phrasebank-minilm.yaml [--slots 2] \\
        [--set data.max_train_examples=200 --methods lora,ia3] [--local-threads 2]
    python benchmarks/executors.py --tiny [--json out.json]   # lora and ia3 on stories260k: checks it runs

Prints one JSON line: the wall seconds of each, the speed-up, and the largest metric difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _run(exp: str, overrides: dict, methods: list[str] | None, isolation: object, store_root: Path) -> tuple:
    from peftlab.store import Store
    from peftlab.train.runner import plan, run_experiment

    store = Store(store_root)
    t0 = time.perf_counter()
    runs = run_experiment(plan(exp, overrides, methods), store, isolation=isolation, echo=lambda *_: None)
    return time.perf_counter() - t0, {r.name: (r.status, r.metrics or {}) for r in runs}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", nargs="?")
    ap.add_argument("--slots", type=int, default=2, help="Ray slots (CPUs of the local instance), one thread each")
    ap.add_argument("--local-threads", type=int, default=os.cpu_count(), help="threads of each local run")
    ap.add_argument("--methods")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tiny", action="store_true",
                    help="lora and ia3 on stories260k, 2 steps, the local runs in this process (seconds plus "
                         "Ray's start): checks it runs, measures nothing")
    ap.add_argument("--json", type=Path, help="also write the JSON line's object here")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="peftlab-executors-"))
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from tiny import experiment, use_shared

        use_shared()
        args.experiment = str(tmp / "tiny.yaml")
        Path(args.experiment).write_text(yaml.safe_dump(experiment(
            "executors", [{"name": "lora"}, {"name": "ia3"}], n_train=16, max_steps=2, precision="fp32")))
    elif not args.experiment:
        ap.error("give an EXPERIMENT file (or --tiny)")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    methods = args.methods.split(",") if args.methods else None
    from peftlab.scale.ray_executor import RayExecutor

    local_s, local = _run(args.experiment, {**overrides, "training.threads": args.local_threads}, methods,
                          "inprocess" if args.tiny else "subprocess", tmp / "local")
    ex = RayExecutor(num_cpus=args.slots, echo=lambda *_: None)
    ray_s, remote = _run(args.experiment, {**overrides, "training.threads": 1}, methods, ex, tmp / "ray")
    diffs = [abs(v - remote[n][1].get(k, float("nan"))) for n, (_, m) in local.items() for k, v in m.items()
             if isinstance(v, int | float)]
    line = {"experiment": args.experiment, "runs": len(local), "local_seconds": round(local_s, 1),
            "local_threads": args.local_threads, "ray_seconds": round(ray_s, 1), "ray_slots": args.slots,
            "speedup": round(local_s / ray_s, 2), "statuses": sorted({s for s, _ in local.values()}
                                                                     | {s for s, _ in remote.values()}),
            "max_metric_diff": max(diffs) if diffs else None, "load_average": os.getloadavg()}
    print(json.dumps(line))
    if args.json:
        args.json.write_text(json.dumps(line, indent=1))
    return line


if __name__ == "__main__":
    main()
