"""The classification playground in a real browser (headless Chromium, as test_serve_browser):
an experiment on the real all-MiniLM-L6-v2 (zero-shot and lora, a few steps, trained in-process
before the server starts), a test example loaded with its reference, no max-new-tokens or sampling
settings for a classifier, and each run's card answering what that run answered at test time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, MINILM, write_experiment
from test_serve_browser import CHROMIUM, SHOTS, browser, not_blank, until  # noqa: F401 - the fixture
from test_serve_worker import free_port, start_server, stop

from peftlab.store import Store

pytestmark = pytest.mark.skipif(not CHROMIUM or not MINILM.is_dir(), reason="chromium or the shared models absent")


def _classification_store(tmp: Path) -> Path:
    from peftlab.train.runner import plan, run_experiment

    body = {"name": "fpb", "model": "all-minilm-l6-v2", "task": "classification",
            "data": {"train": str(DATA / "financial_phrasebank" / "train.jsonl"),
                     "validation": str(DATA / "financial_phrasebank" / "validation.jsonl"),
                     "test": str(DATA / "financial_phrasebank" / "test.jsonl"), "input": "text", "label": "label",
                     "max_train_examples": 48, "max_validation_examples": 8, "max_test_examples": 12},
            "methods": ["zero-shot", "lora"],
            "training": {"max_steps": 3, "batch_size": 16, "max_source_length": 48, "precision": "fp32", "threads": 1},
            "evaluation": {"batch_size": 12}}
    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [(r.name, r.error) for r in runs]
    return tmp / "store"


def test_classification_playground(browser: Any, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    d = browser
    shots = SHOTS or tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    store = _classification_store(tmp_path)
    port = free_port()
    server = start_server(store, port, "--no-worker")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 60) -> Any:
        return until(d, cond, timeout, 0.3)

    try:
        d.get(f"{base}/#/playground/fpb")
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-run:checked")) == 2)
        # a classifier has no max new tokens and no sampling
        for el in ("pg-max-tokens", "pg-temperature", "pg-top-p", "pg-beams"):
            assert not d.find_element(By.ID, el).is_displayed(), el
        d.find_element(By.ID, "pg-example").click()
        wait(EC.visibility_of_element_located((By.ID, "pg-reference")))
        reference = d.find_element(By.CSS_SELECTOR, "#pg-reference .out").text
        assert reference in ("positive", "negative", "neutral")
        text = d.find_element(By.ID, "pg-input").get_attribute("value")
        assert len(text) > 10
        d.find_element(By.ID, "pg-show-prompt").click()
        wait(EC.text_to_be_present_in_element((By.ID, "pg-prompt"), "[CLS]"))
        d.find_element(By.ID, "pg-go").click()
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")) == 2, 180)
        cards = {c.get_attribute("data-run"): c for c in d.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")}
        # what each run answered for this test input at test time (its predictions.jsonl)
        answered = {}
        for name in ("zero-shot", "lora"):
            with open(store / "runs" / "fpb" / name / "predictions.jsonl", encoding="utf-8") as f:
                rows = [json.loads(line) for line in f]
            answered[name] = next(r["output"] for r in rows if r["input"] == text)
        for name, card in cards.items():
            assert card.find_element(By.CSS_SELECTOR, ".out").text == answered[name], name
            assert "confidence" in card.text
        time.sleep(0.3)
        p = shots / "p-classification-playground.png"
        d.save_screenshot(str(p))
        not_blank(p)
    finally:
        stop(server)


def test_chat_playground_holds_a_conversation_with_each_run(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """A run trained on conversations: the page holds one conversation per run (its own replies in
    it), and each reply is what the API answers for that run's conversation so far."""
    import httpx
    from selenium.webdriver.common.by import By
    from test_chat_runs import _chat_experiment

    from peftlab.train.runner import plan, run_experiment

    d = browser
    body = _chat_experiment(tmp_path, "messages")
    body["methods"] = ["zero-shot", {"name": "lora", "learning_rate": 0.01}]
    body["training"]["threads"] = 1
    store = Store(tmp_path / "store")
    runs = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [(r.name, r.error) for r in runs]
    port = free_port()
    server = start_server(tmp_path / "store", port, "--no-worker")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 60) -> Any:
        return until(d, cond, timeout, 0.3)

    def turns() -> dict[str, list[list[str]]]:  # read in one script: the cards are re-rendered as replies come
        return d.execute_script(
            "const out = {}; document.querySelectorAll('.pg-conv').forEach((c) => { out[c.dataset.run] = "
            "[...c.querySelectorAll('.turn')].map((t) => [t.dataset.role, t.querySelector('.out').innerText]); });"
            " return out;")

    try:
        d.get(f"{base}/#/playground/chat-messages")
        wait(lambda drv: drv.find_element(By.ID, "pg-chat").is_displayed())
        assert not d.find_element(By.ID, "pg-inputs").is_displayed() and not d.find_element(By.ID, "pg-go").is_displayed()
        for n, message in enumerate(("Item 100: colour?", "And the shape?"), start=1):
            d.find_element(By.ID, "pg-chat-input").send_keys(message)
            d.find_element(By.ID, "pg-chat-send").click()
            wait(lambda drv, n=n: all(len(t) == 2 * n for t in turns().values()) and len(turns()) == 2, 120)
        got = turns()
        assert set(got) == {"zero-shot", "lora"}
        with httpx.Client(base_url=base) as c:
            for run, conv in got.items():
                assert [r for r, _ in conv] == ["user", "assistant", "user", "assistant"]
                assert conv[0][1] == "Item 100: colour?" and conv[2][1] == "And the shape?"
                msgs = [{"role": r, "content": t} for r, t in conv[:3]]
                r = c.post("/api/playground", json={"experiment": "chat-messages", "runs": [run], "messages": {run: msgs}})
                assert r.status_code == 200, r.text
                assert r.json()["outputs"][0]["output"] == conv[3][1], run  # its own first reply in its history
        assert "Greedy" in d.find_element(By.ID, "pg-sampling-note").text
        time.sleep(0.3)
        p = (SHOTS or tmp_path) / "p-chat-playground.png"
        d.save_screenshot(str(p))
        not_blank(p)
        d.find_element(By.ID, "pg-chat-reset").click()
        wait(lambda drv: all(not t for t in turns().values()))
    finally:
        stop(server)


