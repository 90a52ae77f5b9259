"""Nothing in from outside: host names (DNS rebinding), cross-site writes, request bodies and
decoded sizes, and every path a request can carry. No model is trained here."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from peftlab.serve.app import Settings, create_app  # noqa: E402

BASE = "http://127.0.0.1"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"table": f"t{i}", "title": f"title {i}"} for i in range(30)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"password": "hunter2", "title": "x"}\n' * 3, encoding="utf-8")
    app = create_app(Settings(store=str(tmp_path / "store"), start_worker=False, data_dirs=[str(data)], max_upload_mb=1))
    with TestClient(app, base_url=BASE) as c:
        yield {"client": c, "data": data, "secret": secret, "tmp": tmp_path}


def _exp(data: dict) -> dict:
    return {"name": "x", "model": "stories260k", "task": "causal-lm", "data": data,
            "methods": [{"name": "zero-shot"}], "max_eval_examples": 2}


@pytest.mark.parametrize("host", ["evil.example", "attacker.test:8000", "127.0.0.1.nip.io"])
def test_foreign_host_names_are_not_answered(env: dict, host: str) -> None:
    r = env["client"].get("/api/health", headers={"host": host})
    assert r.status_code == 400
    assert env["client"].get("/api/health", headers={"host": "127.0.0.1:8000"}).status_code == 200


@pytest.mark.parametrize("headers", [{"origin": "http://evil.example"}, {"origin": "http://127.0.0.1:3000"},
                                     {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                                     {"sec-fetch-site": "same-site"}])
def test_cross_site_writes_are_refused(env: dict, headers: dict) -> None:
    c = env["client"]
    files = {"file": ("d.csv", b"text,label\na,b\nc,d\n", "text/csv")}
    r = c.post("/api/datasets", files=files, headers=headers)
    assert r.status_code == 403 and "cross-site request refused" in r.json()["detail"]
    assert c.post("/api/runs/1/retry", params={"force": "true"}, headers=headers).status_code == 403
    assert c.get("/api/datasets", headers=headers).status_code == 200  # reading is not a write
    same = {"origin": BASE, "sec-fetch-site": "same-origin"}
    assert c.post("/api/datasets", files=files, headers=same).status_code == 201


@pytest.mark.parametrize(("path", "size"), [("/api/experiments", 3 * 2**20), ("/api/estimate", 60 * 2**20)])
def test_oversized_bodies_are_refused_before_parsing(env: dict, path: str, size: int) -> None:
    body = json.dumps({"name": "x" * size}).encode()
    r = env["client"].post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_a_small_parquet_that_decodes_to_a_million_rows_is_refused(env: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["x"] * 1_000_000, "label": ["a"] * 1_000_000}), buf, compression="zstd")
    assert buf.tell() < 1 * 2**20  # under the upload limit on the wire
    r = env["client"].post("/api/datasets", files={"file": ("d.parquet", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 422 and "1,000,000 rows, more than" in r.json()["detail"]


def test_every_path_field_is_confined_to_the_data_folders(env: dict) -> None:
    c, data, secret = env["client"], env["data"], env["secret"]
    link = data / "link.jsonl"
    os.symlink(secret, link)
    (data / "test.jsonl").symlink_to(secret)  # a sibling test file that points outside
    nul = str(data / "train.jsonl") + "\x00"
    cases = [("/api/datasets/from-path", {"path": str(secret)}),
             ("/api/datasets/from-path", {"path": str(link)}),
             ("/api/datasets/from-path", {"path": "../secret.jsonl"}),
             ("/api/datasets/from-path", {"path": str(data / "train.jsonl"), "validation": str(secret)}),
             ("/api/datasets/from-path", {"path": nul}),
             ("/api/estimate", _exp({"train": str(secret), "prompt": "{password}", "target": "title"})),
             ("/api/estimate", _exp({"train": "../secret.jsonl", "prompt": "{password}", "target": "title"})),
             ("/api/experiments", _exp({"train": str(data / "train.jsonl"), "test": str(link), "prompt": "{table}",
                                        "target": "title"})),
             ("/api/experiments", _exp({"train": nul, "prompt": "{table}", "target": "title"}))]
    for route, body in cases:
        r = c.post(route, json=body)
        assert r.status_code == 422, (route, body, r.status_code, r.text)
        assert "hunter2" not in r.text and "password" not in r.text.replace("{password}", "")
    ok = c.post("/api/datasets/from-path", json={"path": str(data / "train.jsonl")})
    assert ok.status_code == 201 and ok.json()["files"]["test"] is None  # the linked sibling is not picked up


def test_a_model_outside_the_model_folders_is_refused(env: dict) -> None:
    outside = env["tmp"] / "mymodel"
    outside.mkdir()
    (outside / "config.json").write_text("{}", encoding="utf-8")
    body = _exp({"train": str(env["data"] / "train.jsonl"), "prompt": "{table}", "target": "title"})
    body["model"] = str(outside)
    r = env["client"].post("/api/estimate", json=body)
    assert r.status_code == 422 and "only models inside the model folders" in r.json()["detail"]


def test_a_file_with_ten_thousand_columns_is_analysed_in_linear_time(env: dict) -> None:
    import time

    header = ",".join(f"c{i}" for i in range(10_000))
    body = (header + "\n" + "\n".join(",".join(["x"] * 10_000) for _ in range(30)) + "\n").encode()
    t0 = time.perf_counter()
    r = env["client"].post("/api/datasets", files={"file": ("wide.csv", body, "text/csv")})
    seconds = time.perf_counter() - t0
    assert r.status_code == 201, r.text
    assert seconds < 10, f"{seconds:.1f} s"  # it took 17-30 s when the column scan was quadratic
    d = env["client"].get(f"/api/datasets/{r.json()['id']}").json()
    assert len(d["analysis"]["columns"]) == 10_000


def test_a_finished_run_is_not_replaced_through_the_api_either(env: dict) -> None:
    from peftlab.store import Store

    c = env["client"]
    body = _exp({"train": str(env["data"] / "train.jsonl"), "prompt": "{table}", "target": "title"})
    assert c.post("/api/experiments", json=body).status_code == 201
    store = Store(c.app.state.store.root)
    run = store.find_run("x", "zero-shot")
    store.finish(run.id, "done", metrics={"rougeL": 3.0})
    changed = {**body, "max_eval_examples": 1}
    r = c.post("/api/experiments", json=changed)
    assert r.status_code == 409 and "would replace their results" in r.json()["detail"]
    assert store.find_run("x", "zero-shot").metrics == {"rougeL": 3.0}
    assert c.post("/api/experiments", json={**changed, "force": True}).status_code == 201
