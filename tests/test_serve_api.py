"""The web service's REST API: every endpoint, bad input and auth (FastAPI TestClient).

One store with real finished runs (zero-shot, lora, ia3, prompt-tuning on stories260k,
trained in-process in seconds) is shared by the tests of this module.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, STORIES, needs_shared, tiny_causal, write_experiment

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from peftlab.methods import REGISTRY  # noqa: E402
from peftlab.serve.app import Settings, create_app  # noqa: E402
from peftlab.store import Store  # noqa: E402

pytestmark = needs_shared
STATISTA = DATA / "statista" / "train.jsonl"


def statista_slice(path: Path, n: int = 60) -> Path:
    with open(STATISTA, encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with experiment `tiny`: zero-shot, lora, ia3 and prompt-tuning, all done."""
    import os

    from peftlab.train.runner import plan, run_experiment

    tmp = tmp_path_factory.mktemp("serve-api")
    os.environ.setdefault("PEFTLAB_MODEL_PATH", str(DATA.parent / "models"))
    os.environ.setdefault("PEFTLAB_DATA_PATH", str(DATA))
    body = tiny_causal(["zero-shot", "lora", "ia3", {"name": "prompt-tuning", "num_virtual_tokens": 4}],
                       max_steps=4, threads=1)
    body["data"]["max_test_examples"] = 4
    body["evaluation"]["max_new_tokens"] = 6
    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done"] * 4, [(r.name, r.error) for r in runs]
    return tmp / "store"


@pytest.fixture(scope="module")
def client(trained: Path) -> Any:
    app = create_app(Settings(store=str(trained), start_worker=False, max_upload_mb=1))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def run_id(client: Any, name: str, experiment: str = "tiny") -> int:
    runs = client.get("/api/runs", params={"experiment": experiment}).json()
    return next(r["id"] for r in runs if r["name"] == name)


# -- service, schema, pages ------------------------------------------------------
def test_health_config_and_pages(client: Any) -> None:
    h = client.get("/api/health").json()
    assert h["ok"] and h["worker"]["running"] is False
    cfg = client.get("/api/config").json()
    assert cfg["auth"] is False and cfg["max_upload_mb"] == 1 and "causal-lm" in cfg["tasks"]
    page = client.get("/")
    assert page.status_code == 200 and "Playground" in page.text and "/static/app.js" in page.text
    assert "cdn" not in page.text.lower()
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "/api/playground" in js.text
    pg = client.get("/static/playground.js")
    assert pg.status_code == 200 and "/api/playground" in pg.text and "/static/playground.js" in page.text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/api/worker").json()["concurrency"] == 1


def test_openapi_covers_every_api_route(client: Any) -> None:
    from peftlab.serve.routers import ROUTERS

    schema = client.get("/openapi.json").json()
    documented = {(p, m.upper()) for p, ops in schema["paths"].items() for m in ops}
    # the app's own routes and its routers' (recent FastAPI includes a router as one lazy entry)
    every = [*client.app.routes, *(r for router in ROUTERS for r in router.routes)]
    routes = {(r.path, m) for r in every if getattr(r, "path", "").startswith("/api/")
              for m in getattr(r, "methods", ()) if m != "HEAD"}
    assert len(routes) == 49  # 42; the home overview, cancel and cancel-and-delete; data set rename and the resolved settings (issue #27); GGUF export and its files (#31)
    assert routes and routes <= documented
    for path in ("/api/datasets", "/api/experiments", "/api/runs/{run_id}/cancel", "/api/playground",
                 "/api/runs/{run_id}/export/merged", "/api/runs/{run_id}/export/gguf", "/api/estimate"):
        assert path in schema["paths"]


# -- auth ------------------------------------------------------------------------
def test_token_required_on_every_api_call(trained: Path) -> None:
    app = create_app(Settings(store=str(trained), start_worker=False, token="s3cret"))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for path in ("/api/health", "/api/experiments", "/api/runs", "/api/datasets", "/api/models"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert "Bearer" in r.json()["detail"]
        assert c.post("/api/playground", json={"experiment": "tiny", "text": "x"}).status_code == 401
        assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/health", headers={"Authorization": "s3cret"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/api/health", headers=ok).status_code == 200
        assert c.get("/").status_code == 200  # the page itself holds no data
        assert c.get("/api/config", headers=ok).json()["auth"] is True
        # downloads: a signed ticket works without the header, for that path only, and not forged
        runs = c.get("/api/runs", headers=ok, params={"experiment": "tiny"}).json()
        rid = next(r["id"] for r in runs if r["name"] == "lora")
        path = f"/api/runs/{rid}/adapter.zip"
        assert c.get(path).status_code == 401
        url = c.post("/api/tickets", headers=ok, json={"path": path}).json()["url"]
        assert c.get(url).status_code == 200
        assert c.get(url.replace("ticket=", "ticket=0")).status_code == 401
        other = f"/api/runs/{rid + 1}/adapter.zip"
        assert c.get(other + url[len(path):]).status_code == 401
        assert c.post("/api/tickets", headers=ok, json={"path": "/etc/passwd"}).status_code == 400


