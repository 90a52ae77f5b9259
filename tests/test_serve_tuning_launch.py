"""A tuned launch from the web service (#25): what the tuner would refuse is refused at launch
with the tuner's own message (422), and a driver that fails later shows its error, whole, on
Jobs (the experiment's `driver` and /api/worker's `drivers`), even when it made no run."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, needs_shared

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from peftlab.serve.app import Settings, create_app  # noqa: E402

pytestmark = needs_shared


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PEFTLAB_MODEL_PATH", str(DATA.parent / "models"))
    monkeypatch.setenv("PEFTLAB_DATA_PATH", str(DATA))
    app = create_app(Settings(store=str(tmp_path / "store"), start_worker=False))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _body(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": "stories260k", "task": "causal-lm",
            "data": {"train": "statista/train.jsonl", "prompt": "Table: {table}\nTitle:", "target": "title",
                     "split_fractions": [0.0008, 0.1]},  # 4 validation rows carved from 5,699
            "methods": [{"name": "zero-shot"}, {"name": "lora"}], "max_steps": 2, "max_train_examples": 16,
            "max_eval_examples": 4, "training": {"max_source_length": 48, "max_target_length": 16},
            "evaluation": {"max_new_tokens": 4}, "tune": 2, **kw}


def test_a_launch_the_tuner_would_refuse_is_refused_with_its_message(client: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.serve import launch

    started: list[Any] = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: started.append(a))
    r = client.post("/api/experiments", json=_body("few-rows"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "the validation split has 4 examples; tuning ranks trials on it and needs at least 10" in detail
    assert started == [] and client.get("/api/experiments/few-rows").status_code == 404  # nothing launched
    r = client.post("/api/estimate", json=_body("few-rows"))  # the estimate says the same
    assert r.status_code == 422 and "needs at least 10" in r.json()["detail"]


def test_a_driver_that_fails_later_shows_its_error_whole(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.serve import launch

    long = "x" * 300
    script = f"import sys; print('tuning starts'); print('error: the study failed: {long} (the end)', file=sys.stderr); sys.exit(2)"
    real = launch.subprocess.Popen

    def fake(cmd: list[str], **kw: Any) -> Any:  # the driver, failing the way `peftlab run` fails
        return real([sys.executable, "-c", script], **{k: v for k, v in kw.items()})

    monkeypatch.setattr(launch.subprocess, "Popen", fake)
    body = _body("fails-later", data={**_body("")["data"], "split_fractions": [0.1, 0.1]})
    r = client.post("/api/experiments", json=body)
    assert r.status_code == 201, r.text
    deadline = time.time() + 30
    while time.time() < deadline:
        drv = client.get("/api/experiments/fails-later").json()["driver"]
        if not drv["running"] and drv.get("exit_code") is not None:
            break
        time.sleep(0.2)
    assert drv["exit_code"] == 2 and drv["error"] == f"the study failed: {long} (the end)"
    assert client.get("/api/experiments/fails-later").json()["runs"] == []
    [listed] = [d for d in client.get("/api/worker").json()["drivers"] if d["experiment"] == "fails-later"]
    assert listed["error"] == drv["error"]
    state = json.loads((Path(client.app.state.store.root) / "launch" / "fails-later.driver.json").read_text())
    assert state["exit_code"] == 2 and os.path.isfile(state["log"])


def test_the_plan_counts_every_run_the_launch_makes(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """#25's launch: 5 methods, Tune 2, Seeds 2 makes 17 runs: 4 methods x 2 trials, 4 x 2 seeds, zero-shot."""
    from peftlab.serve import launch

    class Proc:
        pid = os.getpid()

        def __init__(self, *a: Any, **k: Any) -> None:
            pass

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", Proc)
    methods = [{"name": m} for m in ("zero-shot", "full", "lora", "ia3", "prompt-tuning")]
    body = _body("planned", methods=methods, seeds=2, data={**_body("")["data"], "split_fractions": [0.1, 0.1]})
    assert client.post("/api/experiments", json=body).status_code == 201
    e = client.get("/api/experiments/planned").json()
    assert e["runs"] == [] and e["plan"]["total"] == 17  # counted before the driver made any run
    assert e["plan"]["runs"][:2] == ["full.t0", "full.t1"] and e["plan"]["runs"][-2:] == ["prompt-tuning.s42",
                                                                                           "prompt-tuning.s43"]
    assert client.get("/api/worker").json()["plans"]["planned"]["total"] == 17


