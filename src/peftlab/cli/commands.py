"""What each `peftlab` subcommand does, given its parsed arguments (`parser.py` defines them).

Each `cmd_*` returns the exit code; a `PeftlabError` raised here becomes one `error:` line (in
`peftlab.cli.main`). The work itself lives in the library: a command reads its arguments, calls
it and prints.
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


def _overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The experiment keys the flags set, and how each was given (`--tune 0`, `--set KEY=VALUE`):
    a bad value is reported against its flag, not a line of the file."""
    from peftlab.config.overrides import FLAG_KEYS, overrides_from

    flags = {k: getattr(args, k, None) for k in FLAG_KEYS}
    o = overrides_from(flags)
    origins = {FLAG_KEYS[k]: f"--{k.replace('_', '-')} {v}" for k, v in flags.items() if v is not None}
    for item in args.set or []:
        if "=" not in item:
            raise PeftlabError(f"--set {item!r}: use KEY=VALUE, e.g. --set training.batch_size=4")
        k, v = item.split("=", 1)
        import yaml

        try:
            o[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise PeftlabError(f"--set {item}: the value is not valid YAML; quote it, e.g. --set '{k}=\"{v}\"'") from None
        origins[k] = f"--set {item}"
    return o, origins


def cmd_run(args: argparse.Namespace) -> int:
    from peftlab.train.runner import plan, run_experiment

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    overrides, origins = _overrides(args)
    p = plan(args.experiment, overrides, methods, seeds=args.seeds, origins=origins)
    store = _store(args)
    if args.dry_run:
        from peftlab.tune.estimate import describe_plan

        print(describe_plan(p, store, force=args.force))
        return 0
    results = run_experiment(p, store, force=args.force, replace=args.replace, isolation=_isolation(args))
    print()
    print(board(store, p.cfg.name))
    bad = [r for r in results if r.status in ("failed", "diverged")]  # (a run another process is on is fine)
    if bad:  # `peftlab run ... && deploy` must not go on
        print(f"\n{len(bad)} of {len(results)} runs failed or diverged: "
              + "; ".join(f"{r.name} {r.status}" + (f" ({r.error})" if r.error else "") for r in bad), file=sys.stderr)
        return 1
    return 0


def _isolation(args: argparse.Namespace) -> Any:
    """How `peftlab run` executes its runs: a worker process each, in this process, or on Ray."""
    if args.executor == "ray":
        from peftlab.scale.ray_executor import RayExecutor

        return RayExecutor(args.ray_address, max_retries=args.ray_max_retries)
    if args.ray_address:
        raise PeftlabError("--ray-address needs --executor ray")
    return "inprocess" if args.in_process else "subprocess"


def board(store: Any, experiment: str, fmt: str = "table", budget: Any = None) -> str:
    """The leaderboard with the answer: the recommended row marked (`recommended`), and in the
    terminal the recommendation's headline under the table (the report's, word for word)."""
    from peftlab.report.board_text import render
    from peftlab.report.collect import collect
    from peftlab.report.recommend import recommend

    data = collect(store, [experiment])
    rec = recommend(data, budget)
    headline = {"table": rec.headline.replace("**", ""), "markdown": rec.headline}.get(fmt)
    return render(rec.mark(data.rows), fmt, headline)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from peftlab.report.recommend import Budget

    budget = Budget(args.max_memory_mb, args.max_train_seconds, args.max_trainable_percent, args.max_forgetting)
    print(board(_store(args), args.experiment, args.format, budget))
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
    """RUN, or --runs a,b, or every done final run of the experiment (tuning trials only when named)."""
    from peftlab.report.leaderboard import is_trial

    if args.run and args.runs:
        raise PeftlabError("give one RUN or --runs a,b, not both")
    names = [args.run] if args.run else [n.strip() for n in (args.runs or "").split(",") if n.strip()]
    if names:
        return [_find_run(store, argparse.Namespace(experiment=args.experiment, run=n)) for n in names]
    runs = [r for r in store.runs(args.experiment) if r.status == "done" and not is_trial(r)]
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
    from peftlab.infer.threads import set_threads

    set_threads(args.threads)
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
    from peftlab.infer.threads import set_threads

    set_threads(args.threads)
    store = _store(args)
    if not args.test and not args.lm_eval:
        raise PeftlabError("give --test FILE (a labelled file the runs never saw) or --lm-eval TASKS (or both)")
    for run in _chosen_runs(store, args):
        if args.lm_eval:
            _lm_eval(store, run, args)
        if not args.test:
            continue
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


def _lm_eval(store: Any, run: Any, args: argparse.Namespace) -> None:
    """Score the run on lm-eval's tasks, record them, print each beside the zero-shot row's score."""
    from peftlab.evaluate import harness

    tasks = [t.strip() for t in args.lm_eval.split(",") if t.strip()]
    records = harness.run_tasks(run, tasks, args.lm_eval_include, args.limit, args.batch_size or 1)
    harness.record(store, run, records)
    for task, rec in records.items():
        base = harness.beside_zero_shot(store, run, rec["name"])
        print(f"{run.name}: lm-eval {task} ({rec['samples']} examples, {rec['seconds']:.1f} s)")
        for m, v in rec["metrics"].items():
            se = rec["stderr"].get(m)
            line = f"  {m:<18} {v:.4f}" + (f" ± {se:.4f} (stderr)" if isinstance(se, float) else "")
            z = ((base or {}).get("metrics") or {}).get(m)
            print(line + (f"   zero-shot {z:.4f}, {v - z:+.4f}" if isinstance(z, int | float) else ""))


def cmd_serve(args: argparse.Namespace) -> int:
    from peftlab.infer.threads import serve_threads
    from peftlab.serve.app import Settings, serve

    settings = Settings(store=args.store, token=args.token or os.environ.get("PEFTLAB_TOKEN") or None,
                        concurrency=args.concurrency if args.concurrency is not None else int(args.executor != "ray"),
                        max_upload_mb=args.max_upload_mb,
                        start_worker=not args.no_worker, data_dirs=args.data_dir or [],
                        poll_seconds=args.poll_seconds, allowed_hosts=args.allowed_host or None,
                        model_memory_mb=args.model_memory_mb, batching=not args.no_batching,
                        max_batch=args.max_batch, max_queued=args.max_queued,
                        request_timeout=args.request_timeout or None, shutdown_timeout=args.shutdown_timeout,
                        threads=serve_threads(args.threads), executor=args.executor, ray_address=args.ray_address,
                        ray_max_retries=args.ray_max_retries)
    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from peftlab.infer import export

    store = _store(args)
    run = _find_run(store, args)
    out = Path(args.output)
    export.check_output(out, store)
    from peftlab.infer.card import finish_folder

    if args.gguf:
        if args.merge or args.as_lora is not None:
            raise PeftlabError("--gguf merges the adapter itself (a GGUF holds the merged weights): leave out "
                               f"{'--merge' if args.merge else '--as-lora'}, or export twice into two folders")
        return _export_gguf(store, run, out, args)
    if args.as_lora is not None:
        from peftlab.infer.as_lora import CHECK_FILE, as_lora

        report = as_lora(run, out, args.as_lora, n_probes=args.probes)
        finish_folder(store, run, out, "adapter")
        print(f"{run.name}: converted to a rank-{args.as_lora} LoRA in {out}; check passed on {report['probes']} "
              f"probe inputs: same greedy outputs, max |logit difference| {report['max_abs_logit_diff']:.3g} "
              f"({CHECK_FILE})")
        return 0
    if not args.merge:
        export.copy_adapter(run, out)
        finish_folder(store, run, out, "model" if export.artifact(run).name == "model" else "adapter")
        print(f"{run.name}: {export.artifact(run).name} copied to {out}")
        return 0
    report = export.merge(store, run, out, n_probes=args.probes)
    finish_folder(store, run, out, "merged")
    print(f"{run.name}: merged model written to {out}")
    print(f"check passed on {report['probes']} probe inputs: same greedy outputs, max |logit difference| "
          f"{report['max_abs_logit_diff']:.3g} <= {report['tolerance']:.3g} ({export.CHECK_FILE})")
    return 0


def _export_gguf(store: Any, run: Any, out: Any, args: argparse.Namespace) -> int:
    from peftlab.infer import gguf, gguf_tools

    quants = gguf_tools.quant_list(args.quant)
    report = gguf.export_gguf(store, run, out, quants, n_probes=args.probes)
    for r in report["types"]:
        agree = (f"{r['same_outputs']}/{r['probes']} outputs equal, {r['same_stops']}/{r['probes']} stop alike, "
                 f"mean log-prob gap {r['mean_logprob_gap']:.3g}")
        print(f"{r['type']}: {'passed' if r['passed'] else 'FAILED (not kept): ' + r['why']}: {agree}"
              + (f" -> {out / r['file']}" if r["passed"] else ""))
    print(f"Ollama: cd {out} && ollama create {run.experiment}-{run.name} -f Modelfile; llama.cpp: llama-cli -m "
          f"{out / next(r['file'] for r in report['types'] if r['passed'])} ({gguf.CHECK_FILE} has the check)")
    return 0


def _report_options(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from peftlab.report.html import ReportOptions
    from peftlab.report.recommend import Budget

    budget = Budget(args.max_memory_mb, args.max_train_seconds, args.max_trainable_percent, args.max_forgetting)
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
