"""The Export page in a real browser (headless Chromium, as test_serve_browser), on a tuned
experiment of stories260k (#27): the recommended run first (the one answer, `report.recommend`),
the tuning trials apart (they keep no adapter, by design: not "missing"), a download that shows its
progress and whose size on the page is the size of the file saved, and no horizontal overflow at
390 px."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import needs_shared, tiny_causal, write_experiment
from test_serve_browser import CHROMIUM, browser, until  # noqa: F401 - the fixture
from test_serve_worker import free_port, start_server, stop

from peftlab.store import Store

pytestmark = [needs_shared, pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed")]
UNITS = {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zero-shot, lora and ia3, each trained method tuned with 2 trials first (`role: trial`: they
    keep no adapter), then trained on the full budget: 7 runs, the trials first in the store."""
    from peftlab.train.runner import plan, run_experiment

    tmp = tmp_path_factory.mktemp("export")
    body = tiny_causal(["zero-shot", "lora", "ia3"], threads=1)
    body["data"]["max_validation_examples"] = 12
    body["tuning"] = {"trials": 2, "steps_per_trial": 2, "seed": 3}
    store = Store(tmp / "store")
    run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.name for r in store.runs("tiny")][:4] == ["lora.t0", "lora.t1", "ia3.t0", "ia3.t1"]
    assert all(r.status == "done" for r in store.runs("tiny"))
    return tmp / "store"


def test_the_recommended_run_comes_first_then_the_final_runs_then_the_trials(
        tuned: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from peftlab.serve.app import create_app
    from peftlab.serve.routers import results
    from peftlab.serve.schemas import Settings

    real = results.recommendation
    for pick in ("ia3", None):  # ia3 is the store's last final run
        def fake(store: Any, experiment: str, budget: Any = None, pick: str | None = pick) -> dict[str, Any]:
            return {**real(store, experiment, budget), "representative": pick, "run": pick}

        monkeypatch.setattr(results, "recommendation", fake)
        client = TestClient(create_app(Settings(store=str(tuned), start_worker=False)), base_url="http://127.0.0.1")
        ex = client.get("/api/experiments/tiny/exports").json()
        assert ex["recommended"] == pick
        order = [s["run"] for s in ex["runs"]]
        finals = ["ia3", "zero-shot", "lora"] if pick else ["zero-shot", "lora", "ia3"]
        assert order == [*finals, "lora.t0", "lora.t1", "ia3.t0", "ia3.t1"]
        for s in ex["runs"][3:]:
            assert s["trial"] and not s["adapter"]["available"] and "missing" not in s["adapter"]["why"]
            assert "keeps no adapter" in s["adapter"]["why"] and s["final_run"] == s["run"].split(".")[0]


def shown_bytes(text: str) -> float:
    m = re.search(r"([\d.]+) (bytes|KiB|MiB|GiB)", text)
    assert m, text
    return float(m.group(1)) * UNITS[m.group(2)]


def test_export_page(browser: Any, tuned: Path) -> None:  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By

    d = browser
    store = tuned
    port = free_port()
    server = start_server(store, port, "--no-worker")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 60) -> Any:
        return until(d, cond, timeout, 0.2)

    try:
        with httpx.Client(base_url=base, timeout=120) as c:
            api = c.get("/api/experiments/tiny/exports").json()
        finals = [s["run"] for s in api["runs"] if not s.get("trial")]
        d.get(f"{base}/#/export/tiny")
        wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#export-table tbody tr[data-run]"))
        rows = d.find_elements(By.CSS_SELECTOR, "#export-table tbody tr[data-run]")
        names = [r.get_attribute("data-run") for r in rows]
        assert names == finals and sorted(names) == ["ia3", "lora", "zero-shot"]  # the final runs; the trials apart
        if api["recommended"]:  # the answer's run first, marked
            assert names[0] == api["recommended"] and "recommended" in rows[0].text
        assert "missing" not in d.find_element(By.ID, "export-table").text
        trials = d.find_element(By.CSS_SELECTOR, "#ex-trials details")
        assert "4 tuning trials: no adapter to download, by design" in trials.text
        assert len(d.find_elements(By.CSS_SELECTOR, "#ex-trials li[data-run]")) == 4
        assert "missing" not in trials.get_attribute("textContent")

        # a download shows its progress, and the size on the button is the size of the file saved
        button = d.find_element(By.CSS_SELECTOR, "tr[data-run='lora'] .dl-adapter")
        shown = shown_bytes(button.text)
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                               "downloadThroughput": 100_000, "uploadThroughput": -1})
        button.click()
        box = d.find_element(By.CSS_SELECTOR, "tr[data-run='lora'] .dl-progress")
        wait(lambda drv: 0 < float(box.find_element(By.TAG_NAME, "progress").get_attribute("value") or 0)
             < float(box.find_element(By.TAG_NAME, "progress").get_attribute("max")), 30)
        assert re.search(r"of [\d.]+ KiB \(\d+%\)", box.text), box.text
        wait(lambda drv: box.get_attribute("data-done"), 120)
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                               "downloadThroughput": -1, "uploadThroughput": -1})
        saved = d.downloads / "tiny-lora-adapter.zip"
        wait(lambda drv: saved.is_file() and saved.stat().st_size > 0, 30)
        time.sleep(0.5)
        size = saved.stat().st_size
        assert int(box.get_attribute("data-done")) == size
        assert abs(shown - size) <= 0.05 * UNITS["KiB" if size < 1024**2 else "MiB"], (button.text, size)
        assert "Downloaded tiny-lora-adapter.zip" in box.text

        # a phone's width: no horizontal overflow
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1,
                                                                 "mobile": True})
        d.refresh()
        wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#export-table tbody tr[data-run]"))
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, width
    finally:
        stop(server)
