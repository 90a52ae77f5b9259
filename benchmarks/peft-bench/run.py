"""peftlab's benchmark: every PEFT method that applies to a task, tuned on the same budget on the
validation split, its best configuration retrained over 3 seeds and tested once, with 95%
intervals, rank groups, costs and forgetting (issue 32). Results are committed per task in
`results/TASK.json`; `README.md` is written from them.

    python benchmarks/peft-bench/run.py --task fpb [--stores DIR]   # trains what is missing; resumable
    python benchmarks/peft-bench/run.py --readme                     # README.md and charts from results/
    python benchmarks/peft-bench/run.py --tiny --json out.json       # three methods on stories260k

A task trains method by method into its own store (`--stores`, default `benchmarks/peft-bench/
stores/`, not committed), exactly as `peftlab run EXP --methods M --tune 4 --seeds 3` trains it
(the same runs as `--methods all` in one command: a run's identity leaves the other methods out).
After each method the task's results file is written again from the store's leaderboard (the one
definition every peftlab surface uses). A method already in the results file is not trained
again (`--redo M` to); a killed command, run again, resumes its run from the store.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass
class Task:
    name: str
    experiment: str  # the file, relative to the repository
    tune: int = 4  # configurations per method, asked of its Optuna study (TPE), each a full run
    seeds: int = 3  # the best configuration retrained over these seeds for the test split
    overrides: dict[str, Any] = field(default_factory=dict)
    about: str = ""
    code: str = ""  # the peftlab commit(s) its runs were trained with, where pinned (else this checkout's)


TASKS = {
    "fpb": Task("fpb", "examples/financial-phrasebank-minilm.yaml",
                about="financial_phrasebank sentiment (3 classes), all-MiniLM-L6-v2 with a new head; 1,000 training "
                      "sentences, one epoch (63 steps of 16), 200 validation and 489 test sentences",
                code="peftlab at 9cddb6a (the first 15 methods) and 3401662 (the rest), which differ in nothing a run "
                     "does; later commits validate in one pass, which moves the dropout stream after each validation"),
    "e2e": Task("e2e", "benchmarks/peft-bench/tasks/e2e.yaml",
                about="E2E NLG (meaning representation to text) on stories260k, a 260K-parameter Llama; 1,000 "
                      "training rows, one epoch (63 steps of 16), 100 validation and 100 test rows"),
}
KEYS = ("run", "method", "family", "rank", "rank_group", "p_vs_best", "recommended", "status", "main_metric",
        "n_seeds", "runs", "trainable_params", "trainable_percent", "peak_memory_mb", "train_seconds",
        "train_cpu_seconds", "eval_seconds", "adapter_bytes", "forgetting", "forgetting_ci_low",
        "forgetting_ci_high", "forgetting_na", "health_problems", "collapsed", "dropped_text", "timed_under_load")


def _row(r: dict[str, Any], metrics: list[str], runs: dict[str, Any]) -> dict[str, Any]:
    out = {k: r.get(k) for k in KEYS if r.get(k) is not None}
    rep = runs.get(r.get("representative"))
    if rep is not None:  # the configuration tuning chose on validation (a final run's entry)
        entry = (rep.config or {}).get("entry") or {}
        out["configuration"] = {"learning_rate": entry.get("learning_rate"), **(entry.get("options") or {})}
    for m in metrics:
        for k in (m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_std"):
            if r.get(k) is not None:
                out[k] = r[k]
    return out


def _versions(runs: dict[str, Any]) -> dict[str, Any]:
    for run in runs.values():
        info = run.info or {}
        if info.get("versions"):
            return {"versions": info["versions"], "machine": info.get("machine")}
    return {}


def _commit() -> str:
    import subprocess

    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"peftlab at {r.stdout.strip()}" if r.returncode == 0 else "peftlab (not a git checkout)"


def write_results(task: Task, store: Any, experiment: str, methods: list[str], path: Path, command: str,
                  failed: dict[str, str] | None = None) -> dict:
    """The task's results file from the store's leaderboard: every row, ranked across the methods
    trained so far (rank groups change as methods are added: `complete` says when they are final),
    the recommended row marked and the recommendation's headline, word for word the leaderboard's.
    `failed`: methods that ended without a final score, and why (kept, and not tried again)."""
    from peftlab.report.collect import collect
    from peftlab.report.recommend import recommend

    data = collect(store, [experiment])  # the leaderboard's rows and its answer, as `peftlab leaderboard` gives them
    rec = recommend(data)
    rs = rec.mark(data.rows)
    old = json.loads(path.read_text()) if path.is_file() else {}
    main = rs[0]["main_metric"] if rs else None
    with_ci = {k.removesuffix("_ci_low") for r in rs for k in r if k.endswith("_ci_low")} - {"forgetting", main}
    metrics = [main, *sorted(with_ci)] if main else []
    runs = {x.name: x for x in store.runs(experiment)}  # read once: each row's chosen configuration
    # done: every final run of the method is (a command killed during its last seed left a row
    # of fewer seeds: not done, so the next command finishes it)
    done = sorted({r["run"] for r in rs if r.get("status") == "done" and len(r.get("runs") or [r["run"]])
                   == (r.get("n_seeds") or 1)} | set(old.get("done", [])))
    failed = {m: why for m, why in {**old.get("failed", {}), **(failed or {})}.items() if m not in done}
    out = {"task": task.name, "about": task.about, "experiment": task.experiment, "command": command,
           "code": task.code or _commit(),
           "protocol": {"tune": task.tune, "seeds": task.seeds, "overrides": task.overrides, "split_for_choices":
                        "validation", "test_split": "read once per final run"},
           "methods": methods, "done": done, "failed": failed, "complete": set(methods) <= set(done) | set(failed),
           "main_metric": main,
           "updated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **_versions(runs),
           "platform": platform.platform(), "recommendation": rec.headline.replace("**", ""),
           "rows": [_row(r, metrics, runs) for r in rs]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    return out


def run_task(task: Task, stores: Path, results: Path, only: list[str] | None, redo: list[str],
             isolation: str = "subprocess") -> dict:
    from peftlab.config import load_experiment
    from peftlab.errors import PeftlabError
    from peftlab.store import Store
    from peftlab.train.plan import select_methods
    from peftlab.train.runner import plan, run_experiment

    exp = str(REPO / task.experiment) if not Path(task.experiment).is_absolute() else task.experiment
    cfg = load_experiment(exp).cfg
    from peftlab.methods import get_method

    entries = select_methods(cfg, ["all"])
    methods = [e.run_name for e in entries]
    trains = {e.run_name: get_method(e.name).trains for e in entries}
    store = Store(stores / task.name)
    path = results / f"{task.name}.json"
    command = (f"peftlab run {task.experiment} --methods M --tune {task.tune} --seeds {task.seeds}"
               + "".join(f" --set {k}={v}" for k, v in task.overrides.items()) + ", for M in every method that "
               "applies (one at a time; the same runs as --methods all)")
    out = write_results(task, store, cfg.name, methods, path, command) if store.experiment(cfg.name) else {}
    for i, m in enumerate(only or methods, start=1):
        if m in [*out.get("done", []), *out.get("failed", {})] and m not in redo:
            continue
        print(f"peft-bench {task.name}: [{i}/{len(only or methods)}] {m}", file=sys.stderr, flush=True)
        tuning = {"tuning.trials": task.tune} if trains.get(m, True) else {}  # zero-shot: nothing to tune
        why = None
        try:
            p = plan(exp, {**task.overrides, **tuning}, [m], seeds=task.seeds)
            ran = run_experiment(p, store, isolation=isolation, echo=lambda s: print(s, file=sys.stderr, flush=True))
            if any(r.status == "interrupted" for r in ran):  # stopped, not failed: the next command resumes it
                write_results(task, store, cfg.name, methods, path, command)
                raise KeyboardInterrupt
            why = next((f"{r.name}: {r.error}" for r in ran if r.status == "failed"), None)
        except PeftlabError as e:  # refused before it trained (preflight: the method does not fit): said, not fatal
            why = str(e)
        out = write_results(task, store, cfg.name, methods, path, command)
        if m not in out["done"]:  # recorded, so that the next command goes on to the other methods
            out = write_results(task, store, cfg.name, methods, path, command,
                                {m: why or "no final run: every tuning trial failed (see the store's runs)"})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), action="append", help="default: every task")
    ap.add_argument("--methods", help="only these (comma-separated run names)")
    ap.add_argument("--redo", default="", help="train these again even if their results are committed")
    ap.add_argument("--stores", type=Path, default=HERE / "stores")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--readme", action="store_true", help="write README.md and the charts from the results")
    ap.add_argument("--tiny", action="store_true", help="zero-shot, lora and ia3 on stories260k in this process "
                    "(a minute): checks it runs, measures nothing")
    ap.add_argument("--json", type=Path, help="also write the last task's results object here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from readme import write_readme

    isolation = "subprocess"
    tasks = [TASKS[t] for t in (args.task or sorted(TASKS))]
    if args.tiny:
        sys.path.insert(0, str(HERE.parent))
        import yaml
        from tiny import experiment, use_shared

        use_shared()
        base = (args.json.parent if args.json else Path.cwd()) / "peft-bench-tiny"
        base.mkdir(parents=True, exist_ok=True)
        body = experiment("bench", [{"name": n} for n in ("zero-shot", "lora", "ia3")], n_train=32, max_steps=8,
                          precision="fp32")
        body["data"]["max_validation_examples"] = 12  # tuning needs 10 or more
        (base / "bench.yaml").write_text(yaml.safe_dump(body))
        tasks = [Task("tiny", str(base / "bench.yaml"), tune=2, seeds=2, about="tiny: checks the script runs")]
        args.stores, args.results, isolation = base / "stores", base / "results", "inprocess"
        args.methods = args.methods or "zero-shot,lora,ia3"
    if args.readme and not args.tiny:
        print(write_readme(args.results, HERE / "README.md"))
        return {}
    out: dict = {}
    for t in tasks:
        only = args.methods.split(",") if args.methods else None
        out = run_task(t, args.stores, args.results, only, [m for m in args.redo.split(",") if m], isolation)
    if args.tiny:
        out["readme"] = write_readme(args.results, args.results.parent / "README.md")
    print(json.dumps({k: out.get(k) for k in ("task", "done", "complete", "main_metric")}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