def _tiny_store(tmp: Path) -> Path:
    """zero-shot and lora on stories260k (seconds), for the single-input playground."""
    from conftest import tiny_causal

    from peftlab.train.runner import plan, run_experiment

    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, tiny_causal(["zero-shot", "lora"], threads=1))), store,
                          isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [(r.name, r.error) for r in runs]
    return tmp / "store"


def test_playground_inputs_settings_reference_and_code_snippet(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """#27: an empty input and an out-of-range setting are refused in the user's words (no request
    sent); a loaded reference goes once the input changes; the snippet (openai client, curl) runs
    as shown against this server and answers what the page answered; no overflow at 390 px."""
    import os
    import subprocess
    import sys

    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    d = browser
    store = _tiny_store(tmp_path)
    port = free_port()
    server = start_server(store, port, "--no-worker")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 60) -> Any:
        return until(d, cond, timeout, 0.3)

    def error() -> str:
        el = d.find_element(By.ID, "pg-error")
        return el.text if el.is_displayed() else ""

    try:
        with httpx.Client(base_url=base, timeout=120) as c:  # the API refuses an empty input too
            r = c.post("/api/playground", json={"experiment": "tiny", "text": "  "})
            assert r.status_code == 422 and r.json()["detail"].startswith("The input is empty"), r.text
        d.get(f"{base}/#/playground/tiny")
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-run:checked")) == 2)
        d.find_element(By.ID, "pg-go").click()
        wait(lambda drv: error())
        assert error() == "Type an input first: the value of table."
        assert not d.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")
        # a test example with its reference; typing makes it another input: the reference goes
        d.find_element(By.ID, "pg-example").click()
        wait(EC.visibility_of_element_located((By.ID, "pg-reference")))
        d.find_element(By.ID, "pg-input").send_keys(" 1 Year: 2020")
        wait(lambda drv: not drv.find_element(By.ID, "pg-reference").is_displayed(), 5)
        # an out-of-range setting, named with its range
        box = d.find_element(By.ID, "pg-max-tokens")
        box.clear()
        box.send_keys("300")
        d.find_element(By.ID, "pg-go").click()
        wait(lambda drv: "Max new tokens" in error())
        assert error() == "Max new tokens must be a whole number from 1 to 256; you typed 300."
        assert "Input should be" not in error()
        box.clear()
        box.send_keys("8")
        text = "0 Year: 2018, Sales: 120"
        d.find_element(By.ID, "pg-input").clear()
        d.find_element(By.ID, "pg-input").send_keys(text)
        d.find_element(By.ID, "pg-go").click()
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")) == 2, 180)
        assert not error()
        outputs = {c.get_attribute("data-run"): c.find_element(By.CSS_SELECTOR, ".out").text
                   for c in d.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")}
        # the snippet: this server's address, a model that exists, the typed input; run as shown
        d.find_element(By.CSS_SELECTOR, "#pg-code summary").click()
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-snippet")) == 2)
        py = d.find_element(By.CSS_SELECTOR, ".pg-snippet[data-lang='python']").get_attribute("textContent")
        curl = d.find_element(By.CSS_SELECTOR, ".pg-snippet[data-lang='curl']").get_attribute("textContent")
        assert f'base_url="{base}/v1"' in py and '"tiny/zero-shot"' in py and text in py
        assert f"{base}/v1/chat/completions" in curl
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        got = subprocess.run([sys.executable, "-c", py], capture_output=True, text=True, timeout=120, env=env)
        assert got.returncode == 0, got.stderr
        assert got.stdout.rstrip("\n") == outputs["zero-shot"]
        got = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120)
        assert json.loads(got.stdout)["choices"][0]["message"]["content"] == outputs["zero-shot"], got.stdout
        # a phone's width
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1,
                                                                 "mobile": True})
        time.sleep(0.5)
        assert d.execute_script("return document.documentElement.scrollWidth") <= 390
    finally:
        stop(server)


