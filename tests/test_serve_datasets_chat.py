"""The Datasets API on chat data and renaming (FastAPI TestClient, small files written here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_shared

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from peftlab.serve.app import Settings, create_app  # noqa: E402

pytestmark = needs_shared


@pytest.fixture()
def client(tmp_path: Path) -> Any:
    app = create_app(Settings(store=str(tmp_path / "store"), start_worker=False))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def upload(c: Any, tmp_path: Path, filename: str, rows: list[dict[str, Any]], **form: str) -> dict[str, Any]:
    p = tmp_path / filename
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = c.post("/api/datasets", files={"file": (filename, p.read_bytes())}, data=form)
    assert r.status_code == 201, r.text
    return r.json()


def test_messages_data_is_conversations_with_truncation_counted(client: Any, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"q{i} " + "word " * (300 if i % 8 < 5 else 5)},
                          {"role": "assistant", "content": f"a{i}"}]} for i in range(32)]
    d = upload(client, tmp_path, "chat.jsonl", rows)
    assert d["mapping"]["target"] is None and d["mapping"]["input"] == []
    listed = client.get("/api/datasets").json()[0]
    assert listed["format"] == "messages" and "role, content" in listed["format_reason"]
    a = client.get(f"/api/datasets/{d['id']}").json()["analysis"]
    assert not [p for p in a["problems"] if p["kind"].startswith("no_")]  # no "no target column"
    p = client.post(f"/api/datasets/{d['id']}/preview", json={"model": "smollm2-135m-instruct-gguf",
                                                              "system_prompt": "Be brief."})
    assert p.status_code == 200, p.text
    j = p.json()
    assert j["chat"] and j["format"] == "messages" and j["truncated"] == 20 and j["counted"] == 32
    assert j["max_length"] == 256 + 64 and j["chat_template"]
    first = j["conversations"][0]
    assert first["truncated"] and first["system"] == "the setting"
    assert "Be brief." in "".join(s["text"] for s in first["segments"])
    assert [s["text"] for s in first["segments"] if s["trained"]][0].startswith("a0")
    # the system prompt is kept with the data set and goes into the experiment file
    client.put(f"/api/datasets/{d['id']}/mapping", json={"system_prompt": "Be brief."})
    y = client.post("/api/experiments/yaml", json={"name": "c", "model": "smollm2-135m-instruct-gguf",
                                                    "dataset": d["id"], "methods": [{"name": "zero-shot"}]})
    assert y.status_code == 200, y.text
    assert "system_prompt: Be brief." in y.json()["yaml"] and "target:" not in y.json()["yaml"]
    # a classification preview of chat data says what to do
    bad = client.post(f"/api/datasets/{d['id']}/preview", json={"model": "all-minilm-l6-v2", "task": "classification"})
    assert bad.status_code == 422 and "choose the task causal-lm" in bad.json()["detail"]


def test_alpaca_upload_is_not_given_a_column_guess(client: Any, tmp_path: Path) -> None:
    d = upload(client, tmp_path, "alpaca.jsonl", [{"instruction": "Say hi", "input": "", "output": "hello"}] * 20)
    assert d["mapping"]["target"] is None and d["mapping"]["input"] == []
    assert client.get("/api/datasets").json()[0]["format"] == "alpaca"


def test_rename_a_data_set_and_refuse_a_taken_name(client: Any, tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "summary": f"s{i}"} for i in range(30)]
    a = upload(client, tmp_path, "a.jsonl", rows, name="one")
    b = upload(client, tmp_path, "b.jsonl", rows)
    assert b["name"] == "b.jsonl"
    r = client.post(f"/api/datasets/{b['id']}/rename", json={"name": "one"})
    assert r.status_code == 409 and "already called 'one'" in r.json()["detail"]
    r = client.post(f"/api/datasets/{b['id']}/rename", json={"name": " two "})
    assert r.status_code == 200 and r.json()["name"] == "two"
    assert client.post(f"/api/datasets/{a['id']}/rename", json={"name": "one"}).status_code == 200  # its own name
    assert client.post("/api/datasets/nope/rename", json={"name": "x"}).status_code == 404


def test_small_test_split_and_multi_reference_rows(client: Any, tmp_path: Path) -> None:
    rows = [{"mr": f"name[The Vaults {i % 20}], eatType[pub], near[Café Adriatic]", "ref": f"text {i}", "split": "test" if i < 3 else "train"} for i in range(60)]
    d = upload(client, tmp_path, "e2e-like.jsonl", rows)
    kinds = {p["kind"]: p for p in client.get(f"/api/datasets/{d['id']}").json()["analysis"]["problems"]}
    assert "only 3 test examples" in kinds["small_test"]["message"]
    assert kinds["duplicate_inputs"]["level"] == "note" and "several references" in kinds["duplicate_inputs"]["message"]


def test_a_preview_on_a_gguf_model_does_not_dequantize_it(client: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    d = upload(client, tmp_path, "cols.jsonl", [{"text": f"t{i}", "summary": f"s{i}"} for i in range(30)])
    p = client.post(f"/api/datasets/{d['id']}/preview", json={"model": "smollm2-135m-instruct-gguf",
                                                              "mapping": {"input": ["text"], "target": "summary"}})
    assert p.status_code == 200, p.text
    assert p.json()["chat_template"] and "<|im_start|>" in p.json()["rows"][0]["prompt"]
    assert not (tmp_path / "cache" / "gguf").exists()  # the tokenizer alone: no float32 copy made


def test_a_relaunch_with_other_max_steps_keeps_zero_shot(client: Any, tmp_path: Path) -> None:
    d = upload(client, tmp_path, "cols.jsonl", [{"text": f"t{i}", "summary": f"s{i}"} for i in range(40)])
    body = {"name": "again", "model": "stories260k", "dataset": d["id"], "max_steps": 3, "max_eval_examples": 2,
            "methods": [{"name": "zero-shot"}, {"name": "lora"}]}
    assert client.post("/api/experiments", json=body).status_code == 201
    store = client.app.state.store
    for r in store.runs("again"):
        store.finish(r.id, "done")
    r = client.post("/api/experiments", json={**body, "max_steps": 5})
    assert r.status_code == 409
    assert "lora" in r.json()["detail"] and "zero-shot" not in r.json()["detail"]  # zero-shot trains nothing
    r = client.post("/api/experiments", json={**body, "max_steps": 5, "replace": True})
    assert r.status_code == 201 and r.json()["replaced"] == ["lora"] and r.json()["reused"] == ["zero-shot"]
    # a change that does reach zero-shot (how long a prompt may be) still replaces it
    r = client.post("/api/experiments", json={**body, "training": {"max_source_length": 64}})
    assert r.status_code == 409 and "zero-shot" in r.json()["detail"]
