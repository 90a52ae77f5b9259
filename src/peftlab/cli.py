"""The `peftlab` command line.

    peftlab run EXP.yaml [--methods lora,ia3] [--max-steps N] [--max-train-examples N] ...
    peftlab leaderboard EXPERIMENT [--format table|json|csv]
    peftlab experiments
    peftlab show EXPERIMENT RUN
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from peftlab.errors import PeftlabError


def _store(args: argparse.Namespace) -> Any:
    from peftlab.store import Store

    return Store(args.store)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    mapping = {
        "max_steps": "training.max_steps",
        "epochs": "training.epochs",
        "batch_size": "training.batch_size",
        "learning_rate": "training.learning_rate",
        "seed": "training.seed",
        "precision": "training.precision",
        "max_train_examples": "data.max_train_examples",
        "max_eval_examples": "data.max_test_examples",
        "max_validation_examples": "data.max_validation_examples",
    }
    for attr, key in mapping.items():
        v = getattr(args, attr, None)
        if v is not None:
            o[key] = v
    for item in args.set or []:
        if "=" not in item:
            raise PeftlabError(f"--set {item!r}: use KEY=VALUE, e.g. --set training.batch_size=4")
        k, v = item.split("=", 1)
        import yaml

        o[k] = yaml.safe_load(v)
    return o


def cmd_run(args: argparse.Namespace) -> int:
    from peftlab.report.leaderboard import render, rows
    from peftlab.train.runner import plan, run_experiment

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    p = plan(args.experiment, _overrides(args), methods)
    store = _store(args)
    run_experiment(p, store, force=args.force, isolation="inprocess" if args.in_process else "subprocess")
    print()
    print(render(rows(store, p.cfg.name)))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from peftlab.report.leaderboard import render, rows

    try:
        rs = rows(_store(args), args.experiment)
    except KeyError as e:
        raise PeftlabError(e.args[0]) from None
    print(render(rs, args.format))
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    exps = _store(args).experiments()
    print(tabulate([[e["name"], e["task"], e["model"], e["runs"], e["done"] or 0] for e in exps],
                   headers=["experiment", "task", "model", "runs", "done"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    run = store.find_run(args.experiment, args.run)
    if run is None:
        raise PeftlabError(f"no run {args.run!r} in experiment {args.experiment!r}")
    d = {k: getattr(run, k) for k in ("id", "experiment", "name", "method", "status", "error", "diverged_step",
                                      "metrics", "cost", "info", "resolved")}
    d["curves"] = store.curves(run.id)
    print(json.dumps(d, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="peftlab", description="Compare PEFT methods on your data, side by side.")
    ap.add_argument("--store", default=os.environ.get("PEFTLAB_STORE", "peftlab-store"),
                    help="store folder (default ./peftlab-store or $PEFTLAB_STORE)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="train and evaluate every method of an experiment file")
    r.add_argument("experiment", help="experiment YAML file")
    r.add_argument("--methods", help="comma-separated run or method names (default: all listed)")
    r.add_argument("--max-steps", type=int)
    r.add_argument("--epochs", type=float)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--learning-rate", type=float)
    r.add_argument("--seed", type=int)
    r.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    r.add_argument("--max-train-examples", type=int)
    r.add_argument("--max-eval-examples", type=int, help="limit on test examples")
    r.add_argument("--max-validation-examples", type=int)
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any key, e.g. training.seed=1")
    r.add_argument("--force", action="store_true", help="redo runs that are already done")
    r.add_argument("--in-process", action="store_true", help="run methods in this process (debugging)")
    r.set_defaults(fn=cmd_run)

    lb = sub.add_parser("leaderboard", help="ranked table of an experiment's runs")
    lb.add_argument("experiment")
    lb.add_argument("--format", choices=["table", "json", "csv"], default="table")
    lb.set_defaults(fn=cmd_leaderboard)

    ex = sub.add_parser("experiments", help="list experiments in the store")
    ex.set_defaults(fn=cmd_experiments)

    sh = sub.add_parser("show", help="everything recorded about one run (JSON)")
    sh.add_argument("experiment")
    sh.add_argument("run")
    sh.set_defaults(fn=cmd_show)
    return ap


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except PeftlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
