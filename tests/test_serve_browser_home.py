"""The experiments home in a real browser (headless Chromium): every experiment with its task,
model, data, status, its answer (the recommendation of `peftlab.report.recommend`, the one the
Results page shows) and its runs done of those planned (the plan, counted as Jobs counts it);
open, stop and delete from it, and deleting an experiment whose runs are still going (they are
cancelled, then the experiment is deleted in one store transaction).

The store is test_answer's experiment (written by hand, no model) and `add_busy`'s: an experiment
half-way, with a run running, one queued and a plan of five runs. `add_busy` is shared with the
Jobs and phone-width tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
from test_answer import EXP, _accurate, _config, _preds, build_store
from test_serve_browser import SHOTS, browser, not_blank, pytestmark, until  # noqa: F401 - fixtures and marks
from test_serve_worker import free_port, start_server, stop, wait_for

from peftlab.store import Store

BUSY = "busy"
PLAN = ["vera.s42", "vera.s43", "ia3.s42", "ia3.s43", "zero-shot"]
# what a worker's output holds: colours, a progress bar redrawn in place with carriage returns
RAW = ("\x1b[33mWARNING\x1b[0m some library note\n"
       "Training:  10%|#         | 1/10 [00:01<00:09]\rTraining:  50%|#####     | 5/10 [00:05<00:05]"
       "\rTraining: 100%|##########| 10/10 [00:10<00:00]\n\x1b[1mdone\x1b[0m\n")


def dead_pid() -> int:
    """A process id that has ended: a run claimed with it is running with nothing to signal."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def add_busy(store: Store) -> dict[str, int]:
    """The experiment `busy`: vera over two seeds done, ia3.s42 running (step 3 of 10), ia3.s43
    queued, zero-shot not made yet; curves with the validation metric; ia3.s42's raw output."""
    from peftlab.evaluate.metrics import classification_metrics
    from peftlab.tune.plan import plan_file

    cfg = {**_config(), "name": BUSY}
    store.save_experiment(BUSY, "classification", "all-minilm-l6-v2", cfg, None, None)
    gold = [i % 3 for i in range(60)]
    ids = {}
    for name, method, seed, status in [("vera.s42", "vera", 42, "done"), ("vera.s43", "vera", 43, "done"),
                                       ("ia3.s42", "ia3", 42, "running"), ("ia3.s43", "ia3", 43, "queued")]:
        run, _ = store.upsert_run(BUSY, name, method, name, {"variant": method, "seed": seed})
        ids[name] = run.id
        for step in (2, 4, 6):
            store.log_points(run.id, step, {"train_loss": 2.0 / step + seed / 1000, "eval_loss": 2.2 / step,
                                            "val_macro_f1": 30.0 + step * (3 if method == "vera" else 2)})
        if status == "done":
            preds = _preds(gold, _accurate(0.8, seed))
            d = store.run_dir(BUSY, name)
            d.mkdir(parents=True, exist_ok=True)
            (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
            m = classification_metrics([p["pred_id"] for p in preds], gold, ["negative", "neutral", "positive"])
            m.pop("_per_class")
            store.finish(run.id, "done", metrics=m, info={"predictions": f"runs/{BUSY}/{name}/predictions.jsonl",
                                                         "labels": ["negative", "neutral", "positive"],
                                                         "data": {"test": len(preds)}},
                         cost={"trainable_params": 200, "trainable_percent": 0.0013, "peak_memory_mb": 500,
                               "train_seconds": 12.0})
        elif status == "running":
            store.claim(run.id, dead_pid())
            store.update(run.id, progress={"phase": "train", "step": 3, "max_steps": 10, "loss": 0.71, "eta_seconds": 40})
            d = store.run_dir(BUSY, name)
            d.mkdir(parents=True, exist_ok=True)
            (d / "worker.log").write_bytes(RAW.encode())
    f = plan_file(store.root, BUSY)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"runs": PLAN, "total": len(PLAN), "at": 0}), encoding="utf-8")
    return ids


def _wait(d: Any, cond: Any, timeout: float = 60) -> Any:

    return until(d, cond, timeout)