# -- data sets -------------------------------------------------------------------
def test_upload_jsonl_preview_counts_and_auto_split(client: Any, tmp_path: Path) -> None:
    f = statista_slice(tmp_path / "my data.jsonl", 60)
    r = client.post("/api/datasets", files={"file": ("my data.jsonl", f.read_bytes(), "application/json")},
                    data={"name": "statista-60"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["name"] == "statista-60" and d["origin"] == "upload"
    assert d["mapping"]["target"] == "title" and d["mapping"]["input"] == ["table"]
    det = client.get(f"/api/datasets/{d['id']}").json()
    a = det["analysis"]
    assert a["counts"]["train"] == 60 and a["counts"]["test"] == 6 and a["counts"]["validation"] == 6
    assert a["counts"]["train_after_split"] == 48
    assert "held" in a["split_note"] or "holds out" in a["split_note"]
    assert set(a["columns"]) >= {"id", "table", "title", "summary"}
    assert len(a["preview"]) == 10 and "__line__" not in a["preview"][0]
    assert any(p["kind"] == "too_long" for p in a["problems"])  # statista tables are long
    stored = Path(det["files"]["train"])
    assert stored.parent.parent == Path(client.app.state.store.root) / "uploads"
    assert stored.name == "my_data.jsonl"
    assert d["id"] in [x["id"] for x in client.get("/api/datasets").json()]


def test_upload_csv_reports_problems(client: Any) -> None:
    csv = "question,answer\nwhat is 1+1,2\nwhat is 2+2,\nwhat is 1+1,2\nwhat is 3+3,6\nwhat is 3+3,7\n"
    r = client.post("/api/datasets", files={"file": ("qa.csv", csv.encode(), "text/csv")})
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    r = client.put(f"/api/datasets/{ds}/mapping", json={"input": ["question"], "target": "answer"})
    assert r.status_code == 200, r.text
    kinds = {p["kind"]: p for p in r.json()["analysis"]["problems"]}
    assert kinds["empty_targets"]["count"] == 1 and kinds["empty_targets"]["lines"] == [3]
    assert kinds["duplicates"]["count"] == 1
    assert kinds["duplicate_inputs"]["count"] >= 1
    # bad mappings are refused with the columns listed
    bad = client.put(f"/api/datasets/{ds}/mapping", json={"input": ["questoin"], "target": "answer"})
    assert bad.status_code == 422 and "question" in bad.json()["detail"]
    bad = client.put(f"/api/datasets/{ds}/mapping", json={"prompt": "Q: {nope}", "target": "answer"})
    assert bad.status_code == 422 and "nope" in bad.json()["detail"]
    assert client.delete(f"/api/datasets/{ds}").status_code == 204
    assert client.get(f"/api/datasets/{ds}").status_code == 404
    assert client.delete(f"/api/datasets/{ds}").status_code == 404


def test_upload_with_split_column_is_split(client: Any) -> None:
    rows = [{"text": f"t{i}", "label": "a" if i % 2 else "b", "split": ["train", "train", "valid", "test"][i % 4]}
            for i in range(40)]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    r = client.post("/api/datasets", files={"file": ("s.jsonl", body, "application/json")})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["files"]["validation"] and d["files"]["test"]
    det = client.get(f"/api/datasets/{d['id']}").json()
    assert det["analysis"]["counts"] == {"train": 20, "validation": 10, "test": 10}
    assert "split" not in det["analysis"]["columns"]
    assert d["mapping"]["label"] == "label" and d["mapping"]["task"] == "classification"


def test_parquet_upload(client: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"src": [f"s{i}" for i in range(20)], "tgt": [f"t{i}" for i in range(20)]}), p)
    r = client.post("/api/datasets", files={"file": ("x.parquet", p.read_bytes(), "application/octet-stream")})
    assert r.status_code == 201, r.text
    assert client.get(f"/api/datasets/{r.json()['id']}").json()["analysis"]["counts"]["train"] == 20


@pytest.mark.parametrize(("name", "content", "status", "words"), [
    ("notes.txt", b"hello", 422, "unknown file type"),
    ("empty.jsonl", b"", 400, "empty"),  # nothing arrived: an HTTP-level refusal
    ("bad.jsonl", b"{not json\n[1,2]\n", 422, "no usable rows"),
    ("bad.parquet", b"PAR1 not really", 422, "Parquet"),
    ("bad.csv", b"a,a\n1,2\n", 422, "repeated column"),
])
def test_bad_uploads_refused_with_a_message(client: Any, name: str, content: bytes, status: int, words: str) -> None:
    before = len(client.get("/api/datasets").json())
    r = client.post("/api/datasets", files={"file": (name, content, "application/octet-stream")})
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["detail"].lower()
    assert "/.incoming/" not in r.json()["detail"]  # the message names the user's file, not our temp path
    assert len(client.get("/api/datasets").json()) == before
    incoming = Path(client.app.state.store.root) / "uploads" / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())


