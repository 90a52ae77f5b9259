"""The CLI at its edges: one `error:` line and exit 2 (or a quiet exit for a closed pipe), never
a traceback, whatever the paths and the store look like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.store import Store


def _store_with_done_run(root: Path) -> Store:
    store = Store(root)
    store.save_experiment("e", "causal-lm", "m", {}, None, None)
    run, _ = store.upsert_run("e", "lora", "lora", "h", {"experiment": {}, "entry": {"name": "lora"}})
    d = store.run_dir("e", "lora")
    (d / "adapter").mkdir(parents=True)
    (d / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    store.finish(run.id, "done", metrics={"rougeL": 1.0}, info={"artifact": "runs/e/lora/adapter"})
    return store


def test_leaderboard_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    _store_with_done_run(tmp_path / "s")
    p = subprocess.Popen([sys.executable, "-m", "peftlab.cli", "--store", str(tmp_path / "s"), "methods"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before anything is written (`| head` that already left)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err


@pytest.mark.parametrize(("argv", "says"), [
    (["report", "e", "-o", "{tmp}"], "is a folder; -o names the HTML file"),
    (["export", "e", "lora", "-o", "{tmp}/file.txt"], "is a file; -o needs a folder"),
    (["export", "e", "lora", "-o", "{tmp}/s/runs/copy"], "is inside the store"),
    (["run", "{tmp}"], "is a folder; give the experiment's YAML file"),
])
def test_output_and_input_paths_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                             says: str) -> None:
    _store_with_done_run(tmp_path / "s")
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*args[:1], "--store", str(tmp_path / "s"), *args[1:]]) == 2  # --store after the subcommand
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err


def test_yaml_aliases_are_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        levels.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(levels) + "\nname: x\n", encoding="utf-8")
    assert f.stat().st_size < 600
    assert main(["--store", str(tmp_path / "s"), "run", str(f)]) == 2
    assert "YAML alias *a: experiment files may not use anchors" in capsys.readouterr().err