def test_home_lists_experiments_with_their_answer_and_plan(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    store = build_store(tmp_path / "store")
    add_busy(store)
    port = free_port()
    proc = start_server(store.root, port, "--no-worker")
    base = f"http://127.0.0.1:{port}"
    try:
        d = browser
        d.get(base + "/")  # the home page is the list of experiments
        _wait(d, lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#home-table tbody tr[data-exp]")) == 2)
        rows = {r.get_attribute("data-exp"): r for r in d.find_elements(By.CSS_SELECTOR, "#home-table tbody tr[data-exp]")}
        fpb, busy = rows[EXP], rows[BUSY]
        # the answer is the recommendation's, with the leaderboard's value of its row
        lb = httpx.get(f"{base}/api/experiments/{EXP}/leaderboard").json()
        rec = lb["recommendation"]["run"]
        value = next(r for r in lb["rows"] if r["run"] == rec)["macro_f1"]
        best = fpb.find_element(By.CSS_SELECTOR, "td.best").text
        assert best.startswith(f"{rec} macro_f1 {value:.2f}"), best
        assert "classification" in fpb.text and "all-minilm-l6-v2" in fpb.text and "financial_phrasebank/train.jsonl" in fpb.text
        assert fpb.get_attribute("data-status") == "done"
        assert fpb.find_element(By.CSS_SELECTOR, "td.runs-done").text == "9 of 9"
        # half-way: runs done of the plan (zero-shot not made yet), the leader so far, Stop offered
        assert busy.get_attribute("data-status") == "running"
        assert busy.find_element(By.CSS_SELECTOR, "td.runs-done").text == "2 of 5"
        assert busy.find_element(By.CSS_SELECTOR, "td.best").text.startswith("leading so far: vera")
        assert busy.find_elements(By.CSS_SELECTOR, "button.home-stop")
        assert not fpb.find_elements(By.CSS_SELECTOR, "button.home-stop")
        png = (SHOTS or tmp_path) / "home.png"
        d.save_screenshot(str(png))
        not_blank(png)
        # Stop: its queued and running runs are cancelled
        busy.find_element(By.CSS_SELECTOR, "button.home-stop").click()
        _wait(d, lambda drv: drv.find_element(By.ID, "modal-ok").is_displayed())
        assert d.find_element(By.ID, "modal-ok").text == "Stop"
        d.find_element(By.ID, "modal-ok").click()
        wait_for(lambda: {r["status"] for r in httpx.get(f"{base}/api/runs?experiment={BUSY}").json()} == {"done", "interrupted"},
                 30, "the busy runs cancelled")
        _wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, f'tr[data-exp="{BUSY}"]').get_attribute("data-status") == "interrupted")
        # Open: the experiment's results, its name in the address
        d.find_element(By.CSS_SELECTOR, f'tr[data-exp="{EXP}"] a.button').click()
        _wait(d, lambda drv: drv.find_element(By.ID, "page-results").is_displayed())
        assert d.current_url.endswith(f"#/results/{EXP}")
        _wait(d, lambda drv: drv.find_element(By.ID, "results-exp").get_attribute("value") == EXP)
    finally:
        stop(proc)


def test_delete_an_experiment_whose_runs_are_going(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """Deleting from Results with a run running and one queued: the dialog names them and offers
    to cancel them and delete; after it the experiment and every row of it are gone, the other
    experiment is whole."""
    from selenium.webdriver.common.by import By

    store = build_store(tmp_path / "store")
    add_busy(store)
    n_fpb = len(store.runs(EXP))
    port = free_port()
    proc = start_server(store.root, port, "--no-worker")
    base = f"http://127.0.0.1:{port}"
    try:
        d = browser
        d.get(f"{base}/#/results/{BUSY}")
        _wait(d, lambda drv: drv.find_element(By.ID, "results-exp").get_attribute("value") == BUSY)
        d.find_element(By.ID, "results-delete").click()
        _wait(d, lambda drv: drv.find_element(By.ID, "modal-ok").is_displayed())
        body = d.find_element(By.ID, "modal-body").text
        assert "Its 4 runs go with it" in body
        assert "2 of them are still running or queued (ia3.s42, ia3.s43)" in body and "cancelled first" in body
        assert d.find_element(By.ID, "modal-ok").text == "Cancel the runs and delete"
        d.find_element(By.ID, "modal-ok").click()
        _wait(d, lambda drv: "Deleted busy" in drv.find_element(By.ID, "toast").text)
        names = [e["name"] for e in httpx.get(f"{base}/api/experiments").json()]
        assert names == [EXP]
        assert httpx.get(f"{base}/api/runs?experiment={BUSY}").json() == []
        assert httpx.get(f"{base}/api/experiments/{BUSY}").status_code == 404
        assert len(httpx.get(f"{base}/api/runs?experiment={EXP}").json()) == n_fpb
        assert not (store.root / "runs" / BUSY).exists()
        _wait(d, lambda drv: drv.find_element(By.ID, "results-exp").get_attribute("value") == EXP)
    finally:
        stop(proc)