def test_upload_size_limit(client: Any) -> None:
    big = b'{"a": "' + b"x" * (1024 * 1024 + 200_000) + b'"}\n'
    r = client.post("/api/datasets", files={"file": ("big.jsonl", big, "application/json")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n\r\n"
        yield boundary
        for _ in range(20):
            yield b"y" * 100_000
        yield b"\r\n--xyz--\r\n"

    r = client.post("/api/datasets", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413


def test_file_names_never_become_paths(client: Any) -> None:
    body = b'{"q": "a", "t": "b"}\n' * 12
    r = client.post("/api/datasets", files={"file": ("../../../../tmp/evil.jsonl", body, "application/json")})
    assert r.status_code == 201, r.text
    stored = Path(r.json()["files"]["train"]).resolve()
    uploads = (Path(client.app.state.store.root) / "uploads").resolve()
    assert uploads in stored.parents and stored.name == "evil.jsonl"
    assert r.json()["name"] == "evil.jsonl"


def test_server_side_paths(client: Any) -> None:
    r = client.post("/api/datasets/from-path", json={"path": "statista/train.jsonl", "name": "statista"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["files"]["validation"].endswith("validation.jsonl") and d["files"]["test"].endswith("test.jsonl")
    assert d["origin"] == "path"
    for bad in ("/etc/passwd", "../../etc/passwd", str(STORIES / "config.json")):
        r = client.post("/api/datasets/from-path", json={"path": bad})
        assert r.status_code == 422 and "data folders" in r.json()["detail"], bad
    r = client.post("/api/datasets/from-path", json={"path": "statista/nope.jsonl"})
    assert r.status_code == 422
    files = client.get("/api/data-files").json()
    assert any(f["relative"] == "statista/train.jsonl" for f in files["files"])


# -- models, methods, estimate, experiments ------------------------------------------
def test_models_and_methods(client: Any) -> None:
    models = client.get("/api/models").json()["models"]
    st = next(m for m in models if m["name"] == "stories260k")
    assert st["params"] == 260_032
    ms = {m["name"]: m for m in client.get("/api/methods", params={"task": "image-classification"}).json()}
    assert set(ms) == set(REGISTRY)  # every method, with whether it applies to the task
    assert ms["lora"]["options"]["r"]["default"] == 16 and ms["lora"]["options"]["r"]["type"] == "int"
    assert ms["prompt-tuning"]["applicable"] is False and ms["lora"]["applicable"] is True
    assert client.get("/api/methods", params={"task": "causal-lm"}).json()[2]["learning_rate"] == 2e-4
    assert client.get("/api/methods", params={"task": "nope"}).status_code == 400


def _exp_body(ds: str, name: str, methods: list[dict] | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": "stories260k", "dataset": ds,
            "methods": methods or [{"name": "zero-shot"}, {"name": "lora", "options": {"r": 4}}, {"name": "ia3"}],
            "max_steps": 3, "max_train_examples": 16, "max_eval_examples": 4,
            "training": {"max_source_length": 48, "max_target_length": 16, "threads": 1},
            "evaluation": {"max_new_tokens": 4}, **kw}


@pytest.fixture(scope="module")
def statista_ds(client: Any) -> str:
    r = client.post("/api/datasets/from-path", json={"path": "statista/train.jsonl"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_estimate(client: Any, statista_ds: str) -> None:
    r = client.post("/api/estimate", json=_exp_body(statista_ds, "est", [
        {"name": "zero-shot"}, {"name": "full"}, {"name": "lora", "options": {"r": 4}}, {"name": "ia3"},
        {"name": "prompt-tuning"}]))
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["base_params"] == 260_032 and e["steps"] == 3 and "How" not in e["how"] and "Memory" in e["how"]
    rows = {m["name"]: m for m in e["methods"]}
    assert rows["zero-shot"]["trainable_params"] == 0 and rows["full"]["trainable_params"] == 260_032
    assert 0 < rows["ia3"]["trainable_params"] < rows["lora"]["trainable_params"] < 260_032
    assert rows["full"]["memory_mb"] > rows["lora"]["memory_mb"] > 0
    assert all(m["seconds"] and m["seconds"] > 0 for m in e["methods"])
    assert e["data"]["test"] == 4


def test_create_experiment_queues_runs_without_running(client: Any, statista_ds: str) -> None:
    r = client.post("/api/experiments", json=_exp_body(statista_ds, "queued-exp"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert [x["status"] for x in out["runs"]] == ["queued"] * 3
    assert "name: queued-exp" in out["yaml"]
    exp = client.get("/api/experiments/queued-exp").json()
    assert exp["task"] == "causal-lm" and len(exp["runs"]) == 3
    assert exp["config"]["data"]["target"] == "title" and exp["config"]["data"]["input"] == "table"
    assert "queued-exp" in [e["name"] for e in client.get("/api/experiments").json()]
    queued = client.get("/api/runs", params={"status": "queued"}).json()
    assert {x["name"] for x in queued if x["experiment"] == "queued-exp"} == {"zero-shot", "lora", "ia3"}
    # the same experiment again changes nothing (same config hash)
    again = client.post("/api/experiments", json=_exp_body(statista_ds, "queued-exp")).json()
    assert [x["id"] for x in again["runs"]] == [x["id"] for x in out["runs"]]


@pytest.mark.parametrize(("patch", "status", "words"), [
    ({"methods": [{"name": "lora", "options": {"alhpa": 4}}]}, 422, "Did you mean 'alpha'"),
    ({"methods": [{"name": "lorra"}]}, 422, "unknown method 'lorra'"),
    ({"methods": []}, 422, "methods"),
    ({"name": "bad name/.."}, 422, "letters, digits"),
    ({"model": "no-such-model-here"}, 422, "not found"),
    ({"dataset": "nope"}, 422, "dataset 'nope' not found"),
    ({"max_steps": 0}, 422, "max_steps"),
    ({"mapping": {"target": "titel"}}, 422, "Did you mean 'title'"),
    ({"task": "classification"}, 422, "label"),
])
def test_impossible_experiments_refused(client: Any, statista_ds: str, patch: dict, status: int, words: str) -> None:
    body = {**_exp_body(statista_ds, "bad-exp"), **patch}
    r = client.post("/api/experiments", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in (detail if isinstance(detail, str) else json.dumps(detail)), detail
    assert client.get("/api/experiments/bad-exp").status_code == 404


def test_method_not_applicable_is_a_4xx_with_the_reason(client: Any) -> None:
    body = {"name": "img", "model": "stories260k", "task": "image-classification",
            "data": {"train": str(DATA / "pneumoniamnist" / "train.jsonl"), "image": "image_png_b64", "label": "label"},
            "methods": [{"name": "prompt-tuning"}]}
    r = client.post("/api/experiments", json=body)
    assert r.status_code == 422 and "does not apply to task 'image-classification'" in r.json()["detail"]
    r = client.post("/api/experiments", json={**body, "dataset": "x"})
    assert r.status_code == 422 and "not both" in r.json()["detail"]


def test_image_dataset_maps_the_image_column(client: Any, tiny_vit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the service takes models from the model folders only: make the tiny ViT's one of them
    monkeypatch.setenv("PEFTLAB_MODEL_PATH", f"{os.environ['PEFTLAB_MODEL_PATH']}{os.pathsep}{tiny_vit.parent}")
    with open(DATA / "pneumoniamnist" / "train.jsonl", encoding="utf-8") as f:
        body = "".join(next(f) for _ in range(40)).encode()
    r = client.post("/api/datasets", files={"file": ("xray.jsonl", body, "application/json")})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["mapping"]["task"] == "image-classification"
    assert d["mapping"]["image"] == "image_png_b64" and d["mapping"]["label"] == "label"
    exp = {"name": "xray", "model": str(tiny_vit), "task": "image-classification", "dataset": d["id"],
           "methods": [{"name": "prompt-tuning"}]}
    r = client.post("/api/experiments", json=exp)
    assert r.status_code == 422 and "does not apply" in r.json()["detail"]
    r = client.post("/api/experiments", json={**exp, "methods": [{"name": "zero-shot"}, {"name": "lora"}],
                                              "max_steps": 2})
    assert r.status_code == 201, r.text
    cfg = client.get("/api/experiments/xray").json()["config"]["data"]
    assert cfg["image"] == "image_png_b64" and cfg["label"] == "label" and cfg["input"] is None


# -- jobs ------------------------------------------------------------------------
def test_cancel_and_retry(client: Any, statista_ds: str) -> None:
    out = client.post("/api/experiments", json=_exp_body(statista_ds, "cancel-exp")).json()
    rid = out["runs"][1]["id"]
    r = client.post(f"/api/runs/{rid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "interrupted" and "cancelled" in r.json()["error"]
    assert client.post(f"/api/runs/{rid}/cancel").status_code == 409
    r = client.post(f"/api/runs/{rid}/retry")
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["error"] is None
    logs = client.get(f"/api/runs/{rid}/logs").json()
    assert [x["message"] for x in logs["logs"]][-2:] == ["cancelled by the user (it had not started)",
                                                        "retry requested: queued again, resumes from the last checkpoint"]
    assert client.post(f"/api/runs/{rid}/retry").status_code == 409  # queued: nothing to retry
    done = run_id(client, "zero-shot")
    r = client.post(f"/api/runs/{done}/retry")
    assert r.status_code == 409 and "results are kept" in r.json()["detail"]
    assert client.post(f"/api/runs/{done}/cancel").status_code == 409
    for path in ("/api/runs/99999", "/api/runs/99999/logs", "/api/runs/99999/curves", "/api/runs/99999/export"):
        assert client.get(path).status_code == 404
    assert client.post("/api/runs/99999/cancel").status_code == 404
    assert client.post("/api/runs/99999/retry").status_code == 404
    # failed runs restart afresh; a done run is never reset by a retry, force or not
    store = Store(client.app.state.store.root)
    store.finish(rid, "failed", error="boom")
    r = client.post(f"/api/runs/{rid}/retry")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    store.finish(rid, "done", metrics={"rougeL": 12.5})
    assert client.post(f"/api/runs/{rid}/retry", params={"force": "true"}).status_code == 409
    assert store.run(rid).status == "done" and store.run(rid).metrics == {"rougeL": 12.5}


def test_run_detail_logs_and_curves(client: Any) -> None:
    rid = run_id(client, "lora")
    r = client.get(f"/api/runs/{rid}").json()
    assert r["status"] == "done" and r["progress"]["phase"] == "done" and r["resolved"]["method"] == "lora"
    logs = client.get(f"/api/runs/{rid}/logs").json()
    assert any("finished" in x["message"] for x in logs["logs"])
    curves = client.get(f"/api/runs/{rid}/curves").json()
    assert curves["train_loss"] and curves["train_loss"][0][0] >= 1
    assert client.get(f"/api/runs/{rid}/logs", params={"tail": 0}).status_code == 422


# -- results ---------------------------------------------------------------------
def test_leaderboard_recommendation_outputs_curves(client: Any) -> None:
    lb = client.get("/api/experiments/tiny/leaderboard").json()
    assert lb["main_metric"] == "rougeL" and {r["run"] for r in lb["rows"]} == {"zero-shot", "lora", "ia3",
                                                                              "prompt-tuning"}
    rec = lb["recommendation"]
    assert rec["final"] is True and rec["text"] and rec["pending"] == []
    # tiny runs on 8 test rows: nothing clears the floor; the answer says so and names no run
    assert rec["run"] is None or rec["run"] in {r["run"] for r in lb["rows"]}
    assert rec["headline"].startswith(("Recommendation", "No recommendation"))
    outs = client.get("/api/experiments/tiny/outputs", params={"limit": 3}).json()
    assert len(outs["rows"]) == 3 and set(outs["runs"]) == {"zero-shot", "lora", "ia3", "prompt-tuning"}
    assert outs["rows"][0]["input"].startswith("Table: ") and outs["rows"][0]["reference"]
    cv = client.get("/api/experiments/tiny/curves").json()["curves"]
    assert set(cv) == {"lora", "ia3", "prompt-tuning"} and "train_loss" in cv["lora"]
    for path in ("leaderboard", "outputs", "curves"):
        assert client.get(f"/api/experiments/nope/{path}").status_code == 404
    assert client.get("/api/experiments/nope").status_code == 404


def test_results_page_is_the_html_report(client: Any) -> None:
    r = client.get("/api/experiments/tiny/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for section in ("recommendation", "leaderboard", "curves", "outputs"):
        assert f'<section id="{section}">' in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # self-contained
    lb = client.get("/api/experiments/tiny/leaderboard").json()
    assert lb["recommendation"]["source"] == "peftlab.report.recommend"
    assert lb["recommendation"]["run"] in {None, "lora", "ia3", "prompt-tuning"}  # never the floor itself
    assert lb["recommendation"]["html"].startswith('<p class="headline">')
    # cached until a run changes, then rendered again
    from peftlab.serve.routers import results

    fp = lb["fingerprint"]
    assert client.get("/api/experiments/tiny/leaderboard").json()["fingerprint"] == fp
    assert client.get("/api/experiments/nope/report.html").status_code == 404
    assert results.fingerprint(client.app.state.store, "tiny") == fp


# -- playground ------------------------------------------------------------------
def test_playground_one_base_model_adapters_switched(client: Any, trained: Path) -> None:
    pg = client.app.state.playground
    runs = client.get("/api/playground/tiny/runs").json()["runs"]
    assert all(r["available"] for r in runs)
    text = "0 Year: 2018, Sales in million euros: 120"
    r = client.post("/api/playground", json={"experiment": "tiny", "text": text, "max_new_tokens": 32,
                                             "runs": ["zero-shot", "lora", "ia3", "prompt-tuning"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["input"] == f"Table: {text}\nTitle:"
    assert [o["run"] for o in out["outputs"]] == ["zero-shot", "lora", "ia3", "prompt-tuning"]
    first = {o["run"]: o["output"] for o in out["outputs"]}
    assert len(set(first.values())) > 1, first  # the adapters do change the output
    # a second request in another order: same outputs, still one base model
    r2 = client.post("/api/playground", json={"experiment": "tiny", "text": text, "max_new_tokens": 32,
                                              "runs": ["ia3", "prompt-tuning", "zero-shot", "lora"]}).json()
    assert {o["run"]: o["output"] for o in r2["outputs"]} == first
    assert pg.base_loads == 1 and r2["base_model_loads"] == 1 and pg.switches >= 2
    # each output equals a fresh, separately loaded model with that adapter
    from peft import PeftModel

    from peftlab.infer.loading import example, load_base
    from peftlab.models.trained import run_config
    from peftlab.tasks.build import build_task

    store = Store(trained)
    for name in ("zero-shot", "lora", "ia3", "prompt-tuning"):
        run = store.find_run("tiny", name)
        cfg, _, base = run_config(run)
        model, tok, _ = load_base(cfg, base, None)
        if name != "zero-shot":
            model = PeftModel.from_pretrained(model, str(run.file("artifact")))
        cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"max_new_tokens": 32})})
        pred = build_task(cfg, tok, None, None).predict(model, [example(out["input"])])[0]
        assert pred.output == first[name], name
    # and the zero-shot output is the base model's, whatever adapter type is loaded
    st = client.get("/api/playground/tiny/runs").json()["status"]
    assert st["loaded"] and st["base_model_loads"] == 1


def test_playground_errors(client: Any) -> None:
    assert client.post("/api/playground", json={"experiment": "tiny"}).status_code == 422
    r = client.post("/api/playground", json={"experiment": "tiny", "text": "x", "runs": ["nope"]})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = client.post("/api/playground", json={"experiment": "queued-exp", "text": "x", "runs": ["lora"]})
    assert r.status_code in (404, 422)
    assert client.post("/api/playground", json={"experiment": "nope", "text": "x"}).status_code == 404
    r = client.post("/api/playground", json={"experiment": "tiny", "text": "x", "max_new_tokens": 10_000})
    assert r.status_code == 422
    assert client.get("/api/playground/nope/runs").status_code == 404


# -- export ----------------------------------------------------------------------
def test_adapter_zip(client: Any) -> None:
    rid = run_id(client, "lora")
    st = client.get(f"/api/runs/{rid}/export").json()
    assert st["adapter"]["available"] and st["merged"]["state"] == "none"
    r = client.get(f"/api/runs/{rid}/adapter.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "tiny-lora-adapter/adapter_config.json" in names
    assert any(n.endswith("adapter_model.safetensors") for n in names)
    zs = client.get(f"/api/runs/{run_id(client, 'zero-shot')}/export").json()
    assert zs["adapter"]["available"] is False and "no adapter" in zs["adapter"]["why"]
    r = client.get(f"/api/runs/{run_id(client, 'zero-shot')}/adapter.zip")
    assert r.status_code == 422


def test_merged_export_is_checked_before_offered(client: Any) -> None:
    rid = run_id(client, "ia3")
    assert client.get(f"/api/runs/{rid}/merged.zip").status_code == 409
    r = client.post(f"/api/runs/{rid}/export/merged", json={})
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["state"] == "passed" and m["check"]["same_greedy_outputs"] is True
    assert m["check"]["max_abs_logit_diff"] <= m["check"]["tolerance"] and m["check"]["probes"] == 4
    z = client.get(m["url"])
    assert z.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert "tiny-ia3-merged/config.json" in names and "tiny-ia3-merged/peftlab-merge-check.json" in names
    assert not any("adapter_config" in n for n in names)
    assert client.get(f"/api/runs/{rid}/export").json()["merged"]["state"] == "passed"
    # prompt learning cannot merge: refused with the reason
    r = client.post(f"/api/runs/{run_id(client, 'prompt-tuning')}/export/merged", json={})
    assert r.status_code == 422 and "cannot be merged" in r.json()["detail"]


def test_merged_check_can_fail(client: Any, trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.infer import export

    store = Store(trained)
    run = store.find_run("tiny", "lora")
    monkeypatch.setattr(export, "ATOL", -1.0)  # an impossible tolerance: the check must fail and keep nothing
    monkeypatch.setattr(export, "RTOL", 0.0)
    out = trained.parent / "failed-merge"
    with pytest.raises(export.PeftlabError, match="merge check failed"):
        export.merge(store, run, out, atol=-1.0, rtol=0.0)
    assert [p.name for p in out.iterdir()] == [export.CHECK_FILE]
    assert json.loads((out / export.CHECK_FILE).read_text())["passed"] is False


def test_cli_export(trained: Path, tmp_path: Path) -> None:
    from peftlab.cli import main

    assert main(["--store", str(trained), "export", "tiny", "lora", "--merge", "-o", str(tmp_path / "m")]) == 0
    check = json.loads((tmp_path / "m" / "peftlab-merge-check.json").read_text())
    assert check["passed"] and (tmp_path / "m" / "config.json").is_file()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "m")  # loads with plain transformers
    assert main(["--store", str(trained), "export", "tiny", "ia3", "-o", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "adapter_config.json").is_file()
    assert main(["--store", str(trained), "export", "tiny", "prompt-tuning", "--merge", "-o",
                 str(tmp_path / "p")]) == 2
    assert main(["--store", str(trained), "export", "tiny", "nope", "-o", str(tmp_path / "n")]) == 2
    assert main(["--store", str(trained), "export", "tiny", "lora", "--merge", "-o", str(tmp_path / "m")]) == 2


# -- what the pages need (preview, model fit, launch outcomes, manage, export card) ----
def test_preview_shows_rows_as_the_model_sees_them(client: Any, statista_ds: str) -> None:
    template = "Write the title of this table:\n{table}"
    r = client.post(f"/api/datasets/{statista_ds}/preview", json={
        "model": "stories260k", "task": "causal-lm", "rows": 2, "max_source_length": 64, "max_target_length": 32,
        "mapping": {"prompt": template, "target": "title"}})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["used"] == "template" and p["chat_template"] is False and len(p["rows"]) == 2 and not p["notes"]
    row = p["rows"][0]
    assert row["source"].startswith("Write the title of this table:\n0 ")  # a real line break, not "\\n"
    assert row["prompt"].startswith("<s> Write the title") or row["prompt"].startswith("<s>Write the title")
    assert row["prompt_tokens"] == 64 and row["truncated"] is True  # statista tables are longer than 64 tokens
    assert row["target"].endswith("</s>") and 0 < row["target_tokens"] <= 32
    # a typed backslash-n is said, and the input columns are used when there is no template
    r = client.post(f"/api/datasets/{statista_ds}/preview", json={
        "model": "stories260k", "task": "causal-lm", "rows": 1, "mapping": {"prompt": "T:\\n{table}", "target": "title"}})
    assert r.status_code == 200 and "backslash" in r.json()["notes"][0]
    r = client.post(f"/api/datasets/{statista_ds}/preview", json={
        "model": "stories260k", "task": "causal-lm", "rows": 1, "mapping": {"input": ["table"], "target": "title"}})
    assert r.status_code == 200 and r.json()["used"] == "input columns"
    assert r.json()["rows"][0]["source"].startswith("0 Year")
    # an encoder cannot do causal-lm: said by what it is, in the preview, the estimate and the launch
    r = client.post(f"/api/datasets/{statista_ds}/preview", json={"model": "all-minilm-l6-v2", "task": "causal-lm"})
    assert r.status_code == 422
    assert "all-minilm-l6-v2 is an encoder (BertModel); causal-lm needs a decoder model" in r.json()["detail"]
    for path in ("/api/estimate", "/api/experiments"):
        r = client.post(path, json={**_exp_body(statista_ds, "enc-exp"), "model": "all-minilm-l6-v2"})
        assert r.status_code == 422 and "is an encoder (BertModel)" in r.json()["detail"], (path, r.text)
    assert client.get("/api/experiments/enc-exp").status_code == 404


def test_models_say_what_they_are_and_which_tasks_they_fit(client: Any) -> None:
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models["stories260k"]["kind"] == "decoder" and "causal-lm" in models["stories260k"]["tasks"]
    enc = models["all-minilm-l6-v2"]
    assert enc["kind"] == "encoder" and enc["architecture"] == "BertModel" and enc["tasks"] == ["classification"]
    assert "causal-lm needs a decoder" in enc["unfit"]["causal-lm"]
    assert "seq2seq needs an encoder-decoder" in enc["unfit"]["seq2seq"]
    ms = client.get("/api/methods", params={"task": "causal-lm"}).json()
    assert all(m["color"].startswith("#") for m in ms)
    assert {m["name"]: m["mergeable"] for m in ms}["prompt-tuning"] is False


def test_launch_says_which_runs_were_queued_and_which_reused(client: Any, statista_ds: str) -> None:
    first = client.post("/api/experiments", json=_exp_body(statista_ds, "relaunch")).json()
    assert first["queued"] == ["zero-shot", "lora", "ia3"] and first["reused"] == []
    store = client.app.state.store
    for name in ("zero-shot", "lora"):
        store.finish(store.find_run("relaunch", name).id, "done", metrics={"rougeL": 1.0})
    again = client.post("/api/experiments", json=_exp_body(statista_ds, "relaunch")).json()
    assert again["reused"] == ["zero-shot", "lora"] and again["requeued"] == ["ia3"] and again["queued"] == []
    assert {r["name"]: r["action"] for r in again["runs"]} == {"zero-shot": "reused", "lora": "reused",
                                                               "ia3": "requeued"}
    # other settings would replace finished results: refused unless confirmed
    changed = _exp_body(statista_ds, "relaunch", max_steps=5)
    r = client.post("/api/experiments", json=changed)
    # (zero-shot trains nothing: other max steps do not change it, issue #27)
    assert r.status_code == 409 and "settings: lora." in r.json()["detail"] and "replace" in r.json()["detail"]
    assert store.find_run("relaunch", "lora").status == "done"
    r = client.post("/api/experiments", json={**changed, "replace": True})
    assert r.status_code == 201 and r.json()["replaced"] == ["lora"] and r.json()["reused"] == ["zero-shot"]
    # seeds: one run per seed for the methods that train, one zero-shot
    r = client.post("/api/experiments", json=_exp_body(statista_ds, "seeded", seeds=2, seed=7))
    assert r.status_code == 201, r.text
    assert r.json()["queued"] == ["zero-shot", "lora.s7", "lora.s8", "ia3.s7", "ia3.s8"]
    e = client.get("/api/experiments/seeded").json()
    assert e["config"]["seeds"] == [7, 8] and e["config"]["training"]["seed"] == 7


def test_yaml_estimate_with_seeds_and_tuning_driver(client: Any, statista_ds: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    body = _exp_body(statista_ds, "tuned", tune=2, seeds=2)
    y = client.post("/api/experiments/yaml", json=body).json()
    assert "trials: 2" in y["yaml"] and "seeds:" in y["yaml"] and y["cli"].endswith("run tuned.yaml")
    assert client.get("/api/experiments/tuned").status_code == 404  # nothing recorded
    e = client.post("/api/estimate", json={**body, "max_validation_examples": 10}).json()
    plan = {r["run"]: r for r in e["plan"]["rows"]}
    assert plan["lora"]["trials"] == 2 and plan["lora"]["final_runs"] == 2 and plan["zero-shot"]["trials"] == 0
    assert e["plan"]["runs"] == 2 + 2 + 2 + 2 + 1 and e["plan"]["seconds"] > 0
    # a tuned launch starts `peftlab run` on a file written under the store (the tuner asks for trials)
    from peftlab.serve import launch

    started: list[list[str]] = []

    class FakeProc:
        pid = os.getpid()

        def __init__(self, cmd: list[str], **kw: Any) -> None:
            started.append(cmd)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", FakeProc)
    r = client.post("/api/experiments", json={**body, "max_validation_examples": 10})
    assert r.status_code == 201, r.text
    drv = r.json()["driver"]
    assert started[0][1:4] == ["-m", "peftlab.cli", "--store"] and started[0][5] == "run"
    written = Path(started[0][6])
    assert written.parent == Path(client.app.state.store.root) / "launch" and "trials: 2" in written.read_text()
    assert drv["pid"] == os.getpid() and Path(drv["log"]).parent == written.parent
    assert client.get("/api/experiments/tuned").json()["driver"]["yaml"] == str(written)


def test_delete_and_rename(client: Any, statista_ds: str) -> None:
    store = client.app.state.store
    out = client.post("/api/experiments", json=_exp_body(statista_ds, "to-manage")).json()
    ids = [r["id"] for r in out["runs"]]
    r = client.delete("/api/experiments/to-manage")
    assert r.status_code == 409 and "cancel them first" in r.json()["detail"]
    for rid in ids:
        client.post(f"/api/runs/{rid}/cancel")
    lora_dir = store.run_dir("to-manage", "lora")
    lora_dir.mkdir(parents=True, exist_ok=True)
    (lora_dir / "predictions.jsonl").write_text("{}\n")
    store.update(ids[1], info={"predictions": "runs/to-manage/lora/predictions.jsonl"})
    before = store.run(ids[1]).config_hash
    r = client.post("/api/experiments/to-manage/rename", json={"name": "managed"})
    assert r.status_code == 200, r.text
    assert client.get("/api/experiments/to-manage").status_code == 404
    e = client.get("/api/experiments/managed").json()
    assert [x["id"] for x in e["runs"]] == ids and e["config"]["name"] == "managed" and "name: managed" in e["yaml"]
    run = store.run(ids[1])
    assert run.experiment == "managed" and run.config["experiment"]["name"] == "managed"
    assert run.file("predictions").is_file() and not lora_dir.exists() and run.config_hash != before
    # the renamed runs are the runs that experiment makes (same hash as a launch under the new name)
    again = client.post("/api/experiments", json=_exp_body(statista_ds, "managed")).json()
    assert [x["id"] for x in again["runs"]] == ids and again["queued"] == []
    for rid in ids:
        client.post(f"/api/runs/{rid}/cancel")
    assert client.post("/api/experiments/managed/rename", json={"name": "tiny"}).status_code == 409
    assert client.post("/api/experiments/managed/rename", json={"name": "bad/name"}).status_code == 422
    # delete one run, then the experiment: rows, curves, logs and folders go
    assert client.delete(f"/api/runs/{ids[0]}").status_code == 200
    assert client.get(f"/api/runs/{ids[0]}").status_code == 404
    r = client.delete("/api/experiments/managed")
    assert r.status_code == 200 and r.json()["runs"] == 2
    assert client.get("/api/experiments/managed").status_code == 404 and not store.run_dir("managed", "lora").exists()
    assert client.delete("/api/experiments/managed").status_code == 404
    assert client.delete("/api/runs/99999").status_code == 404


def test_retry_clears_the_previous_attempts_progress(client: Any, statista_ds: str) -> None:
    out = client.post("/api/experiments", json=_exp_body(statista_ds, "retry-progress")).json()
    rid = out["runs"][1]["id"]
    client.post(f"/api/runs/{rid}/cancel")
    client.app.state.store.update(rid, progress={"phase": "train", "step": 2, "max_steps": 3, "loss": 4.2,
                                                 "eta_seconds": 12.0})
    r = client.post(f"/api/runs/{rid}/retry").json()
    assert r["status"] == "queued" and r["progress"] == {}


def test_server_side_data_sets_are_named_after_their_folder(client: Any) -> None:
    r = client.post("/api/datasets/from-path", json={"path": "e2e_nlg/train.jsonl"})
    assert r.status_code == 201 and r.json()["name"] == "e2e_nlg"
    r = client.post("/api/datasets/from-path", json={"path": "e2e_nlg/train.jsonl", "name": "mine"})
    assert r.json()["name"] == "mine"


def test_playground_helpers_example_and_formatted_prompt(client: Any) -> None:
    ex = client.get("/api/experiments/tiny/example", params={"index": 1}).json()
    assert ex["columns"] == ["table"] and ex["text"] and ex["inputs"] == {"table": ex["text"]}
    assert ex["source"] == f"Table: {ex['text']}\nTitle:" and ex["reference"]
    assert set(ex["outputs"]) == {"zero-shot", "lora", "ia3", "prompt-tuning"}
    assert client.get("/api/experiments/tiny/example", params={"index": 999}).status_code == 404
    f = client.post("/api/experiments/tiny/format", json={"text": "0 Year: 2019, Sales: 12"}).json()
    assert f["prompt"].replace("<s> ", "<s>") == "<s>Table: 0 Year: 2019, Sales: 12\nTitle:"
    assert f["prompt_tokens"] > 5 and f["chat_template"] is False
    assert client.post("/api/experiments/tiny/format", json={}).status_code == 422


def test_export_card_portable_base_and_merge_trait(client: Any) -> None:
    ex = client.get("/api/experiments/tiny/exports").json()
    assert ex["recommended"] in {None, "lora", "ia3", "prompt-tuning"}
    states = {s["run"]: s for s in ex["runs"]}
    assert states["prompt-tuning"]["mergeable"] is False and "virtual tokens" in states["prompt-tuning"]["merge_why"]
    assert states["lora"]["mergeable"] is True and states["zero-shot"]["mergeable"] is False
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{run_id(client, 'lora')}/adapter.zip").content))
    cfg = json.loads(z.read("tiny-lora-adapter/adapter_config.json"))
    assert cfg["base_model_name_or_path"] == "stories260k"
    card = z.read("tiny-lora-adapter/README.md").decode()
    assert card.startswith("---\nbase_model: stories260k\n") and "# tiny / lora" in card
    assert "rougeL (main)" in card and "Table: {table}\nTitle:" in card and "PeftModel.from_pretrained" in card
    assert "[More Information Needed]" not in card
    r = client.post(f"/api/runs/{run_id(client, 'prompt-tuning')}/export/merged", json={})
    assert r.status_code == 422 and "cannot be merged" in r.json()["detail"]


def test_compare_report_and_bertscore_in_the_web_report(client: Any) -> None:
    r = client.get("/api/compare/report.html", params={"experiments": "tiny"})
    assert r.status_code == 200 and '<section id="leaderboard">' in r.text
    assert client.get("/api/compare/report.html", params={"experiments": "tiny,nope"}).status_code == 404
    page = client.get("/api/experiments/tiny/report.html").text
    assert "bertscore_f1" in page  # computed once per run with the local encoder, as `peftlab report` does
    rows = client.get("/api/experiments/tiny/leaderboard").json()["rows"]
    assert all(isinstance(x.get("bertscore_f1"), float) for x in rows)
    lb = client.get("/api/experiments/tiny/leaderboard", params={"max_trainable_percent": 0.001}).json()
    assert "No budget given" not in lb["recommendation"]["text"]
    assert "your budget (trainable parameters ≤ 0.001%)" in lb["recommendation"]["text"]
    page = client.get("/api/experiments/tiny/report.html", params={"max_memory_mb": 1}).text
    assert "peak memory ≤ 1 MB" in page


def test_a_one_row_file_is_not_called_problem_free(client: Any) -> None:
    r = client.post("/api/datasets", files={"file": ("one.jsonl", b'{"question": "what?", "answer": "this"}\n',
                                                     "application/json")})
    assert r.status_code == 201, r.text
    a = client.get(f"/api/datasets/{r.json()['id']}").json()["analysis"]
    kinds = {p["kind"]: p["message"] for p in a["problems"]}
    assert a["counts"]["train_after_split"] == 0 and "too few to split" in kinds["too_few_rows"]
    rows = "".join(json.dumps({"text": f"sentence {i}", "x": i % 2}) + "\n" for i in range(30)).encode()
    r = client.post("/api/datasets", files={"file": ("few.jsonl", rows, "application/json")})
    kinds = {p["kind"]: p["message"] for p in client.get(f"/api/datasets/{r.json()['id']}").json()["analysis"]["problems"]}
    assert "only 24 training examples after the split" in kinds["tiny_train"]
