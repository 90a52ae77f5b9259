"""GGUF export, checked in llama.cpp itself: a stories260k LoRA that learned to stop (its end
token trained beside it) is exported to f16 and q8_0; llama.cpp, given each test input as the
Modelfile formats it, answers as the run's adapter and its test evaluation did, and stops where
they stopped. What cannot become a GGUF is refused with the reason, before any work."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DATA, STORIES, needs_shared, write_experiment
from test_serve_browser import CHROMIUM, browser, until  # noqa: F401 - the fixture
from test_serve_worker import free_port, start_server, stop

from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.infer import gguf, gguf_tools
from peftlab.infer.modelfile import ollama_prompt
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = [needs_shared, pytest.mark.skipif(not gguf_tools.installed(), reason="the gguf extra is not installed")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp = tmp_path_factory.mktemp("gguf")
    e2e = DATA / "e2e_nlg"
    body = {"name": "stop", "model": str(STORIES), "task": "causal-lm",
            "data": {"train": str(e2e / "train.jsonl"), "validation": str(e2e / "validation.jsonl"),
                     "test": str(e2e / "test.jsonl"), "prompt": "{mr}\nDescription:", "target": "ref",
                     "max_train_examples": 640, "max_validation_examples": 8, "max_test_examples": 8},
            "methods": ["zero-shot", {"name": "lora", "r": 32, "alpha": 64, "learning_rate": 0.004,
                                      "trainable_tokens": ["eos"]}],
            "training": {"epochs": 1, "batch_size": 16, "max_source_length": 144, "max_target_length": 176,
                         "precision": "fp32", "threads": 1},
            "evaluation": {"max_new_tokens": 80, "batch_size": 8, "forgetting": False}}
    s = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), s, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    return s


def _predictions(run) -> list[dict]:  # noqa: ANN001 - a store Run
    return [json.loads(x) for x in run.file("predictions").read_text(encoding="utf-8").splitlines()]


def test_gguf_answers_and_stops_as_the_adapter(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from llama_cpp import Llama

    run = store.find_run("stop", "lora")
    out = tmp_path / "gguf"
    assert main(["export", "stop", "lora", "--gguf", "--quant", "f16,q8_0", "--probes", "8", "-o", str(out),
                 "--store", str(store.root)]) == 0
    printed = capsys.readouterr().out
    assert "f16: passed" in printed and "Modelfile" in printed
    check = json.loads((out / gguf.CHECK_FILE).read_text(encoding="utf-8"))
    f16, q8 = check["types"]
    assert f16["passed"] and f16["requires_equal_outputs"] and f16["same_outputs"] == f16["probes"] == 8
    assert q8["type"] == "q8_0" and q8["same_stops"] == 8 and not q8["requires_equal_outputs"]
    assert f16["mean_logprob_gap"] < 0.01 and q8["mean_logprob_gap"] < 0.2, (f16["mean_logprob_gap"],
                                                                               q8["mean_logprob_gap"])
    for d in f16["details"]:
        assert d["same_prompt_tokens"] and d["same_stop"], d

    preds = _predictions(run)
    stopped = [p["stopped"] for p in preds]
    assert sum(stopped) >= 5, stopped  # the check holds the GGUF to stops, not only to lengths

    # Independently of the check: the Modelfile as Ollama reads it, llama.cpp on the file, against
    # the run's own test evaluation.
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./stop-lora-f16.gguf" in modelfile and 'PARAMETER stop "</s>"' in modelfile
    assert "PARAMETER temperature 0" in modelfile and "PARAMETER num_predict 80" in modelfile
    template = re.search(r'TEMPLATE """(.*?)"""', modelfile, re.S).group(1)
    assert template == "{{ .Prompt }}\nDescription:{{ .Response }}"
    stops = re.findall(r'PARAMETER stop "(.*)"', modelfile)
    llm = Llama(model_path=str(out / "stop-lora-f16.gguf"), n_ctx=512, verbose=False)
    try:
        for p in preds:
            value = p["input"].removesuffix("\nDescription:")
            got = llm.create_completion(ollama_prompt(template, value), max_tokens=80, temperature=0.0,
                                        repeat_penalty=1.0, stop=stops)["choices"][0]
            assert got["text"].strip() == p["output"], (p["input"], got["text"], p["output"])
            assert (got["finish_reason"] == "stop") == p["stopped"], p
    finally:
        llm.close()
    assert sorted(x.name for x in out.iterdir()) == sorted([
        "Modelfile", "Modelfile.f16", "Modelfile.q8_0", gguf.CHECK_FILE, "stop-lora-f16.gguf", "stop-lora-q8_0.gguf"])


def test_what_cannot_be_a_gguf_is_refused_with_the_reason(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["export", "stop", "lora", "--gguf", "--merge", "-o", str(tmp_path / "m"),
                 "--store", str(store.root)]) != 0
    assert "--gguf merges the adapter itself" in capsys.readouterr().err
    with pytest.raises(PeftlabError, match="trains nothing"):
        gguf.export_gguf(store, store.find_run("stop", "zero-shot"), tmp_path / "a", ["f16"])
    with pytest.raises(PeftlabError, match="q3_x is not a type"):
        gguf_tools.quant_list("f16,q3_x")
    monkeypatch.setattr(gguf_tools, "supported_architectures", lambda: frozenset({"GPT2LMHeadModel"}))
    with pytest.raises(PeftlabError, match="does not support the architecture LlamaForCausalLM"):
        gguf.export_gguf(store, store.find_run("stop", "lora"), tmp_path / "b", ["f16"])
    assert not any(p.suffix == ".gguf" for p in (tmp_path / "b").rglob("*"))


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed")
def test_export_page_makes_a_checked_gguf(store: Store, browser: Any) -> None:  # noqa: F811 - the fixture
    """The Export page: the zero-shot row says why it has no GGUF; the LoRA row's "Export GGUF" runs
    the same export and check as the command line, shows the check, and offers the files."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    port = free_port()
    server = start_server(store.root, port, "--no-worker")
    base = f"http://127.0.0.1:{port}"
    try:
        d.get(f"{base}/#/export/stop")
        until(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#export-table tr[data-run="lora"] .gguf-btn'))
        zero = d.find_element(By.CSS_SELECTOR, '#export-table tr[data-run="zero-shot"]')
        assert not zero.find_elements(By.CSS_SELECTOR, ".gguf-btn:not([disabled])")
        lora = d.find_element(By.CSS_SELECTOR, '#export-table tr[data-run="lora"]')
        Select(lora.find_element(By.CSS_SELECTOR, ".gguf-type")).select_by_value("q8_0")
        lora.find_element(By.CSS_SELECTOR, ".gguf-btn").click()
        until(d, lambda drv: "GGUF check for lora" in drv.find_element(By.ID, "merge-report").text, 240)
        report = d.find_element(By.ID, "merge-report").text
        assert "passed" in report
        assert re.search(r"q8_0\s+kept\s+\d/4\s+4/4", report), report
        until(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#export-table tr[data-run="lora"] .dl-gguf'))
        files = [b.get_attribute("data-name") for b in d.find_elements(By.CSS_SELECTOR, '#export-table tr[data-run="lora"] .dl-gguf')]
        assert files == ["Modelfile", "Modelfile.q8_0", "stop-lora-q8_0.gguf"]
        with httpx.Client(base_url=base, timeout=60) as c:
            mf = c.get(f"/api/runs/{store.find_run('stop', 'lora').id}/gguf/Modelfile")
            assert mf.status_code == 200 and "FROM ./stop-lora-q8_0.gguf" in mf.text
            assert c.get(f"/api/runs/{store.find_run('stop', 'lora').id}/gguf/..%2Fpeftlab.db").status_code == 404
    finally:
        stop(server)
