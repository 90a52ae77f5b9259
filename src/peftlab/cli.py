"""The `peftlab` command line.

    peftlab run EXP.yaml [--methods lora,ia3] [--max-steps N] [--max-train-examples N] ...
    peftlab leaderboard EXPERIMENT [--format table|json|csv]
    peftlab experiments
    peftlab methods [NAME]
    peftlab show EXPERIMENT RUN
    peftlab predict EXPERIMENT [RUN] --input new.jsonl --output out.jsonl [--runs a,b]
    peftlab evaluate EXPERIMENT [RUN] --test labelled.jsonl [--name NAME] [--runs a,b]
    peftlab report EXPERIMENT [-o report.html] [--max-memory-mb N] [--png-dir DIR] ...
    peftlab compare EXP_A EXP_B [--runs 3,7] [-o compare.html]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from typing import Any

from peftlab.errors import PeftlabError


def _store(args: argparse.Namespace) -> Any:
    from peftlab.store import Store

    return Store(args.store)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from peftlab.config.overrides import FLAG_KEYS, overrides_from

    o = overrides_from({k: getattr(args, k, None) for k in FLAG_KEYS})
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
    p = plan(args.experiment, _overrides(args), methods, seeds=args.seeds)
    store = _store(args)
    if args.dry_run:
        from peftlab.tune.estimate import describe_plan

        print(describe_plan(p, store))
        return 0
    results = run_experiment(p, store, force=args.force, replace=args.replace,
                             isolation="inprocess" if args.in_process else "subprocess")
    print()
    print(render(rows(store, p.cfg.name)))
    bad = [r for r in results if r.status in ("failed", "diverged")]  # (a run another process is on is fine)
    if bad:  # `peftlab run ... && deploy` must not go on
        print(f"\n{len(bad)} of {len(results)} runs failed or diverged: "
              + "; ".join(f"{r.name} {r.status}" + (f" ({r.error})" if r.error else "") for r in bad), file=sys.stderr)
        return 1
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


def cmd_methods(args: argparse.Namespace) -> int:
    """Every method and every peft type (offered or why not); NAME: one method in full."""
    from peftlab.methods.catalog import describe, render

    print(describe(args.name) if args.name else render())
    return 0


def _find_run(store: Any, args: argparse.Namespace) -> Any:
    run = store.find_run(args.experiment, args.run)
    if run is None:
        raise PeftlabError(f"no run {args.run!r} in experiment {args.experiment!r}")
    return run


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    run = _find_run(store, args)
    d = {k: getattr(run, k) for k in ("id", "experiment", "name", "method", "status", "error", "diverged_step",
                                      "metrics", "cost", "info", "resolved")}
    d["curves"] = store.curves(run.id)
    d["info"] = {k: v for k, v in (run.info or {}).items() if k != "evaluations"}
    d["evaluations"] = (run.info or {}).get("evaluations", {})  # peftlab evaluate's, by name
    print(json.dumps(d, indent=2, default=str))
    return 0


# -- predict / evaluate: a finished run on a new file (peftlab.infer.predict) -------------------
def _chosen_runs(store: Any, args: argparse.Namespace) -> list[Any]:
    """RUN, or --runs a,b, or every done run of the experiment."""
    if args.run and args.runs:
        raise PeftlabError("give one RUN or --runs a,b, not both")
    names = [args.run] if args.run else [n.strip() for n in (args.runs or "").split(",") if n.strip()]
    if names:
        return [_find_run(store, argparse.Namespace(experiment=args.experiment, run=n)) for n in names]
    runs = [r for r in store.runs(args.experiment) if r.status == "done"]
    if not runs:
        raise PeftlabError(f"experiment {args.experiment!r} has no done runs (see `peftlab leaderboard`)")
    return runs


def _say(notes: list[str], skipped: list[str]) -> None:
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if skipped:
        print(f"warning: {len(skipped)} bad rows skipped (on_bad_rows: skip), e.g. {skipped[0]}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from peftlab.infer.predict import predict_file

    runs = _chosen_runs(_store(args), args)
    out = Path(args.output)
    if out.is_dir():
        raise PeftlabError(f"{out}: is a folder; --output names the file to write (e.g. {out}/out.jsonl)")
    for run in runs:
        path = out if len(runs) == 1 else out.with_name(f"{out.stem}.{run.name}{out.suffix or '.jsonl'}")
        res = predict_file(run, args.input, path, args.batch_size, args.on_bad_rows)
        _say(res.notes, res.skipped)
        print(f"{run.name}: {res.rows} rows in {res.seconds:.1f} s -> {path} (every input column + {res.column!r})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from peftlab.infer.predict import evaluate_file

    store = _store(args)
    for run in _chosen_runs(store, args):
        rec = evaluate_file(store, run, args.test, args.name, args.batch_size, args.on_bad_rows)
        _say(rec["notes"], rec["skipped"])
        print(f"{run.name}: evaluation {rec['name']!r}, {rec['examples']} examples of {rec['source']} "
              f"({rec['seconds']:.1f} s)")
        for m, v in rec["metrics"].items():
            iv = rec["intervals"].get(m)
            ci = f" [{iv['low']:.2f}, {iv['high']:.2f}] 95% CI" if iv else ""
            print(f"  {m:<18} {v:.4f}{ci}" if isinstance(v, float) else f"  {m:<18} {v}")
        print(f"  recorded: {rec['predictions'].rsplit('/', 1)[0]}/ (peftlab show {run.experiment} {run.name})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from peftlab.serve.app import Settings, serve

    settings = Settings(store=args.store, token=args.token or os.environ.get("PEFTLAB_TOKEN") or None,
                        concurrency=args.concurrency, max_upload_mb=args.max_upload_mb,
                        start_worker=not args.no_worker, data_dirs=args.data_dir or [],
                        poll_seconds=args.poll_seconds, allowed_hosts=args.allowed_host or None,
                        model_memory_mb=args.model_memory_mb, batching=not args.no_batching,
                        max_batch=args.max_batch)
    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from peftlab.infer import export

    store = _store(args)
    run = _find_run(store, args)
    out = Path(args.output)
    export.check_output(out, store)
    if args.as_lora is not None:
        from peftlab.infer.as_lora import CHECK_FILE, as_lora

        report = as_lora(run, out, args.as_lora, n_probes=args.probes)
        print(f"{run.name}: converted to a rank-{args.as_lora} LoRA in {out}; check passed on {report['probes']} "
              f"probe inputs: same greedy outputs, max |logit difference| {report['max_abs_logit_diff']:.3g} "
              f"({CHECK_FILE})")
        return 0
    if not args.merge:
        export.copy_adapter(run, out)
        print(f"{run.name}: {export.artifact(run).name} copied to {out}")
        return 0
    report = export.merge(store, run, out, n_probes=args.probes)
    print(f"{run.name}: merged model written to {out}")
    print(f"check passed on {report['probes']} probe inputs: same greedy outputs, max |logit difference| "
          f"{report['max_abs_logit_diff']:.3g} <= {report['tolerance']:.3g} ({export.CHECK_FILE})")
    return 0


def _report_options(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from peftlab.report.html import ReportOptions
    from peftlab.report.recommend import Budget

    budget = Budget(args.max_memory_mb, args.max_train_seconds, args.max_trainable_percent)
    costs = {"trainable": "trainable_params", "memory": "peak_memory_mb", "time": "train_seconds"}
    prefer = [c.strip() for c in (args.prefer or "trainable,memory,time").split(",") if c.strip()]
    bad = [c for c in prefer if c not in costs]
    if bad:
        raise PeftlabError(f"--prefer {','.join(bad)}: choose among {', '.join(costs)} (comma-separated, first first)")
    return ReportOptions(budget=budget, prefer=tuple(costs[c] for c in prefer), sample=args.sample,
                         all_outputs=args.all_outputs,
                         bertscore=not args.no_bertscore, bertscore_model=args.bertscore_model,
                         png_dir=Path(args.png_dir) if args.png_dir else None)


def _write_report(args: argparse.Namespace, experiments: list[str], run_ids: list[int]) -> int:
    from pathlib import Path

    from peftlab.report.html import build_report

    if Path(args.output).is_dir():
        raise PeftlabError(f"{args.output}: is a folder; -o names the HTML file to write (e.g. {args.output}/report.html)")
    res = build_report(_store(args), experiments, args.output, run_ids=run_ids, options=_report_options(args))
    for p in res.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(res.recommendation.text)
    print(f"\nreport written to {res.path} ({len(res.data.runs)} runs)")
    if res.pngs:
        print(f"{len(res.pngs)} PNG charts written to {args.png_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    return _write_report(args, [args.experiment], [])


def cmd_compare(args: argparse.Namespace) -> int:
    ids: list[int] = []
    for part in (args.runs or "").split(","):
        if part.strip():
            try:
                ids.append(int(part))
            except ValueError:
                raise PeftlabError(f"--runs: {part.strip()!r} is not a run id (see `peftlab show EXP RUN`)") from None
    if not args.experiments and not ids:
        raise PeftlabError("compare: name experiments and/or pass --runs ID,ID")
    return _write_report(args, args.experiments, ids)


def _add_report_args(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("-o", "--output", default=default_out, help=f"HTML file to write (default {default_out})")
    p.add_argument("--max-memory-mb", type=float, help="budget: peak memory for the recommendation")
    p.add_argument("--max-train-seconds", type=float, help="budget: training wall time")
    p.add_argument("--max-trainable-percent", type=float, help="budget: share of parameters trained")
    p.add_argument("--prefer", metavar="COSTS", help="among tied runs, recommend the cheapest by these costs, in order: "
                   "trainable, memory, time (default trainable,memory,time)")
    p.add_argument("--sample", type=int, default=20, help="test inputs shown side by side (default 20)")
    p.add_argument("--all-outputs", action="store_true", help="show every test input side by side")
    p.add_argument("--png-dir", help="also write the charts as PNG files to this folder")
    p.add_argument("--bertscore-model", help="BERTScore encoder (default: evaluation.bertscore_model or all-MiniLM-L6-v2)")
    p.add_argument("--no-bertscore", action="store_true", help="skip BERTScore")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="peftlab", description="Compare PEFT methods on your data, side by side.")
    store_help = "store folder (default ./peftlab-store or $PEFTLAB_STORE)"
    ap.add_argument("--store", default=os.environ.get("PEFTLAB_STORE", "peftlab-store"), help=store_help)
    # The common flags are accepted after the subcommand too (`peftlab report EXP --store X`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", parents=[common], help="train and evaluate every method of an experiment file")
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
    r.add_argument("--tune", type=int, metavar="N",
                   help="tune every method with N trials on the same budget (validation split) before the final runs")
    r.add_argument("--seeds", type=int, metavar="K", help="train each final run with K seeds (training.seed, +1, ...)")
    r.add_argument("--dry-run", action="store_true", help="show the runs this would make and their expected cost")
    r.add_argument("--force", action="store_true", help="redo runs that are already done")
    r.add_argument("--replace", action="store_true",
                   help="replace finished runs of the same name whose settings changed (refused otherwise)")
    r.add_argument("--in-process", action="store_true", help="run methods in this process (debugging)")
    r.set_defaults(fn=cmd_run)

    lb = sub.add_parser("leaderboard", parents=[common], help="ranked table of an experiment's runs")
    lb.add_argument("experiment")
    lb.add_argument("--format", choices=["table", "json", "csv"], default="table")
    lb.set_defaults(fn=cmd_leaderboard)

    ex = sub.add_parser("experiments", parents=[common], help="list experiments in the store")
    ex.set_defaults(fn=cmd_experiments)

    mt = sub.add_parser("methods", parents=[common], help="the methods peftlab offers, and the peft types it does not (with why)")
    mt.add_argument("name", nargs="?", help="one method (or peft type) in full: options, defaults, learning rates")
    mt.set_defaults(fn=cmd_methods)

    sh = sub.add_parser("show", parents=[common], help="everything recorded about one run (JSON)")
    sh.add_argument("experiment")
    sh.add_argument("run")
    sh.set_defaults(fn=cmd_show)
    for name, fn, file_flag, what in (("predict", cmd_predict, "--input", "outputs of finished runs for a new file"),
                                      ("evaluate", cmd_evaluate, "--test", "score finished runs on a labelled "
                                       "file they never saw; recorded under each run")):
        pe = sub.add_parser(name, parents=[common], help=what)
        pe.add_argument("experiment")
        pe.add_argument("run", nargs="?", help="one run (default: --runs, or every done run)")
        pe.add_argument("--runs", help="comma-separated run names")
        pe.add_argument(file_flag, required=True, dest="input" if name == "predict" else "test",
                        help="JSONL, CSV or Parquet file in the run's data format" +
                             (" (the target column may be missing)" if name == "predict" else " with targets"))
        pe.add_argument("--batch-size", type=int, help="generation batch size (default: the run's evaluation.batch_size)")
        pe.add_argument("--on-bad-rows", choices=["error", "skip"], help="default: the run's data.on_bad_rows")
        if name == "predict":
            pe.add_argument("-o", "--output", required=True,
                            help="JSONL (or .csv) file to write; with several runs, OUT.<run>.jsonl each")
        else:
            pe.add_argument("--name", help="the evaluation's name (default: the file's stem)")
        pe.set_defaults(fn=fn)

    sv = sub.add_parser("serve", parents=[common], help="the web service: upload data, compare methods, try and export the winner")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every API call (or $PEFTLAB_TOKEN)")
    sv.add_argument("--concurrency", type=int, default=1, help="runs executing at once (default 1)")
    sv.add_argument("--max-upload-mb", type=float, default=100.0, help="upload size limit (default 100 MB)")
    sv.add_argument("--data-dir", action="append", metavar="DIR",
                    help="another folder whose data files may be used by path (besides PEFTLAB_DATA_PATH)")
    sv.add_argument("--no-worker", action="store_true",
                    help="do not run queued runs here (run `python -m peftlab.queue STORE` elsewhere)")
    sv.add_argument("--allowed-host", action="append", metavar="NAME",
                    help="a host name the service answers to (default: 127.0.0.1, localhost, ::1); repeat for more")
    sv.add_argument("--poll-seconds", type=float, default=1.0, help="how often the worker looks at the queue")
    sv.add_argument("--model-memory-mb", type=float, default=4096.0,
                    help="models kept loaded for the playground and /v1 (bases, full fine-tuned runs); beyond it the "
                         "least recently used is dropped (default 4096)")
    sv.add_argument("--max-batch", type=int, default=16,
                    help="/v1 requests of one base model answered in one batch at most (default 16)")
    sv.add_argument("--no-batching", action="store_true", help="/v1: answer one request at a time")
    sv.set_defaults(fn=cmd_serve)

    xp = sub.add_parser("export", parents=[common], help="copy a run's adapter, or merge it into the base model (--merge)")
    xp.add_argument("experiment")
    xp.add_argument("run")
    xp.add_argument("-o", "--output", required=True, help="output folder (new or empty)")
    xp.add_argument("--merge", action="store_true",
                    help="merge the adapter into the base weights; checked against the adapter on probe inputs")
    xp.add_argument("--as-lora", type=int, metavar="RANK",
                    help="write the adapter as a plain LoRA of this rank (for LoRA-only servers such as vLLM), "
                         "checked against the original on probe inputs")
    xp.add_argument("--probes", type=int, default=4, help="number of probe inputs for the merge check (default 4)")
    xp.set_defaults(fn=cmd_export)

    rp = sub.add_parser("report", parents=[common], help="one self-contained HTML report of an experiment (plots, outputs, advice)")
    rp.add_argument("experiment")
    _add_report_args(rp, "report.html")
    rp.set_defaults(fn=cmd_report)

    cp = sub.add_parser("compare", parents=[common], help="one HTML report over several experiments and/or runs by id")
    cp.add_argument("experiments", nargs="*", help="experiment names")
    cp.add_argument("--runs", help="comma-separated run ids to add, e.g. 3,7")
    _add_report_args(cp, "compare.html")
    cp.set_defaults(fn=cmd_compare)
    return ap


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, so a closed pipe is caught below rather than at interpreter exit
        return code
    except PeftlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `peftlab leaderboard X | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # an output path or the store's folder: one line, not a traceback
        where = e.filename or "file"
        print(f"error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        print(f"error: the store's database: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
