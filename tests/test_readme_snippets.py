"""README's snippets and promises, tried as a new user would (issue 34): its library snippet runs
as written (after the quickstart, in the same folder), its `peftlab` commands name real
subcommands and options, its benchmark commands real scripts and flags, `peftlab --version`
exists, every `run` and `serve` option explains itself, and the report lands in an ignored file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_shared

from peftlab.cli import build_parser
from peftlab.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(lang: str) -> list[tuple[str, str]]:
    """(heading above it, body) of every ```lang block in README."""
    out, heading = [], ""
    for m in re.finditer(rf"^(#+ [^\n]*)$|^```{lang}\n(.*?)^```", README, re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        else:
            out.append((heading, m.group(2)))
    return out


def peftlab_commands() -> list[str]:
    """Every `peftlab ...` command in README's bash blocks (continuations joined, comments cut,
    chains split at && and |, optional parts' brackets dropped)."""
    cmds = []
    for _, body in code_blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            for part in re.split(r"&&|\|", line):
                m = re.search(r"(?:^|\s)(peftlab\s.*)$", part.strip())
                if m:
                    cmds.append(m.group(1).replace("[", "").replace("]", "").strip())
    return cmds


def test_readme_peftlab_commands_parse_with_the_real_parser() -> None:
    cmds = peftlab_commands()
    assert len(cmds) >= 30 and any(c.startswith("peftlab serve") for c in cmds)
    bad = []
    for c in cmds:
        try:
            build_parser().parse_args(shlex.split(c)[1:])
        except SystemExit as e:  # --version prints and exits 0; a refused command exits 2
            if e.code != 0:
                bad.append(c)
    assert not bad, f"README commands the CLI refuses: {bad}"


def test_the_command_check_catches_a_wrong_option() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split("run EXP.yaml --max-epochs 3"))


def test_readme_benchmark_commands_name_existing_scripts_and_flags() -> None:
    found = re.findall(r"python (benchmarks/\w+\.py)([^`\n]*)", README)
    assert len(found) >= 4
    for script, args in found:
        path = ROOT / script
        assert path.is_file(), f"README names {script}, which does not exist"
        for flag in re.findall(r"(--[a-z][a-z-]*)", args):
            assert f'"{flag}"' in path.read_text(encoding="utf-8"), f"README: {script} {flag}: no such option"


def test_version_prints_peftlab_and_library_versions(capsys: pytest.CaptureFixture[str]) -> None:
    import peftlab

    with pytest.raises(SystemExit) as e:
        cli_main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"peftlab {peftlab.__version__} (python ")
    for lib in ("torch", "transformers", "peft"):
        assert re.search(rf"\b{lib} \d", out), out


@pytest.mark.parametrize("command", ["run", "serve"])
def test_every_run_and_serve_option_has_help(command: str) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "cmd").choices[command]
    missing = [a.option_strings or [a.dest] for a in sub._actions if not (a.help or "").strip()]
    assert not missing, f"peftlab {command}: options without help: {missing}"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_reports_written_into_the_clone_are_ignored() -> None:
    """`peftlab report EXP` and `peftlab compare` write report.html / compare.html into the current
    folder: in the clone, git must not offer them for a commit."""
    defaults = {a.default for p in ("report", "compare")
                for a in next(a for a in build_parser()._actions if a.dest == "cmd").choices[p]._actions
                if a.dest == "output"}
    assert defaults == {"report.html", "compare.html"}
    for name in defaults:
        r = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT)
        assert r.returncode == 0, f"{name} in the clone is not git-ignored"


@needs_shared
def test_readme_library_snippet_runs_as_written_after_the_quickstart(tmp_path: Path) -> None:
    """The snippet, byte for byte, in a folder laid out like the clone (examples/quickstart.yaml)
    whose store already holds the quickstart's own experiment, as after README's quick start
    (its zero-shot run, on 2 test rows to keep this short)."""
    [(_, snippet)] = [(h, b) for h, b in code_blocks("python") if h == "As a library"]
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.yaml", tmp_path / "examples" / "quickstart.yaml")
    from peftlab.store import Store
    from peftlab.train.runner import plan, run_experiment

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        quick = plan("examples/quickstart.yaml", methods=["zero-shot"],
                     overrides={"data.max_test_examples": 2, "evaluation.max_new_tokens": 4})
        [done] = run_experiment(quick, Store("peftlab-store"), isolation="inprocess", echo=lambda *_: None)
    finally:
        os.chdir(cwd)
    assert done.status == "done" and done.experiment == "quickstart"

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               TQDM_DISABLE="1")
    r = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()
               if line.split() and line.split()[0] in ("zero-shot", "lora")}
    assert set(printed) == {"zero-shot", "lora"}, r.stdout[-2000:]
    assert printed["zero-shot"][0] == printed["lora"][0] == "done", r.stdout[-2000:]
    rouge, trainable = float(printed["lora"][1]), int(printed["lora"][2])
    assert 0 <= rouge <= 100 and trainable > 0 and int(printed["zero-shot"][2]) == 0


def test_the_figure_check_reads_readme_and_flags_a_figure_outside_its_noise(tmp_path: Path) -> None:
    """scripts/check-readme-figures.sh's comparison: it finds README's re-measurable figures, and a
    re-run far from one of them fails the check."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import json

    from readme_figures import compare, main, readme_figures

    old = readme_figures(README)
    assert {f"openai.{s}.gain" for s in ("one adapter", "mixed LoRA", "mixed types")} <= old.keys()
    assert any(k.startswith("speed.quick.") for k in old), "README's Speed section has no quick-mode row"
    same = {"scenarios": {s: {"batched": {"rps": old[f"openai.{s}.batched_rps"]},
                              "one at a time": {"rps": old[f"openai.{s}.one_at_a_time_rps"]},
                              "gain": old[f"openai.{s}.gain"]} for s in ("one adapter", "mixed LoRA", "mixed types")}}
    (tmp_path / "openai.json").write_text(json.dumps(same))
    assert main([str(ROOT / "README.md"), str(tmp_path)]) == 0
    far = dict(same, scenarios={**same["scenarios"], "mixed types": {**same["scenarios"]["mixed types"],
                                                                     "gain": 3 * old["openai.mixed types.gain"]}})
    (tmp_path / "openai.json").write_text(json.dumps(far))
    assert main([str(ROOT / "README.md"), str(tmp_path)]) == 1
    lines, outside = compare({"speed.quick.fp32.train_speedup": 2.0}, {"speed.quick.fp32.train_speedup": 2.5})
    assert outside == 0 and "yes" in lines[-1]


def test_ci_runs_readme_s_test_command() -> None:
    """CI (.ci/run) runs the test command README gives, with its options (CI adds -x and timings)."""
    readme = re.search(r"HF_HUB_OFFLINE=1 (python -m pytest [^\n`]*)", README)
    ci = re.search(r"^python -m pytest .*$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)
    assert readme and ci
    assert set(shlex.split(readme.group(1))) <= set(shlex.split(ci.group(0))), (readme.group(1), ci.group(0))
