"""The `peftlab` command line's arguments: one subparser per command, each bound to its `cmd_*`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from peftlab.cli.commands import (
    cmd_compare,
    cmd_evaluate,
    cmd_experiments,
    cmd_export,
    cmd_leaderboard,
    cmd_methods,
    cmd_predict,
    cmd_report,
    cmd_run,
    cmd_serve,
    cmd_show,
)


class _Version(argparse.Action):
    """`peftlab --version`: peftlab's version and the libraries' that decide its results (read when
    asked, from the installed packages' metadata: no import)."""

    def __init__(self, option_strings: list[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print peftlab's version and its key libraries' versions, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        import importlib.metadata as md
        import platform

        from peftlab import __version__

        libs = []
        for pkg in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets", "optuna"):
            try:
                libs.append(f"{pkg} {md.version(pkg)}")
            except md.PackageNotFoundError:
                libs.append(f"{pkg} not installed")
        print(f"peftlab {__version__} (python {platform.python_version()}; {', '.join(libs)})")
        parser.exit()


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: runs one after another on this machine; ray: side by side on a Ray cluster "
                        "(pip install 'peftlab[ray]')")
    p.add_argument("--ray-address", help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT, or auto); "
                                         "default: a local Ray instance")
    p.add_argument("--ray-max-retries", type=int, default=2, metavar="N",
                   help="times a run whose Ray worker died is resumed from its last checkpoint (default 2)")


def _add_report_args(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("-o", "--output", default=default_out, help=f"HTML file to write (default {default_out})")
    p.add_argument("--max-memory-mb", type=float, help="budget: peak memory for the recommendation")
    p.add_argument("--max-train-seconds", type=float, help="budget: training wall time")
    p.add_argument("--max-trainable-percent", type=float, help="budget: share of parameters trained")
    p.add_argument("--max-forgetting", type=float, metavar="NATS", help="budget: forgetting, in nats/token (the "
                   "leaderboard's forgetting column)")
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
    ap.add_argument("--version", action=_Version)
    # The common flags are accepted after the subcommand too (`peftlab report EXP --store X`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", parents=[common], help="train and evaluate every method of an experiment file")
    r.add_argument("experiment", help="experiment YAML file")
    r.add_argument("--methods", help="comma-separated run or method names (default: all listed)")
    r.add_argument("--max-steps", type=int, help="stop each run after N optimizer steps (training.max_steps)")
    r.add_argument("--epochs", type=float, help="passes over the training split (training.epochs)")
    r.add_argument("--batch-size", type=int, help="examples per optimizer step (training.batch_size)")
    r.add_argument("--learning-rate", type=float,
                   help="learning rate of every method that sets none of its own (training.learning_rate; "
                        "default: each method's default rate)")
    r.add_argument("--seed", type=int, help="seed of sampling, splits, initialisation and data order (training.seed)")
    r.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="training.precision; auto: bf16 where the hardware has it natively, else fp32 on CPU")
    r.add_argument("--max-train-examples", type=int, help="limit on training examples (data.max_train_examples)")
    r.add_argument("--max-eval-examples", type=int, help="limit on test examples")
    r.add_argument("--max-validation-examples", type=int,
                   help="limit on validation examples (data.max_validation_examples)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any key, e.g. training.seed=1")
    r.add_argument("--tune", type=int, metavar="N",
                   help="tune every method with N trials on the same budget (validation split) before the final runs")
    r.add_argument("--budget", metavar="TIME",
                   help="race the methods within TIME of this machine (45m, 1h30m), finals included: cheap rungs on "
                        "the validation split first, the significantly worse dropped (tuning.budget)")
    r.add_argument("--seeds", type=int, metavar="K", help="train each final run with K seeds (training.seed, +1, ...)")
    r.add_argument("--dry-run", action="store_true", help="show the runs this would make and their expected cost")
    r.add_argument("--force", action="store_true", help="redo runs that are already done")
    r.add_argument("--replace", action="store_true",
                   help="replace finished runs of the same name whose settings changed (refused otherwise)")
    r.add_argument("--in-process", action="store_true", help="run methods in this process (debugging)")
    _add_executor_args(r)
    r.set_defaults(fn=cmd_run)

    lb = sub.add_parser("leaderboard", parents=[common], help="ranked table of an experiment's runs")
    lb.add_argument("experiment")
    lb.add_argument("--format", choices=["table", "markdown", "json", "csv"], default="table",
                    help="table (with the recommendation under it), markdown (the same, as a pipe table), json or "
                    "csv (the recommended row: recommended)")
    lb.add_argument("--max-memory-mb", type=float, help="budget: recommend within this peak memory")
    lb.add_argument("--max-train-seconds", type=float, help="budget: recommend within this train time")
    lb.add_argument("--max-trainable-percent", type=float, help="budget: recommend within this share of "
                    "trained parameters")
    lb.add_argument("--max-forgetting", type=float, metavar="NATS", help="budget: recommend within this forgetting, "
                    "in nats/token (the forgetting column)")
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
        pe.add_argument("run", nargs="?", help="one run (default: --runs, or every done final run; tuning "
                        "trials only when named)")
        pe.add_argument("--runs", help="comma-separated run names")
        pe.add_argument(file_flag, required=name == "predict", dest="input" if name == "predict" else "test",
                        help="JSONL, CSV or Parquet file in the run's data format" +
                             (" (the target column may be missing)" if name == "predict" else " with targets"))
        pe.add_argument("--batch-size", type=int, help="generation batch size (default: the run's evaluation.batch_size)")
        pe.add_argument("--on-bad-rows", choices=["error", "skip"], help="default: the run's data.on_bad_rows")
        pe.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core; 1 on a busy "
                                                    "machine)")
        if name == "predict":
            pe.add_argument("-o", "--output", required=True,
                            help="JSONL (or .csv) file to write; with several runs, OUT.<run>.jsonl each")
        else:
            pe.add_argument("--name", help="the evaluation's name (default: the file's stem)")
            pe.add_argument("--lm-eval", metavar="TASKS", help="comma-separated lm-evaluation-harness tasks (as "
                            "`lm_eval ls tasks` names them) to score each run on, beside the zero-shot row")
            pe.add_argument("--lm-eval-include", type=Path, metavar="DIR",
                            help="a folder of local lm-eval task files (YAML), for tasks offline")
            pe.add_argument("--limit", type=int, help="lm-eval: score at most this many examples per task")
        pe.set_defaults(fn=fn)

    sv = sub.add_parser("serve", parents=[common], help="the web service: upload data, compare methods, try and export the winner")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    sv.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every API call (or $PEFTLAB_TOKEN)")
    sv.add_argument("--concurrency", type=int,
                    help="runs executing at once (default 1; with --executor ray: runs submitted to Ray at once, "
                         "default all: Ray runs as many as the cluster holds)")
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
    sv.add_argument("--max-queued", type=int, default=64,
                    help="/v1 requests waiting at most; beyond, 429 with Retry-After (default 64)")
    sv.add_argument("--request-timeout", type=float, default=300.0,
                    help="/v1: seconds a request may take, waiting included, before it is stopped (default 300; 0: none)")
    sv.add_argument("--shutdown-timeout", type=float, default=5.0,
                    help="on SIGTERM, seconds requests in flight have to finish before they are stopped (default 5)")
    sv.add_argument("--threads", type=int,
                    help="torch CPU threads for /v1 and the playground (default: half the CPUs, at least 1: on 2 busy cores one "
                         "thread answered 4-6x faster than two; 0: torch's default, one per core)")
    _add_executor_args(sv)
    sv.set_defaults(fn=cmd_serve)

    xp = sub.add_parser("export", parents=[common], help="copy a run's adapter, merge it into the base model (--merge), or write GGUF (--gguf)")
    xp.add_argument("experiment")
    xp.add_argument("run")
    xp.add_argument("-o", "--output", required=True, help="output folder (new or empty)")
    xp.add_argument("--merge", action="store_true",
                    help="merge the adapter into the base weights; checked against the adapter on probe inputs")
    xp.add_argument("--as-lora", type=int, metavar="RANK",
                    help="write the adapter as a plain LoRA of this rank (for LoRA-only servers such as vLLM), "
                         "checked against the original on probe inputs")
    xp.add_argument("--gguf", action="store_true",
                    help="write GGUF files for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile; each is "
                         "checked in llama.cpp against the adapter on probe inputs (needs the gguf extra)")
    xp.add_argument("--quant", default="f16", metavar="TYPES",
                    help="with --gguf: llama.cpp types to write, comma-separated (f32, f16, bf16, q8_0, q6_k, q5_k_m, "
                         "q4_k_m, q4_0, …; default f16)")
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
