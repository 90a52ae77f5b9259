"""The store folder as people meet it: a file in its place, a corrupt database, read-only
media, and a store that was moved or renamed with its artifacts inside."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from peftlab.cli import main
from peftlab.errors import StoreError
from peftlab.store import Store


def _with_run(root: Path) -> tuple[Store, int]:
    store = Store(root)
    store.save_experiment("e", "causal-lm", "m", {}, None, None)
    run, _ = store.upsert_run("e", "lora", "lora", "h", {})
    d = store.run_dir("e", "lora")
    (d / "adapter").mkdir(parents=True)
    (d / "predictions.jsonl").write_text('{"input": "x", "reference": "y", "output": "y"}\n', encoding="utf-8")
    return store, run.id


def test_a_file_where_the_store_should_be(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello", encoding="utf-8")
    with pytest.raises(StoreError, match="is a file, not a store folder"):
        Store(f)
    assert main(["--store", str(f), "experiments"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_corrupt_database_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "peftlab.db").write_bytes(b"this is not sqlite at all, just bytes" * 100)
    with pytest.raises(StoreError, match="not a readable peftlab database"):
        Store(tmp_path)
    assert main(["--store", str(tmp_path), "experiments"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "restore it from a backup" in err


def test_a_read_only_store_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, rid = _with_run(tmp_path / "s")
    store.finish(rid, "done", metrics={"rougeL": 1.0}, info={"predictions": "runs/e/lora/predictions.jsonl"})
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode & os.W_OK else real(p, mode))  # tests run as root
    ro = Store(tmp_path / "s")
    assert ro.read_only and ro.find_run("e", "lora").metrics == {"rougeL": 1.0}
    with pytest.raises(StoreError, match="read-only"):
        ro.log(rid, "a write")


def test_a_moved_store_keeps_its_artifacts(tmp_path: Path) -> None:
    store, rid = _with_run(tmp_path / "old")
    d = store.run_dir("e", "lora")
    # as a store written before paths were relative: absolute paths into the old folder
    store.finish(rid, "done", info={"predictions": str(d / "predictions.jsonl"), "artifact": str(d / "adapter")})
    shutil.move(tmp_path / "old", tmp_path / "new")
    moved = Store(tmp_path / "new")
    run = moved.run(rid)
    assert run.info["predictions"] == "runs/e/lora/predictions.jsonl"  # migrated on open
    assert run.file("predictions") == tmp_path / "new" / "runs" / "e" / "lora" / "predictions.jsonl"
    assert run.file("artifact").is_dir()
    shutil.move(tmp_path / "new", tmp_path / "renamed")
    assert Store(tmp_path / "renamed").run(rid).file("predictions").is_file()
    assert json.loads((tmp_path / "renamed" / "runs" / "e" / "lora" / "predictions.jsonl").read_text())["output"] == "y"
