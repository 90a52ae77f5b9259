"""Every benchmark under benchmarks/ runs on the code as it is (issue 34): the default suite runs
each script's `--tiny` mode (a 260k-parameter model, seconds) as a user would, in a subprocess, and
checks the result it writes. Its figures measure nothing; that it runs and reports is the point.
The speed benchmark's quick mode (real model, minutes) is marked slow."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, MODELS, needs_shared, one_ray_at_a_time

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
HELPERS = {"cases.py", "recipes.py", "tiny.py"}  # imported by the benchmarks, not run on their own

pytestmark = needs_shared


def run_tiny(script: str, *args: str, tmp: Path, timeout: float = 300) -> dict:
    """`python benchmarks/SCRIPT --tiny --json OUT ARGS`, from a folder outside the checkout; the
    object it wrote."""
    out = tmp / f"{script.replace('/', '-')}.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PEFTLAB_MODEL_PATH=str(MODELS), PEFTLAB_DATA_PATH=str(DATA),
               TQDM_DISABLE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(BENCH / script), "--tiny", "--json", str(out), *args],
                          capture_output=True, text=True, cwd=tmp, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def positive(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_every_benchmark_script_has_a_tiny_mode_that_this_file_runs() -> None:
    """A script added to benchmarks/ without a tiny mode, or without a test here, fails this."""
    scripts = {p.name: p for p in BENCH.glob("*.py") if p.name not in HELPERS}
    scripts |= {p.parent.name: p for p in BENCH.glob("*/run.py")}  # a benchmark with a folder of its own
    tested = {name.removeprefix("test_tiny_").replace("_", "") for name in globals() if name.startswith("test_tiny_")}
    assert scripts, "no benchmark scripts found"
    for s, path in sorted(scripts.items()):
        assert "--tiny" in path.read_text(), f"benchmarks/{s} has no --tiny mode"
        assert s.removesuffix(".py").replace("_", "").replace("-", "") in tested, f"benchmarks/{s}: no test_tiny_ test here"


def test_tiny_speed(tmp_path: Path) -> None:
    """Forced to bf16 (this suite's CPUs may lack native bf16: `auto` would give fp32 there)."""
    results = (BENCH / "RESULTS.md").stat().st_mtime_ns
    t0 = time.perf_counter()
    r = run_tiny("speed.py", "--precision", "bf16", tmp=tmp_path)
    wall = time.perf_counter() - t0
    assert r["mode"] == "tiny" and r["precision"] == "bf16" and set(r["by_precision"]) == {"bf16"}
    for k in ("train_speedup", "eval_speedup", "mfu", "usual_mfu", "memory_ratio", "peak_gflops", "train_seconds",
              "usual_train_seconds", "train_cpu_seconds"):
        assert positive(r[k]), (k, r[k])
    assert math.isfinite(r["quality_delta"]) and abs(r["quality_delta"]) <= 100
    assert r["device"] in ("cpu", "cuda") and r["cpu"] and isinstance(r["cpu_flags"], list)
    assert r["threads"] >= 1 and len(r["load_average"]) == 2 and r["date"].startswith("20")
    assert 0 < r["wall_seconds"] <= wall
    assert (BENCH / "RESULTS.md").stat().st_mtime_ns == results  # only the full mode writes RESULTS


def test_tiny_eval_levers(tmp_path: Path) -> None:
    r = run_tiny("eval_levers.py", tmp=tmp_path)
    variants = r["variants"]
    assert set(variants) == {"plain", "prefix", "prefix+merge", "prefix+merge+prune", "peft-generate", "usual"}
    for name, v in variants.items():
        assert positive(v["seconds"]) and positive(v["examples_per_second"]), name
    # the levers change speed, not outputs; the usual recipe's evaluation computes no loss
    assert all(v["same_outputs"] for k, v in variants.items() if k != "usual")
    assert variants["usual"]["test_loss"] is None and positive(variants["plain"]["test_loss"])
    assert r["measured_on"] == r["test_examples"] == 4 and positive(r["train_seconds"])
    assert set(r["eval_over_train"]) == set(variants)


def test_tiny_executors(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with one_ray_at_a_time(tmp_path_factory):
        r = run_tiny("executors.py", "--local-threads", "1", tmp=tmp_path, timeout=400)
    assert r["runs"] == 2 and r["statuses"] == ["done"]
    assert positive(r["local_seconds"]) and positive(r["ray_seconds"]) and positive(r["speedup"])
    assert r["max_metric_diff"] is not None and r["max_metric_diff"] < 1e-3  # the same runs, the same metrics


def test_tiny_answer_precision(tmp_path: Path) -> None:
    """bf16-trained runs answering in fp32 (the default) and in bf16: under fp32 every path gives
    the run's test outputs (the promise of issue 26); both policies measured."""
    r = run_tiny("answer_precision.py", tmp=tmp_path)
    fp32, bf16 = r["policies"]["fp32"], r["policies"]["bf16"]
    assert (fp32["answers_in"], bf16["answers_in"], fp32["trained_in"], bf16["trained_in"]) == ("fp32", "bf16",
                                                                                              "bf16", "bf16")
    for key in ("fp32_load_equal", "v1_alone_equal_test", "v1_concurrent_equal_alone"):
        same, total = fp32[key].split("/")
        assert same == total and int(total) > 0, (key, fp32[key])
    for p in (fp32, bf16):
        assert positive(p["eval_examples_per_s"]) and positive(p["predict_examples_per_s"]) and positive(p["serve"]["rps"])


def test_tiny_openai_load(tmp_path: Path) -> None:
    r = run_tiny("openai_load.py", tmp=tmp_path)
    assert (r["clients"], r["requests_per_client"]) == (2, 1)
    assert set(r["scenarios"]) == {"one adapter", "mixed LoRA", "mixed types"}
    for name, row in r["scenarios"].items():
        for mode in ("batched", "one at a time"):
            m = row[mode]
            assert m["requests"] == 2 and m["errors"] == 0, (name, mode, m["error_kinds"])
            assert positive(m["rps"]) and positive(m["p50_ms"]) and m["p99_ms"] >= m["p95_ms"] >= m["p50_ms"]
            assert positive(m["tokens_per_s"]) and m["refused_429"] == 0
        assert positive(row["gain"])
    assert r["by_clients"] == {"2": r["scenarios"]} and r["model"] == "stories260k"
    assert r["cpu"] and isinstance(r["cpu_flags"], list) and len(r["load_average"]) == 2 and r["date"].startswith("20")


def test_tiny_load_playground(tmp_path: Path) -> None:
    r = run_tiny("load_playground.py", tmp=tmp_path)
    assert (r["clients"], r["requests_per_client"]) == (2, 2)
    assert r["overall"]["requests"] == 4 and r["overall"]["errors"] == 0, r["overall"]["error_kinds"]
    assert r["playground"]["requests"] == 2 and r["lists"]["requests"] == 2
    assert positive(r["throughput_rps"]) and positive(r["overall"]["median_ms"])


def test_tiny_page_load(tmp_path: Path) -> None:
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    r = run_tiny("page_load.py", tmp=tmp_path)
    assert r["mode"] == "tiny" and r["experiment"] == "pages" and r["runs"] == 2 and r["repeat"] == 2
    for page in ("results", "export"):
        p = r["pages"][page]
        assert len(p["seconds"]) == 2 and positive(p["first_seconds"]) and positive(p["median_seconds"]), page


@pytest.mark.slow
def test_quick_benchmark_under_three_minutes_and_faster_than_the_usual_recipe() -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--quick"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"train_speedup", "eval_speedup", "mfu", "quality_delta", "cpu", "cpu_flags"} <= last.keys()
    assert last["train_speedup"] > 1 and last["eval_speedup"] > 1
    assert 0 < last["mfu"] <= 1
    assert wall < 180, f"quick mode took {wall:.0f} s"


def test_every_benchmark_script_answers_help() -> None:
    """A script whose import broke (or that reads sys.argv by hand) fails here, not in a user's hands."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = sorted(p for p in [*bench.glob("*.py"), *bench.glob("*/run.py")]
                     if "__main__" in p.read_text(encoding="utf-8"))
    assert scripts
    for p in scripts:
        r = subprocess.run([sys.executable, str(p), "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "usage:" in r.stdout, f"{p.name} --help: {r.stderr[-500:]}"


def test_tiny_peft_bench(tmp_path: Path) -> None:
    """Three methods tuned and seeded, their results file and README part written; run again,
    nothing is trained (a method in the results is not redone)."""
    r = run_tiny("peft-bench/run.py", tmp=tmp_path, timeout=600)
    assert r["task"] == "tiny" and set(r["done"]) == {"zero-shot", "lora", "ia3"} and not r["complete"]
    rows = {x["run"]: x for x in r["rows"]}
    assert rows["lora"]["n_seeds"] == 2 and rows["lora"]["configuration"]["learning_rate"] > 0
    assert all(x.get("rank") for x in rows.values()) and rows["zero-shot"]["trainable_params"] == 0
    readme = Path(r["readme"]).read_text()
    assert "<!-- results:tiny -->" in readme and "| lora" in readme and "tiny-ranking.png" in readme
    # the answer is the leaderboard's: at most one row marked, named in the headline the README repeats
    marked = [x["run"] for x in r["rows"] if x.get("recommended")]
    assert len(marked) <= 1 and r["recommendation"] and f"peftlab's answer (★): {r['recommendation']}" in readme
    assert all(m in r["recommendation"] for m in marked)
    assert "**Beside peft's own benchmark**" in readme and "results/tiny-pareto-trainable_params.png" in readme
    assert (tmp_path / "peft-bench-tiny" / "results" / "tiny-ranking.png").stat().st_size > 1000
    t0 = time.time()
    again = run_tiny("peft-bench/run.py", tmp=tmp_path, timeout=300)
    assert again["rows"] == r["rows"] and time.time() - t0 < 60


def test_peft_bench_beside_peft_ranks_the_methods_both_have() -> None:
    """peft's experiment names map onto peftlab's methods; each method's best configuration there is
    ranked against ours, with Spearman's correlation: +1 in the same order, -1 reversed."""
    sys.path.insert(0, str(BENCH / "peft-bench"))
    import vs_peft

    assert [vs_peft.ours(n) for n in ("lora/x-rank32-dora", "lora/x-rank64-rslora", "lora/x-rank32-mica",
                                      "prefixtuning/x", "full-finetuning/x", "adaptionprompt/x", "miss/x-bat")] == [
        "dora", "lora", None, "prefix-tuning", "full", None, "miss"]
    ref = {"source": "s", "about": "a", "experiments": [
        {"experiment": "lora/a", "method": "lora", "accuracy": 50.0}, {"experiment": "lora/b", "method": "lora", "accuracy": 30.0},
        {"experiment": "ia3/a", "method": "ia3", "accuracy": 40.0}, {"experiment": "vera/a", "method": "vera", "accuracy": 20.0},
        {"experiment": "adaptionprompt/a", "method": None, "accuracy": 60.0}]}
    rows = [{"run": m, "method": m, "rank": i + 1, "f1": v} for i, (m, v) in enumerate([("lora", 9), ("ia3", 8), ("vera", 7)])]
    same = vs_peft.part({"main_metric": "f1", "rows": rows + [{"run": "majority-class", "f1": 5}]}, ref)
    assert "the 3 methods both rank" in same and "correlation 1.00" in same and "| lora | 1 | 9.00 | 1 | 50.00 | 2 |" in same
    rev = [{**r, "f1": 10 - r["f1"]} for r in rows][::-1]
    assert "correlation -1.00" in vs_peft.part({"main_metric": "f1", "rows": rev}, ref)
    assert "fewer than 3" in vs_peft.part({"main_metric": "f1", "rows": rows[:2]}, ref)


def test_peft_bench_records_a_method_that_fails_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A method refused or failed is recorded with its reason, the others go on, and a second
    command tries neither again (a failing method must not cost every later sitting its trials)."""
    import importlib.util

    import yaml

    import peftlab.train.runner as runner
    from peftlab.errors import ConfigError

    sys.path.insert(0, str(BENCH))
    from tiny import experiment, use_shared

    use_shared()
    spec = importlib.util.spec_from_file_location("peft_bench_run", BENCH / "peft-bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "peft_bench_run", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    body = experiment("fails", [{"name": "zero-shot"}, {"name": "ia3"}], n_train=16, max_steps=2, precision="fp32")
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(body))
    real, calls = runner.run_experiment, []

    def refuse_ia3(p, store, **kw):  # noqa: ANN001, ANN202
        calls.append([e.name for e in p.cfg.methods])
        if calls[-1] == ["ia3"]:
            raise ConfigError("ia3 does not fit this model (test)")
        return real(p, store, **kw)

    monkeypatch.setattr(runner, "run_experiment", refuse_ia3)
    task = bench.Task("fails", str(tmp_path / "e.yaml"), tune=2, seeds=1)
    args = (task, tmp_path / "stores", tmp_path / "results", ["zero-shot", "ia3"], [], "inprocess")
    out = bench.run_task(*args)
    assert out["done"] == ["zero-shot"] and out["failed"] == {"ia3": "ia3 does not fit this model (test)"}
    assert calls == [["zero-shot"], ["ia3"]] and not out["complete"]
    again = bench.run_task(*args)
    assert calls == [["zero-shot"], ["ia3"]] and again["failed"] == out["failed"]


def test_peft_bench_finishes_a_method_whose_last_seed_was_stopped(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A command killed during a method's last seed leaves a row with fewer seeds than the protocol:
    the method is not done, and the next command finishes that seed instead of moving on."""
    import importlib.util

    import yaml

    from peftlab.train import runs

    sys.path.insert(0, str(BENCH))
    from tiny import experiment, use_shared

    use_shared()
    spec = importlib.util.spec_from_file_location("peft_bench_run", BENCH / "peft-bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "peft_bench_run", bench)
    spec.loader.exec_module(bench)
    body = experiment("killed", [{"name": "zero-shot"}, {"name": "ia3"}], n_train=16, max_steps=2, precision="fp32")
    body["data"]["max_validation_examples"] = 12  # tuning ranks trials on at least 10
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(body))
    real, ran = runs._execute, []

    def killed_at_the_last_seed(store, run_id, isolation):  # noqa: ANN001, ANN202
        name = store.run(run_id).name
        ran.append(name)
        if name == "ia3.s43" and ran.count(name) == 1:
            store.mark_interrupted(run_id, "the command was killed (test)")
            raise KeyboardInterrupt
        return real(store, run_id, isolation)

    monkeypatch.setattr(runs, "_execute", killed_at_the_last_seed)
    task = bench.Task("killed", str(tmp_path / "e.yaml"), tune=1, seeds=2)
    args = (task, tmp_path / "stores", tmp_path / "results", ["zero-shot", "ia3"], [], "inprocess")
    with pytest.raises(KeyboardInterrupt):  # the command stops: ia3 is not recorded as failed
        bench.run_task(*args)
    assert ran[-1] == "ia3.s43", ran
    assert "ia3" not in json.loads((tmp_path / "results" / "killed.json").read_text())["done"]
    out = bench.run_task(*args)
    assert ran.count("ia3.s43") == 2 and out["done"] == ["ia3", "zero-shot"] and out["failed"] == {}
    [row] = [r for r in out["rows"] if r["run"] == "ia3"]
    assert row["n_seeds"] == 2


def test_peft_bench_table_marks_collapsed_and_loaded_rows() -> None:
    """A row whose predictions collapsed onto one class is marked ‡ with the leaderboard's flag; a
    row timed under load † with its load: a reader sees both without opening the results file."""
    sys.path.insert(0, str(BENCH / "peft-bench"))
    from readme import table

    rows = [{"run": "lora", "rank": 1, "rank_group": 1, "macro_f1": 65.0, "recommended": True,
             "train_seconds": 27.0, "timed_under_load": 3.2},
            {"run": "osf", "rank": 2, "rank_group": 2, "macro_f1": 24.4, "train_seconds": 30.0,
             "collapsed": "predicts 'neutral' for 100% of the test examples"}]
    text = table({"main_metric": "macro_f1", "rows": rows})
    assert "| lora ★ |" in text and "| osf ‡ |" in text and "27.0 †" in text and "30.0 †" not in text
    assert "‡ its test predictions collapsed onto one class (the leaderboard's flag): osf: predicts 'neutral'" in text
    assert "lora 3.2" in text


def test_tiny_race(tmp_path: Path) -> None:
    """The exhaustive side and a race side, both ranked; the race's finalists and group 1 known."""
    r = run_tiny("race.py", tmp=tmp_path, timeout=600)
    assert r["mode"] == "tiny" and positive(r["exhaustive"]["seconds"]) and r["exhaustive"]["ranked"]
    [race] = r["races"]
    assert race["budget_seconds"] == 600 and positive(race["seconds"]) and race["finalists"]
    assert race["race_seconds"] <= 1.15 * 600 and set(race["finalists"]) <= {"lora", "ia3"}
    assert set(race["exhaustive_group1_kept"]) | set(race["exhaustive_group1_lost"]) == set(r["exhaustive"]["group1"])