def test_the_plan_names_the_runs_peftlab_run_makes(tmp_path: Path) -> None:
    from conftest import tiny_causal, write_experiment

    from peftlab.store import Store
    from peftlab.train.runner import plan, run_experiment
    from peftlab.tune.plan import load_plan

    body = tiny_causal(["zero-shot", "lora"], max_steps=2)
    body["data"]["max_validation_examples"] = 12
    body["tuning"] = {"trials": 2, "steps_per_trial": 1}
    store = Store(tmp_path / "store")
    run_experiment(plan(write_experiment(tmp_path, body), seeds=2), store, isolation="inprocess", echo=lambda *_: None)
    made = [r.name for r in store.runs("tiny")]
    assert sorted(load_plan(store.root, "tiny")["runs"]) == sorted(made) and len(made) == 5


def test_jobs_counts_the_plan_and_waits_for_the_runs_not_made_yet(tmp_path: Path) -> None:
    """jobs.js's count: 17 planned, 5 made (4 done, 1 running): '4 of 17', 12 still to make."""
    import re
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    src = (Path(__file__).parents[1] / "src/peftlab/serve/static/jobs.js").read_text(encoding="utf-8")
    fn = re.search(r"^function planCounts\(.*?^}", src, re.S | re.M)
    assert fn is not None
    runs = [{"experiment": "x", "name": f"lora.t{i}", "status": "done"} for i in range(4)]
    runs += [{"experiment": "x", "name": "lora.t4", "status": "running"},
             {"experiment": "old", "name": "a", "status": "done"}]  # no plan: its runs count
    plan = {"x": {"runs": [f"lora.t{i}" for i in range(17)]}}
    script = (fn.group(0) + f"\nconst runs = {json.dumps(runs)}, plans = {json.dumps(plan)};"
              "\nconsole.log(JSON.stringify([planCounts(runs, plans, new Set()), planCounts(runs.slice(0, 4), plans, "
              "new Set()), planCounts(runs.slice(0, 4), plans, new Set(['x']))]));")
    out = json.loads(subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout)
    assert out[0] == {"total": 18, "done": 5, "pending": 12}
    assert out[1] == {"total": 17, "done": 4, "pending": 0}  # nothing going: nothing to wait for
    assert out[2] == {"total": 17, "done": 4, "pending": 13}  # its driver runs: 13 to come


def test_the_driver_line_on_jobs_reads_as_a_terminal(tmp_path: Path) -> None:
    """The tuning driver's last line on Jobs: colours dropped, a bar redrawn in place at its last state."""
    from peftlab.serve.launch import driver_state
    from peftlab.store import Store

    store = Store(tmp_path / "store")
    (store.root / "launch").mkdir(parents=True)
    log = store.root / "launch" / "x.log"
    log.write_bytes(b"\x1b[1mtuning\x1b[0m starts\n\rtrial 1/4 [##  ]\rtrial 2/4 [####]\x1b[K\n")
    (store.root / "launch" / "x.driver.json").write_text(json.dumps({"pid": None, "log": str(log), "exit_code": 0}))
    state = driver_state(store, "x")
    assert state is not None and state["log_tail"] == ["tuning starts", "trial 2/4 [####]"]


def test_a_budget_from_the_web_form_is_a_race_and_its_estimate_shows_the_plan(client: Any) -> None:
    body = _body("raced", tune=None, budget="20m",
                 data={"train": "statista/train.jsonl", "prompt": "Table: {table}\nTitle:", "target": "title",
                       "split_fractions": [0.0035, 0.1]})  # 19 validation rows
    r = client.post("/api/experiments/yaml", json=body)
    assert r.status_code == 200, r.text
    assert "tuning:\n  budget: 20m\n" in r.json()["yaml"]
    r = client.post("/api/estimate", json=body)
    assert r.status_code == 200, r.text
    race = r.json()["race"]
    assert race.startswith("race: 1 method x ") and "within 20.0 min" in race and "rung 1" in race
    r = client.post("/api/estimate", json={**body, "budget": "20 minutes"})
    assert r.status_code == 422 and "'20 minutes' is not a duration" in r.json()["detail"]
