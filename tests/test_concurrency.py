"""Two `peftlab run` processes on one experiment and one store at the same time: the store
stays valid, every method runs exactly once, and both commands end well."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.store import Store

pytestmark = needs_shared


def test_two_processes_share_a_store_without_running_a_method_twice(tmp_path: Path) -> None:
    exp = tiny_causal(["lora", "ia3"], max_steps=12, checkpoint_every=4, threads=1)
    exp_path = write_experiment(tmp_path, exp)
    store_dir = tmp_path / "store"
    procs = []
    for i in range(2):
        out = open(tmp_path / f"cli{i}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed with the child
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "peftlab.cli", "--store", str(store_dir), "run", str(exp_path)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ))
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"cli{i}.log").read_text(encoding="utf-8") for i in range(2)]
    assert codes == [0, 0], "\n\n".join(x[-3000:] for x in logs)

    store = Store(store_dir)
    runs = store.runs("tiny")
    assert sorted(r.name for r in runs) == ["ia3", "lora"]
    for r in runs:
        assert r.status == "done", (r.name, r.error)
        started = [lg for lg in store.logs(r.id) if lg["message"].startswith(f"run {r.name} (")]
        assert len(started) == 1, f"{r.name} ran {len(started)} times"
        assert [s for s, _ in store.curves(r.id)["train_loss"]] == list(range(1, 13))
        assert r.metrics and "eval_loss" in r.metrics
    # Each method was started by exactly one of the two commands; the other saw it taken.
    text = "\n".join(logs)
    for name in ("lora", "ia3"):
        assert text.count(f"tiny / {name}: running") == 1, text
    assert "being run by another process" in text, text
    with sqlite3.connect(store.path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
        assert c.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 1
