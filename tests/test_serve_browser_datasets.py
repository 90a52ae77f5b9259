"""The Datasets and New experiment pages in a real browser (headless Chromium), on small local
files written by the tests: chat data read as conversations (format, why, the chat template's
rendering with the trained replies marked, truncation, the system prompt), renaming a data
set, a fresh New experiment form, the method picker, the resolved settings, and no horizontal
overflow at 390 px."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_browser import CHROMIUM, browser, pytestmark  # noqa: F401 - fixtures and marks
from test_serve_worker import free_port, start_server, stop

SMOLLM = "smollm2-135m-instruct-gguf"


def chat_rows(n: int = 32, long_every: int = 8, long_first: int = 5) -> list[dict[str, Any]]:
    """n conversations; of every `long_every`, the first `long_first` are ~330 tokens (cut at 320)."""
    rows = []
    for i in range(n):
        words = " ".join(["word"] * (300 if i % long_every < long_first else 10))
        rows.append({"messages": [{"role": "user", "content": f"question {i} {words}"},
                                  {"role": "assistant", "content": f"answer {i}"}]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def server(tmp_path: Path) -> Any:
    port = free_port()
    proc = start_server(tmp_path / "store", port, "--no-worker")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def waiter(d: Any, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    w = WebDriverWait(d, timeout, poll_frequency=0.3)
    return w.until


def upload(d: Any, base: str, path: Path, name: str = "") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    wait = waiter(d)
    if "#/datasets" not in d.current_url:
        d.get(f"{base}/#/datasets")
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#path-select option")))
    d.find_element(By.ID, "upload-file").send_keys(str(path))
    if name:
        d.find_element(By.ID, "upload-name").send_keys(name)
    d.find_element(By.ID, "upload-btn").click()
    wait(EC.text_to_be_present_in_element((By.ID, "toast"), "Uploaded"))
    wait(lambda drv: "#/datasets/" in drv.current_url and drv.find_elements(By.CSS_SELECTOR, "#dataset-detail h2"))


def text(d: Any, css: str) -> str:
    """The text of the first element `css` finds ("" while it is absent or being replaced)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return "\n".join(e.text for e in d.find_elements(By.CSS_SELECTOR, css)[:1])
    except StaleElementReferenceException:
        return ""


def no_overflow(d: Any) -> None:
    d.set_window_size(390, 900)
    try:
        waiter(d, 10)(lambda drv: drv.execute_script("return window.innerWidth") <= 400)
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide at 390 px"
    finally:
        d.set_window_size(1360, 1000)


def test_chat_data_is_read_as_conversations_on_the_datasets_page(browser: Any, server: str,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / "chat.jsonl", chat_rows()))
    # the table says what the rows are, not "? → ?"
    wait(lambda drv: "messages conversations" in text(drv, "#datasets-table .ds-mapping"))
    detail = d.find_element(By.ID, "dataset-detail")
    assert "no target column" not in detail.text
    assert "messages" in d.find_element(By.ID, "chat-format").text
    assert "holds lists of {role, content}" in d.find_element(By.ID, "chat-format").text
    assert not d.find_elements(By.ID, "map-input")  # no column selector ("0 selected")
    Select(d.find_element(By.ID, "pv-model")).select_by_value(SMOLLM)
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#pv-out .chat-trunc"))
    assert "HTTP" not in d.find_element(By.ID, "pv-out").text and not d.find_elements(By.CSS_SELECTOR, "#pv-out .error")
    trunc = d.find_element(By.CSS_SELECTOR, "#pv-out .chat-trunc")
    assert trunc.get_attribute("data-truncated") == "20", trunc.text
    assert "20 of 32 conversations" in trunc.text and "320 tokens" in trunc.text
    first = d.find_element(By.CSS_SELECTOR, ".chat-conv")
    assert first.get_attribute("data-truncated") == "1" and "cut to 320 tokens" in first.text
    assert "<|im_start|>" in [m.text for m in first.find_elements(By.CSS_SELECTOR, "mark.special")]
    trained = [t.get_attribute("textContent") for t in first.find_elements(By.CSS_SELECTOR, ".pv-target")]
    assert trained and trained[0].startswith("answer 0")  # the reply is what trains
    assert "question 0" not in "".join(trained)
    # the system prompt goes into conversations without one, saved with the data set
    d.find_element(By.ID, "map-system").send_keys("Answer in one word.")
    wait(lambda drv: "Answer in one word." in drv.find_element(By.CSS_SELECTOR, ".chat-conv pre").text)
    d.find_element(By.ID, "map-save").click()
    wait(lambda drv: "System prompt saved" in drv.find_element(By.ID, "toast").text)
    ds = httpx.get(f"{server}/api/datasets").json()[0]
    assert ds["mapping"]["system_prompt"] == "Answer in one word." and ds["format"] == "messages"
    no_overflow(d)


@pytest.mark.parametrize(("fmt", "row"), [
    ("sharegpt", {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there"}]}),
    ("alpaca", {"instruction": "Say hi", "input": "", "output": "hello there"}),
    ("prompt-completion", {"prompt": "Say hi", "completion": "hello there"}),
])
def test_every_chat_format_shows_as_such(browser: Any, server: str, tmp_path: Path,  # noqa: F811
                                         fmt: str, row: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / f"{fmt}.jsonl", [row] * 30))
    wait(lambda drv: f"{fmt} conversations" in text(drv, "#datasets-table .ds-mapping"))
    wait(lambda drv: fmt in text(drv, "#chat-format").lower())
    Select(d.find_element(By.ID, "pv-model")).select_by_value(SMOLLM)
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#pv-out .chat-conv"))
    trained = d.find_element(By.CSS_SELECTOR, ".chat-conv .pv-target").get_attribute("textContent")
    assert trained.startswith("hello there")
    # New experiment says the same, and renders the conversation with the chosen model
    d.get(f"{server}/#/new/{httpx.get(f'{server}/api/datasets').json()[0]['id']}")
    wait(lambda drv: f"{fmt} conversations" in drv.find_element(By.ID, "exp-mapping").text)
    Select(d.find_element(By.ID, "exp-model")).select_by_value(SMOLLM)
    d.find_element(By.ID, "exp-chat-show").click()
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#exp-chat .chat-conv .pv-target"))
    assert d.find_element(By.CSS_SELECTOR, "#exp-chat .chat-trunc").get_attribute("data-truncated") == "0"
