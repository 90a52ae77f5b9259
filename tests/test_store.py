"""The run store: safe paths, atomic writes, and run claiming that holds across processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from peftlab.store import Store
from peftlab.store import runs as store_runs


def _experiment(store: Store, name: str = "exp") -> None:
    store.save_experiment(name, "causal-lm", "m", {"name": name}, None, None)


def _run(store: Store, name: str = "lora", config_hash: str = "h1", force: bool = False) -> store_runs.Run:
    run, _ = store.upsert_run("exp", name, "lora", config_hash, {"entry": {"name": name}}, force)
    return run


def _integrity(store: Store) -> str:
    c = sqlite3.connect(store.path)
    try:
        return c.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        c.close()


# -- paths derived from names never escape the store ------------------------------------------

@pytest.mark.parametrize("bad", ["..", "../x", "x/../../y", "a/b", "/etc", "~root", "x\n", "", ".hidden",
                                 "a" * 101, "a\\b", "a b", "ä"])
def test_run_dir_refuses_unsafe_names(tmp_path: Path, bad: str) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(ValueError, match="unsafe name"):
        store.run_dir(bad, "lora")
    with pytest.raises(ValueError, match="unsafe name"):
        store.run_dir("exp", bad)


def test_run_dir_stays_inside_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    d = store.run_dir("exp-1", "lora.r_4")
    assert d == (tmp_path / "store" / "runs" / "exp-1" / "lora.r_4").resolve()
    # A symlinked experiment folder pointing elsewhere is refused, not followed.
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "store" / "runs").mkdir(exist_ok=True)
    (tmp_path / "store" / "runs" / "linked").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes the store"):
        store.run_dir("linked", "lora")


# -- transactions ------------------------------------------------------------------------------

def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    with pytest.raises(RuntimeError), store.tx() as c:
        c.execute("UPDATE runs SET status='done' WHERE id=?", (run.id,))
        c.execute("INSERT INTO curves(run_id, step, name, value) VALUES (?,?,?,?)", (run.id, 1, "train_loss", 1.0))
        raise RuntimeError("crash in the middle")
    assert store.run(run.id).status == "queued"
    assert store.curves(run.id) == {}
    with pytest.raises(sqlite3.OperationalError):
        store.update(run.id, status="done", no_such_column=1)
    assert store.run(run.id).status == "queued"


def test_sigkill_inside_a_transaction_leaves_the_store_intact(tmp_path: Path) -> None:
    """A process killed while it holds the write lock: its half-written transaction vanishes,
    the database stays valid, and the next process can write at once."""
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    code = textwrap.dedent(f"""
        import sys, time
        from peftlab.store import Store
        s = Store({str(store.root)!r})
        with s.tx() as c:
            c.execute("UPDATE runs SET status='done', error='half' WHERE id={run.id}")
            c.execute("INSERT INTO logs(run_id, ts, level, message) VALUES ({run.id}, 0, 'info', 'half')")
            print("inside", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert _integrity(store) == "ok"
    after = store.run(run.id)
    assert after.status == "queued" and after.error is None
    assert store.logs(run.id) == []
    t0 = time.monotonic()
    store.log(run.id, "next writer")
    assert time.monotonic() - t0 < 5
    assert [lg["message"] for lg in store.logs(run.id)] == ["next writer"]


# -- runs: create, keep, reset ----------------------------------------------------------------

def test_upsert_keeps_done_runs_and_resets_changed_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    assert run.status == "queued"
    assert store.claim(run.id)
    store.log_points(run.id, 1, {"train_loss": 2.0})
    store.finish(run.id, "done", metrics={"rougeL": 0.5})

    again, reset = store.upsert_run("exp", "lora", "lora", "h1", {}, False)
    assert (again.id, again.status, again.metrics, reset) == (run.id, "done", {"rougeL": 0.5}, False)
    assert len(store.runs("exp")) == 1

    changed, reset = store.upsert_run("exp", "lora", "lora", "h2", {}, False)
    assert reset and changed.id == run.id and changed.status == "queued" and changed.metrics is None
    assert store.curves(run.id) == {}

    store.claim(run.id)
    store.finish(run.id, "done", metrics={"rougeL": 0.6})
    forced, reset = store.upsert_run("exp", "lora", "lora", "h2", {}, True)
    assert reset and forced.status == "queued"
    assert len(store.runs("exp")) == 1


def test_failed_and_interrupted_runs_are_retried_with_their_curves(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    store.claim(run.id)
    store.log_points(run.id, 10, {"train_loss": 2.0})
    store.mark_interrupted(run.id, "killed")
    assert store.run(run.id).status == "interrupted"
    again, reset = store.upsert_run("exp", "lora", "lora", "h1", {}, False)
    assert not reset and again.status == "queued" and again.error is None
    assert store.curves(run.id) == {"train_loss": [(10, 2.0)]}  # kept for the resumed run


def test_diverged_runs_are_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    store.claim(run.id)
    store.finish(run.id, "diverged", error="loss became nan at step 3", diverged_step=3)
    again, _ = store.upsert_run("exp", "lora", "lora", "h1", {}, False)
    assert again.status == "diverged" and again.diverged_step == 3


# -- claiming ----------------------------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_claim_is_exclusive_while_the_owner_lives(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    assert store.claim(run.id)
    assert not store.claim(run.id, pid=os.getpid() + 1)  # we (the owner) are alive
    # An upsert by another process leaves a live run alone, even with force.
    same, reset = store.upsert_run("exp", "lora", "lora", "h2", {}, True)
    assert not reset and same.status == "running" and same.pid == os.getpid()


def test_a_dead_owner_is_reaped_and_its_run_can_be_claimed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    live, dead = _run(store, "live"), _run(store, "dead")
    store.claim(live.id)
    store.claim(dead.id, pid=_dead_pid())
    assert store.reap_stale() == [dead.id]
    assert store.run(live.id).status == "running"
    reaped = store.run(dead.id)
    assert reaped.status == "interrupted" and "killed or crashed" in reaped.error
    assert store.claim(dead.id)
    assert store.run(dead.id).pid == os.getpid()


def test_runs_on_another_host_count_as_live_until_their_heartbeat_is_old(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _experiment(store)
    run = _run(store)
    store.claim(run.id)
    store.update(run.id, host="elsewhere", pid=1, heartbeat=time.time())
    assert store.reap_stale() == []
    assert not store.claim(run.id)
    _, reset = store.upsert_run("exp", "lora", "lora", "h2", {}, False)
    assert not reset and store.run(run.id).status == "running"
    store.update(run.id, heartbeat=time.time() - store_runs.OTHER_HOST_STALE_SECONDS - 1)
    assert store.claim(run.id)
    assert store.run(run.id).host != "elsewhere"


def test_claims_race_across_processes(tmp_path: Path) -> None:
    """Four processes race to claim the same 25 runs: each run goes to exactly one of them."""
    store = Store(tmp_path / "store")
    _experiment(store)
    ids = [_run(store, f"r{i}").id for i in range(25)]
    code = textwrap.dedent(f"""
        import json, sys
        from peftlab.store import Store
        s = Store({str(store.root)!r})
        sys.stdin.readline()  # start together
        won = [i for i in {ids!r} if s.claim(i)]
        print(json.dumps(won), flush=True)
        sys.stdin.read()  # stay alive (a live owner) until every process has claimed
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    try:
        time.sleep(1.0)  # let every process import and open the store
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        won = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            p.wait(timeout=60)
    claimed = sorted(i for w in won for i in w)
    assert claimed == sorted(ids), won
    owners = {r.id: r.pid for r in store.runs("exp")}
    for p, w in zip(procs, won, strict=True):
        assert all(owners[i] == p.pid for i in w)
    assert _integrity(store) == "ok"
