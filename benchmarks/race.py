"""Racing within a budget against exhaustive tuning, on the same experiment and methods (issue 28):
the time of each, the methods each puts in rank group 1, and whether the exhaustive group-1
methods survive each race.

    python benchmarks/race.py examples/financial-phrasebank-minilm.yaml --methods all \\
        --budgets 30m,60m --tune 4 --seeds 3 --out bench-race [--only race|exhaustive|compare]
    python benchmarks/race.py --tiny [--json out.json]   # two methods on stories260k: checks it runs

Each side trains into its own store under OUT (`exhaustive/`, `race-30m/`, ...), the way
`peftlab run` does (`--tune N --seeds K`; `--budget B --tune N --seeds K`). Both resume: run the
command again to go on where a side stopped (an exhaustive run of hundreds of runs can take more
than a sitting). `--only` runs one side, or only compares the stores; `--exhaustive-store DIR`
compares with a store trained elsewhere (the peft-bench's FPB store is this exhaustive side). A side's time is the wall
time of its command when it ran in one go; resumed, the sum of its attempts (kept in OUT/times.json).

Prints one JSON object: per side its seconds, its rank-group-1 rows, its finalists (a race's) and,
for each race, which exhaustive group-1 methods it kept and why it dropped any other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def _times(out: Path) -> dict[str, float]:
    f = out / "times.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _side(exp: str, out: Path, side: str, overrides: dict, methods: list[str] | None, seeds: int,
          isolation: str) -> None:
    """Run (or resume) one side into OUT/SIDE, adding its wall seconds to OUT/times.json."""
    from peftlab.store import Store
    from peftlab.train.runner import plan, run_experiment

    t0 = time.perf_counter()
    try:
        run_experiment(plan(exp, overrides, methods, seeds=seeds), Store(out / side), isolation=isolation,
                       echo=lambda m: print(m, file=sys.stderr))
    finally:
        times = _times(out)
        times[side] = times.get(side, 0.0) + time.perf_counter() - t0
        (out / "times.json").write_text(json.dumps(times, indent=1))


def _group1(store_dir: Path, experiment: str) -> dict[str, Any]:
    from peftlab.report.leaderboard import rows
    from peftlab.store import Store

    rs = rows(Store(store_dir), experiment)
    ranked = [r for r in rs if r.get("rank") is not None]
    main = ranked[0]["main_metric"] if ranked else None
    return {"group1": sorted(r["run"] for r in ranked if r.get("rank_group") == 1),
            "ranked": [{"run": r["run"], main: r.get(main), "group": r.get("rank_group")} for r in ranked],
            "dropped": {r["run"]: r.get("dropped_text") for r in rs if r.get("status") == "dropped"}}


def _runs_seconds(store_dir: Path, experiment: str) -> float:
    """The seconds of an experiment's runs, start to end, added up: a store trained elsewhere (the
    peft-bench's, over several sittings) has no wall time of its own here. A run resumed after a
    kill keeps its first start, so its start-to-end spans the outage: it counts as its measured
    training and evaluation (which cover the whole run) plus the median of the others' overhead
    (process start, loading, validation)."""
    import statistics

    from peftlab.store import Store

    runs = [r for r in Store(store_dir).runs(experiment) if r.started_at and r.finished_at]

    def phases(r: Any) -> float:
        c = r.cost or {}
        return float(c.get("train_seconds") or 0) + float(c.get("eval_seconds") or 0)

    whole = [r for r in runs if not (r.cost or {}).get("resumed")]
    overhead = statistics.median([r.finished_at - r.started_at - phases(r) for r in whole]) if whole else 0.0
    ids = {r.id for r in whole}
    return sum(r.finished_at - r.started_at if r.id in ids else phases(r) + overhead for r in runs)


def compare(out: Path, experiment: str, budgets: list[str], exhaustive: Path | None = None) -> dict[str, Any]:
    from peftlab.tune.race_state import load_state

    times = _times(out)
    result: dict[str, Any] = {"experiment": experiment}
    ex = None
    if exhaustive is not None:
        ex = _group1(exhaustive, experiment)
        result["exhaustive"] = {"store": str(exhaustive), "runs_seconds": round(_runs_seconds(exhaustive, experiment), 1),
                                **ex}
    elif (out / "exhaustive").is_dir():
        ex = _group1(out / "exhaustive", experiment)
        result["exhaustive"] = {"seconds": round(times.get("exhaustive", 0.0), 1),
                                "runs_seconds": round(_runs_seconds(out / "exhaustive", experiment), 1), **ex}
    result["races"] = []
    for b in budgets:
        d = out / f"race-{b}"
        if not d.is_dir():
            continue
        g = _group1(d, experiment)
        state = load_state(d, experiment) or {}
        race: dict[str, Any] = {"budget": b, "budget_seconds": (state.get("plan") or {}).get("budget"),
                                "seconds": round(times.get(f"race-{b}", 0.0), 1),
                                "race_seconds": state.get("total_seconds"), "finalists": sorted(state.get("finalists")
                                                                                             or {}), **g}
        if ex is not None:
            race["exhaustive_group1_kept"] = [m for m in ex["group1"] if m in race["finalists"]]
            race["exhaustive_group1_lost"] = {m: g["dropped"].get(m, "not a finalist")
                                              for m in ex["group1"] if m not in race["finalists"]}
        result["races"].append(race)
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", nargs="?")
    ap.add_argument("--methods", help="as peftlab run's (default: the file's)")
    ap.add_argument("--budgets", default="30m,60m")
    ap.add_argument("--tune", type=int, default=4, help="exhaustive trials per method; a race's configurations")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=Path("bench-race"))
    ap.add_argument("--only", choices=["race", "exhaustive", "compare"])
    ap.add_argument("--exhaustive-store", type=Path, help="compare with this store's exhaustive runs (the "
                    "peft-bench's: benchmarks/peft-bench/stores/fpb) instead of training OUT/exhaustive")
    ap.add_argument("--tiny", action="store_true", help="zero-shot, lora and ia3 on stories260k, in this "
                    "process (a minute): checks it runs, measures nothing")
    ap.add_argument("--json", type=Path, help="also write the JSON object here")
    args = ap.parse_args(argv)
    isolation = "subprocess"  # as `peftlab run` runs (a race runs its runs in its own process)
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from tiny import experiment, use_shared

        use_shared()
        args.out = Path(args.out if args.json is None else args.json.parent / "bench-race")
        args.out.mkdir(parents=True, exist_ok=True)
        body = experiment("race", [{"name": n} for n in ("zero-shot", "lora", "ia3")], n_train=32,
                          max_steps=12, precision="fp32")
        body["data"]["max_validation_examples"] = 12
        args.experiment = str(args.out / "race.yaml")
        Path(args.experiment).write_text(yaml.safe_dump(body))
        args.budgets, args.tune, args.seeds, isolation = "10m", 2, 2, "inprocess"
    elif not args.experiment:
        ap.error("give an EXPERIMENT file (or --tiny)")
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    methods = args.methods.split(",") if args.methods else None
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    if args.only in (None, "exhaustive") and args.exhaustive_store is None:
        _side(args.experiment, args.out, "exhaustive", {**overrides, "tuning.trials": args.tune}, methods,
              args.seeds, isolation)
    if args.only in (None, "race"):
        for b in budgets:
            _side(args.experiment, args.out, f"race-{b}", {**overrides, "tuning.trials": args.tune,
                                                           "tuning.budget": b}, methods, args.seeds, isolation)
    from peftlab.config import load_experiment

    name = load_experiment(args.experiment).cfg.name
    result = {**compare(args.out, name, budgets, args.exhaustive_store), "mode": "tiny" if args.tiny else "full"}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
