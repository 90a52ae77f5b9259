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
from test_serve_browser import CHROMIUM, browser, pytestmark, until  # noqa: F401 - fixtures and marks
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

    return lambda cond: until(d, cond, timeout)


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
    before = len(httpx.get(f"{base}/api/datasets").json())
    d.find_element(By.ID, "upload-btn").click()
    wait(lambda drv: len(httpx.get(f"{base}/api/datasets").json()) == before + 1)
    wait(EC.text_to_be_present_in_element((By.ID, "toast"), f"Uploaded {name or path.name}"))
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


def column_rows(n: int = 40, test_rows: int = 0, distinct_inputs: int | None = None) -> list[dict[str, Any]]:
    """Column data (text -> summary); `test_rows` of them in a `split` column's test split."""
    rows = []
    for i in range(n):
        r: dict[str, Any] = {"text": f"input {i % (distinct_inputs or n)}", "summary": f"target {i}"}
        if test_rows:
            r["split"] = "test" if i < test_rows else "train"
        rows.append(r)
    return rows


def test_upload_name_is_cleared_and_data_sets_can_be_renamed(browser: Any, server: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / "a.jsonl", column_rows()), name="samsum-chat")
    assert d.find_element(By.ID, "upload-name").get_attribute("value") == ""
    upload(d, server, write_jsonl(tmp_path / "b.jsonl", column_rows(30)))
    names = sorted(x["name"] for x in httpx.get(f"{server}/api/datasets").json())
    assert names == ["b.jsonl", "samsum-chat"]  # the second file is not named after the first
    # rename: a clash is refused with the reason, another name is taken
    b = next(x for x in httpx.get(f"{server}/api/datasets").json() if x["name"] == "b.jsonl")

    def rename(to: str) -> None:
        wait(lambda drv: text(drv, f".ds-rename[data-id='{b['id']}']") == "Rename")
        d.find_element(By.CSS_SELECTOR, f".ds-rename[data-id='{b['id']}']").click()
        box = d.find_element(By.ID, "ds-rename-input")
        box.clear()
        box.send_keys(to)
        d.find_element(By.ID, "modal-ok").click()

    rename("samsum-chat")
    wait(lambda drv: "already called 'samsum-chat'" in text(drv, "#dataset-error"))
    assert "choose another name" in text(d, "#dataset-error")
    rename("samsum-b")
    wait(lambda drv: "samsum-b" in text(drv, "#datasets-table"))
    assert sorted(x["name"] for x in httpx.get(f"{server}/api/datasets").json()) == ["samsum-b", "samsum-chat"]
    r = httpx.post(f"{server}/api/datasets/{b['id']}/rename", json={"name": "samsum-chat"})
    assert r.status_code == 409 and "already called" in r.json()["detail"]


def test_new_experiment_starts_fresh_on_each_visit(browser: Any, server: str, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / "a.jsonl", column_rows()))
    d.get(f"{server}/#/new")
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, ".method-check[data-method='lora']"))
    d.find_element(By.CSS_SELECTOR, "#more-settings summary").click()
    for field, value in (("exp-name", "alpha"), ("tune", "3"), ("seeds", "2")):
        el = d.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)
    d.find_element(By.CSS_SELECTOR, "a[data-page='jobs']").click()
    wait(lambda drv: "#/jobs" in drv.current_url)
    d.find_element(By.CSS_SELECTOR, "a[data-page='new']").click()
    wait(lambda drv: drv.find_element(By.ID, "exp-name").get_attribute("value").startswith("exp-"))
    assert d.find_element(By.ID, "tune").get_attribute("value") == ""
    assert d.find_element(By.ID, "seeds").get_attribute("value") == ""


def test_method_picker_search_families_count_and_launch_in_view(browser: Any, server: str,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / "a.jsonl", column_rows()))
    d.get(f"{server}/#/new")
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, ".method-check[data-method='lora']"))
    wait(lambda drv: text(drv, "#method-count") == "3 selected")

    def visible() -> list[str]:
        return [r.get_attribute("data-method") for r in d.find_elements(By.CSS_SELECTOR, "#methods-table tbody tr")
                if r.is_displayed()]

    # the page is short enough to see, and Launch is in view without scrolling
    d.execute_script("window.scrollTo(0, 0)")
    assert d.execute_script("return document.documentElement.scrollHeight") < 3000
    launch = d.find_element(By.ID, "launch-btn")
    assert d.execute_script("const r = arguments[0].getBoundingClientRect(); return r.bottom <= window.innerHeight && r.top >= 0", launch)
    d.find_element(By.ID, "method-search").send_keys("lora")
    wait(lambda drv: 0 < len(visible()) < 20 and all(
        "lora" in r.text.lower() for r in drv.find_elements(By.CSS_SELECTOR, "#methods-table tbody tr") if r.is_displayed()))
    assert {"lora", "dora", "qlora", "adalora"} <= set(visible())
    d.find_element(By.ID, "method-search").clear()
    d.execute_script("document.getElementById('method-search').dispatchEvent(new Event('input'))")
    d.find_element(By.CSS_SELECTOR, "button.family[data-family='orthogonal']").click()
    wait(lambda drv: set(visible()) and all(r.get_attribute("data-family") == "orthogonal"
                                              for r in drv.find_elements(By.CSS_SELECTOR, "#methods-table tbody tr")
                                              if r.is_displayed()))
    oft = d.find_element(By.CSS_SELECTOR, ".method-check[data-method='oft']")
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", oft)
    oft.click()
    wait(lambda drv: text(drv, "#method-count") == "4 selected")
    # options show for the selected methods only
    assert d.find_element(By.CSS_SELECTOR, "tr[data-method='oft'] .method-opts").is_displayed()
    assert not d.find_element(By.CSS_SELECTOR, "tr[data-method='boft'] .method-opts").is_displayed()
    d.find_element(By.CSS_SELECTOR, "button.family[data-family='']").click()
    d.find_element(By.ID, "method-picked-only").click()
    wait(lambda drv: visible() == ["zero-shot", "lora", "ia3", "oft"])
    no_overflow(d)


