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
