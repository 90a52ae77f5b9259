"""One export, the same from the command line and the web service: a portable base model name
(never this machine's path), peftlab's model card (never peft's blank one), checks that name the
base portably, a classification card whose snippet loads as written, and a chat run's card that
says how its conversations were formatted."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from conftest import DATA, MINILM, STORIES, needs_shared, tiny_causal, write_experiment

from peftlab.cli import main
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


def _run(tmp: Path, body: dict) -> Store:
    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert all(r.status == "done" for r in runs), [r.error for r in runs]
    return store


def _web_zip(store: Store, run_id: int) -> zipfile.ZipFile:
    from fastapi.testclient import TestClient

    from peftlab.serve.app import Settings, create_app

    client = TestClient(create_app(Settings(store=str(store.root), start_worker=False)), base_url="http://127.0.0.1")
    r = client.get(f"/api/runs/{run_id}/adapter.zip")
    assert r.status_code == 200
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_cli_and_web_exports_are_one_export(tmp_path: Path) -> None:
    store = _run(tmp_path, tiny_causal(["lora"], max_steps=2))
    out = tmp_path / "adapter"
    assert main(["--store", str(store.root), "export", "tiny", "lora", "-o", str(out)]) == 0
    cfg = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert cfg["base_model_name_or_path"] == "stories260k"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nbase_model: stories260k\n") and "# tiny / lora" in card
    assert "[More Information Needed]" not in card and str(STORIES) not in card
    z = _web_zip(store, store.find_run("tiny", "lora").id)
    web_card = z.read(next(n for n in z.namelist() if n.endswith("/README.md"))).decode()
    assert web_card == card
    merged = tmp_path / "merged"
    assert main(["--store", str(store.root), "export", "tiny", "lora", "--merge", "-o", str(merged)]) == 0
    check = json.loads((merged / "peftlab-merge-check.json").read_text(encoding="utf-8"))
    assert check["passed"] and check["base_model"] == "stories260k"
    assert str(STORIES) not in "".join(p.read_text(encoding="utf-8", errors="replace")
                                       for p in merged.glob("*.json"))
    assert (merged / "README.md").read_text(encoding="utf-8").startswith("---\nbase_model: stories260k\n")


def test_a_classification_card_snippet_loads_as_written(tmp_path: Path) -> None:
    fpb = DATA / "financial_phrasebank"
    body = {"name": "cls", "model": str(MINILM), "task": "classification",
            "data": {"train": str(fpb / "train.jsonl"), "validation": str(fpb / "validation.jsonl"),
                     "test": str(fpb / "test.jsonl"), "input": "text", "label": "label",
                     "max_train_examples": 32, "max_validation_examples": 8, "max_test_examples": 8},
            "methods": ["lora"], "training": {"max_steps": 2, "batch_size": 8, "precision": "fp32"}}
    store = _run(tmp_path, body)
    out = tmp_path / "adapter"
    assert main(["--store", str(store.root), "export", "cls", "lora", "-o", str(out)]) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "num_labels=3" in code and "id2label=" in code
    # as written, with this machine's copy of the base model and of this folder
    code = code.replace('"all-minilm-l6-v2"', repr(str(MINILM))).replace('"path/to/this/folder"', repr(str(out)))
    scope: dict[str, Any] = {}
    exec(code, scope)  # noqa: S102 - the card's own snippet
    model = scope["model"]
    labels = store.find_run("cls", "lora").info["labels"]
    assert model.config.id2label == dict(enumerate(labels))
    assert model.base_model.model.classifier.out_features == len(labels)


def test_a_chat_run_card_says_how_conversations_were_formatted(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"Say the number {i}."},
                          {"role": "assistant", "content": f"The number is {i}."}]} for i in range(24)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    body = tiny_causal(["lora"], max_steps=2)
    body["data"] = {"train": str(data), "format": "messages", "max_train_examples": 16, "max_test_examples": 4}
    store = _run(tmp_path, body)
    out = tmp_path / "adapter"
    assert main(["--store", str(store.root), "export", "tiny", "lora", "-o", str(out)]) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    fmt = card.split("## Input format", 1)[1].split("## Training", 1)[0]
    assert "Conversations (messages rows" in fmt
    # stories260k has no chat template: the plain layout it trained with
    assert "no chat template" in fmt and "User: {message}" in fmt and "Assistant:" in fmt