def test_chat_with_a_system_prompt_stop_strings_streaming_and_the_token_limit(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """#27: a conversation goes through /v1/chat/completions, streamed (the reply grows chunk by
    chunk); the system prompt and the stop strings are sent; a reply cut at the token limit is
    marked (finish_reason "length"); each reply is /v1's own answer to the same request."""
    import httpx
    from selenium.webdriver.common.by import By
    from test_chat_runs import _chat_experiment

    from peftlab.train.runner import plan, run_experiment

    d = browser
    body = _chat_experiment(tmp_path, "messages")
    body["training"]["threads"] = 1
    store = Store(tmp_path / "store")
    runs = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done"], [(r.name, r.error) for r in runs]
    port = free_port()
    server = start_server(tmp_path / "store", port, "--no-worker")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 120) -> Any:
        return until(d, cond, timeout, 0.2)

    def replies() -> list[Any]:
        return d.find_elements(By.CSS_SELECTOR, ".pg-conv .turn[data-role='assistant']")

    def v1(msgs: list[dict[str, str]], **kw: Any) -> dict[str, Any]:
        with httpx.Client(base_url=base, timeout=120) as c:
            r = c.post("/v1/chat/completions", json={"model": "chat-messages/lora", "messages": msgs, "temperature": 0,
                                                     **kw})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]

    def setting(el_id: str, value: str) -> None:
        el = d.find_element(By.ID, el_id)
        el.clear()
        if value:
            el.send_keys(value)

    try:
        d.get(f"{base}/#/playground/chat-messages")
        wait(lambda drv: drv.find_element(By.ID, "pg-chat").is_displayed())
        user = "Item 100: colour?"
        # the token limit: marked as /v1's finish_reason "length" says
        setting("pg-max-tokens", "3")
        d.find_element(By.ID, "pg-chat-input").send_keys(user)
        d.find_element(By.ID, "pg-chat-send").click()
        wait(lambda drv: len(replies()) == 1)
        want = v1([{"role": "user", "content": user}], max_tokens=3)
        assert want["finish_reason"] == "length"
        reply = replies()[0]
        assert reply.find_element(By.CSS_SELECTOR, ".out").text == want["message"]["content"]
        mark = reply.find_element(By.CSS_SELECTOR, "[data-finish='length']")
        assert mark.text == "cut off: it reached the limit of 3 new tokens"
        # a system prompt and a stop string, streamed
        d.find_element(By.ID, "pg-chat-reset").click()
        setting("pg-max-tokens", "12")
        system = "Answer in one word."
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        full = v1(msgs, max_tokens=12)["message"]["content"]
        assert len(full) >= 4, full
        stop_at = full[2:4]
        cut = v1(msgs, max_tokens=12, stop=[stop_at])
        assert len(cut["message"]["content"]) < len(full)
        setting("pg-system", system)
        setting("pg-stop", stop_at)
        d.find_element(By.ID, "pg-chat-input").send_keys(user)
        d.find_element(By.ID, "pg-chat-send").click()
        wait(lambda drv: len(replies()) == 1)
        reply = replies()[0]
        assert reply.find_element(By.CSS_SELECTOR, ".out").text == (cut["message"]["content"].strip() or "(empty reply)")
        assert not reply.find_elements(By.CSS_SELECTOR, "[data-finish='length']")
        # streaming: without the stop string, the reply came in several chunks
        d.find_element(By.ID, "pg-chat-reset").click()
        setting("pg-stop", "")
        d.find_element(By.ID, "pg-chat-input").send_keys(user)
        d.find_element(By.ID, "pg-chat-send").click()
        wait(lambda drv: len(replies()) == 1)
        reply = replies()[0]
        assert reply.find_element(By.CSS_SELECTOR, ".out").text == full.strip()
        assert int(reply.get_attribute("data-chunks")) > 1
        # an out-of-range setting, in the user's words
        setting("pg-max-tokens", "0")
        d.find_element(By.ID, "pg-chat-input").send_keys("And the shape?")
        d.find_element(By.ID, "pg-chat-send").click()
        wait(lambda drv: drv.find_element(By.ID, "pg-error").is_displayed(), 10)
        assert d.find_element(By.ID, "pg-error").text == "Max new tokens must be a whole number from 1 to 256; you typed 0."
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1,
                                                                 "mobile": True})
        time.sleep(0.5)
        assert d.execute_script("return document.documentElement.scrollWidth") <= 390
    finally:
        stop(server)