def test_datasets_warnings_small_test_split_and_multi_reference(browser: Any, server: str,  # noqa: F811
                                                                tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / "refs.jsonl", column_rows(60, test_rows=3, distinct_inputs=20)))
    wait(lambda drv: "Problems" in text(drv, "#dataset-detail"))
    small = d.find_element(By.CSS_SELECTOR, ".problem[data-kind='small_test']")
    assert "only 3 test examples" in small.text
    refs = d.find_element(By.CSS_SELECTOR, ".problem[data-kind='duplicate_inputs']")
    assert "several references" in refs.text and "⚠" not in refs.text and "note" in refs.get_attribute("class")


def test_new_experiment_words_and_classification_fields(browser: Any, server: str, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, wait = browser, waiter(browser)
    upload(d, server, write_jsonl(tmp_path / "a.jsonl", column_rows()))
    ds = httpx.get(f"{server}/api/datasets").json()[0]
    httpx.put(f"{server}/api/datasets/{ds['id']}/mapping", json={"input": ["text"]})  # no target
    d.get(f"{server}/#/new/{ds['id']}")
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, ".method-check[data-method='lora']"))
    Select(d.find_element(By.ID, "exp-model")).select_by_value("stories260k")
    d.find_element(By.ID, "yaml-btn").click()
    wait(lambda drv: text(drv, "#new-error"))
    err = text(d, "#new-error")
    assert "Value error" not in err and "data.target" not in err and "`target:" not in err
    assert err.startswith("Target column:") and "Column mapping on the Datasets page" in err
    # Max target tokens is for generation only
    d.find_element(By.CSS_SELECTOR, "#more-settings summary").click()
    assert d.find_element(By.ID, "max-tgt").is_displayed()
    Select(d.find_element(By.ID, "exp-task")).select_by_value("classification")
    wait(lambda drv: not drv.find_element(By.ID, "max-tgt").is_displayed())


def test_yaml_preview_shows_the_resolved_settings(browser: Any, server: str, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, wait = browser, waiter(browser, 180)
    upload(d, server, write_jsonl(tmp_path / "a.jsonl", column_rows()))
    ds = httpx.get(f"{server}/api/datasets").json()[0]
    d.get(f"{server}/#/new/{ds['id']}")
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "tr[data-method='lora'] input[data-opt='r']"))
    Select(d.find_element(By.ID, "exp-model")).select_by_value("stories260k")
    r = d.find_element(By.CSS_SELECTOR, "tr[data-method='lora'] input[data-opt='r']")
    r.clear()
    r.send_keys("4")
    d.find_element(By.ID, "yaml-btn").click()
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#resolved-table tr[data-run='lora'] .setting"))
    lora = d.find_element(By.CSS_SELECTOR, "#resolved-table tr[data-run='lora']")
    settings = {s.get_attribute("data-key"): s.text for s in lora.find_elements(By.CSS_SELECTOR, ".setting")}
    assert settings["r"] == "r 4" and settings["lora_alpha"] == "lora_alpha 32"
    assert "q_proj" in settings["target_modules"] and "v_proj" in settings["target_modules"]  # the defaults, resolved
    assert lora.find_elements(By.CSS_SELECTOR, "td")[1].text == "0.0002"
    ia3 = d.find_element(By.CSS_SELECTOR, "#resolved-table tr[data-run='ia3']")
    assert "feedforward_modules" in ia3.text
    assert "trains nothing" in d.find_element(By.CSS_SELECTOR, "#resolved-table tr[data-run='zero-shot']").text


def test_relaunch_with_other_max_steps_asks_to_replace_lora_only(browser: Any, server: str,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from peftlab.store import Store

    d, wait = browser, waiter(browser, 120)
    upload(d, server, write_jsonl(tmp_path / "a.jsonl", column_rows()))
    ds = httpx.get(f"{server}/api/datasets").json()[0]
    body = {"name": "again", "model": "stories260k", "dataset": ds["id"], "max_steps": 3, "max_eval_examples": 2,
            "methods": [{"name": "zero-shot"}, {"name": "lora"}]}
    assert httpx.post(f"{server}/api/experiments", json=body, timeout=120).status_code == 201
    store = Store(tmp_path / "store")
    for r in store.runs("again"):
        store.finish(r.id, "done")
    d.get(f"{server}/#/new/from/again")
    wait(lambda drv: drv.find_element(By.ID, "exp-name").get_attribute("value") == "again-2")
    name = d.find_element(By.ID, "exp-name")
    name.clear()
    name.send_keys("again")
    Select(d.find_element(By.ID, "exp-model")).select_by_value("stories260k")
    steps = d.find_element(By.ID, "max-steps")
    steps.clear()
    steps.send_keys("5")
    d.find_element(By.ID, "launch-btn").click()
    wait(lambda drv: drv.find_element(By.ID, "modal").is_displayed())
    dialog = d.find_element(By.ID, "modal-body").text
    assert "lora" in dialog and "zero-shot" not in dialog and "replace: true" not in dialog
    d.find_element(By.ID, "modal-cancel").click()
