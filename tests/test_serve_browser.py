"""End to end in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`)
driven by selenium against a real `peftlab serve` on 127.0.0.1 and a free port.

Upload a slice of statista, write a multi-line prompt template and read its preview (the rows
as the model sees them), compare zero-shot, lora and ia3 on stories260k with a tiny budget
(the model choice follows the task), follow the live loss chart, read the leaderboard and the
recommendation, use the playground, download an adapter, delete with a confirmation, and
check every screenshot is not blank. Skipped (not failed) only when chromium or its driver is
absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DATA, needs_shared
from test_serve_worker import free_port, start_server, stop

from peftlab.methods import REGISTRY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    needs_shared,
    pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (scripts/setup.sh installs it)"),
]
# Set PEFTLAB_SCREENSHOTS=DIR to keep the screenshots.
SHOTS = Path(os.environ["PEFTLAB_SCREENSHOTS"]) if os.environ.get("PEFTLAB_SCREENSHOTS") else None


def until(d: Any, cond: Any, timeout: float = 60, poll: float = 0.3) -> Any:
    """Wait for `cond`; an element the page re-rendered meanwhile is simply looked up again.

    Without ignoring StaleElementReferenceException a condition that reads an element's text
    fails whenever a render lands between the lookup and the read (seen in CI)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout, poll_frequency=poll,
                         ignored_exceptions=(StaleElementReferenceException,)).until(cond)


def not_blank(png: Path) -> float:
    """Pixel standard deviation of the screenshot (a blank page is ~0)."""
    from PIL import Image, ImageStat

    img = Image.open(png).convert("L")
    assert img.size[0] >= 800 and img.size[1] >= 600
    std = ImageStat.Stat(img).stddev[0]
    colours = len(img.getcolors(maxcolors=1 << 16) or range(1 << 16))
    assert std > 12 and colours > 20, f"{png.name} looks blank (stddev {std:.1f}, {colours} grey levels)"
    return std


@pytest.fixture()
def browser(tmp_path: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert DRIVER, "chromium is installed but chromedriver is not: apt-get install chromium-driver"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1360,1000",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    drv.set_page_load_timeout(60)
    drv.downloads = downloads
    yield drv
    drv.quit()


def test_compare_try_and_download_in_a_browser(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select

    d = browser
    shots = SHOTS or tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "statista-slice.jsonl"
    with open(DATA / "statista" / "train.jsonl", encoding="utf-8") as f:
        data.write_text("".join(next(f) for _ in range(80)), encoding="utf-8")
    port = free_port()
    server = start_server(tmp_path / "store", port, "--concurrency", "2")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 30) -> Any:
        return until(d, cond, timeout, 0.3)

    def shot(name: str) -> None:
        time.sleep(0.3)
        p = shots / f"{name}.png"
        d.save_screenshot(str(p))
        not_blank(p)

    try:
        # 1. Datasets: upload, see counts, problems, columns, preview
        d.get(f"{base}/#/datasets")
        wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#path-select option[value$='train.jsonl']")))
        d.find_element(By.ID, "upload-file").send_keys(str(data))
        d.find_element(By.ID, "upload-name").send_keys("statista-80")
        d.find_element(By.ID, "upload-btn").click()
        wait(EC.text_to_be_present_in_element((By.ID, "dataset-detail"), "Column mapping"))
        detail = d.find_element(By.ID, "dataset-detail").text
        assert "80 train" in detail and "64 train after split" in detail and "table" in detail
        assert "longer than about 256 tokens" in detail
        assert len(d.find_elements(By.CSS_SELECTOR, "#preview-table tbody tr")) == 10
        # a multi-line template (Enter makes a line break) and its live preview through the tokenizer
        Select(d.find_element(By.ID, "pv-model")).select_by_value("stories260k")
        assert "all-minilm-l6-v2" not in d.find_element(By.ID, "pv-model").text  # an encoder: not for causal-lm
        tpl = d.find_element(By.ID, "map-prompt")
        tpl.click()  # choosing the template selects it as what the model reads
        tpl.send_keys("Write the title of this table:", Keys.ENTER, "{table}")
        assert d.find_element(By.CSS_SELECTOR, "input[name='map-source'][value='template']").is_selected()
        wait(EC.text_to_be_present_in_element((By.ID, "map-used"), "Used: the template"))
        wait(lambda drv: any("Write the title of this table:\n0 " in e.get_attribute("textContent")
                             for e in drv.find_elements(By.CSS_SELECTOR, ".pv-row .pv-prompt")), 60)
        first = d.find_element(By.CSS_SELECTOR, ".pv-row")
        assert first.find_element(By.CSS_SELECTOR, ".pv-tokens").text == "256"  # cut at max source tokens
        assert "cut: prompt" in first.text and first.find_element(By.CSS_SELECTOR, "mark.special").text == "<s>"
        assert first.find_element(By.CSS_SELECTOR, ".pv-target").text.endswith("</s>")
        d.execute_script("document.getElementById('preview-card').scrollIntoView({block: 'center'})")
        shot("1-datasets-template-preview")
        d.find_element(By.ID, "map-save").click()
        wait(EC.text_to_be_present_in_element((By.ID, "toast"), "Mapping saved"))
        with httpx.Client(base_url=base) as c:
            ds = next(x for x in c.get("/api/datasets").json() if x["name"] == "statista-80")
            assert ds["mapping"]["prompt"] == "Write the title of this table:\n{table}"  # a real line break
            assert ds["mapping"]["input"] == []
        d.execute_script("document.getElementById('map-form').scrollIntoView({block: 'center'})")
        shot("1-datasets")

        # 2. New experiment: stories260k, zero-shot + lora + ia3 (the defaults), tiny budget
        d.find_element(By.LINK_TEXT, "New experiment with this data →").click()
        wait(EC.presence_of_element_located((By.CSS_SELECTOR, ".method-check[data-method='ia3']")))
        # the model choice follows the task: an encoder only for classification, a decoder picked for causal-lm
        offered = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#exp-model option")]
        assert "all-minilm-l6-v2" not in offered and offered and offered[0] in ("smollm2-135m-instruct-gguf", "stories260k")
        assert "all-minilm-l6-v2 (encoder)" in d.find_element(By.ID, "exp-model-why").text
        Select(d.find_element(By.ID, "exp-task")).select_by_value("classification")
        wait(lambda drv: "all-minilm-l6-v2" in [o.get_attribute("value") for o in
                                                 drv.find_elements(By.CSS_SELECTOR, "#exp-model option")])
        Select(d.find_element(By.ID, "exp-task")).select_by_value("causal-lm")
        wait(lambda drv: "all-minilm-l6-v2" not in [o.get_attribute("value") for o in
                                                     drv.find_elements(By.CSS_SELECTOR, "#exp-model option")])
        wait(EC.presence_of_element_located((By.CSS_SELECTOR, ".method-check[data-method='ia3']")))
        Select(d.find_element(By.ID, "exp-model")).select_by_value("stories260k")
        name = d.find_element(By.ID, "exp-name")
        name.clear()
        name.send_keys("e2e")
        for field, value in (("max-steps", "3"), ("max-train", "24"), ("max-eval", "4"), ("batch-size", "8")):
            el = d.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        checked = [c.get_attribute("data-method") for c in d.find_elements(By.CSS_SELECTOR, ".method-check")
                   if c.is_selected()]
        assert checked == ["zero-shot", "lora", "ia3"]
        assert len(d.find_elements(By.CSS_SELECTOR, "#methods-table tbody tr")) == len(REGISTRY)
        r_input = d.find_element(By.CSS_SELECTOR, "tr[data-method='lora'] input[data-opt='r']")
        assert r_input.get_attribute("value") == "16"
        r_input.clear()
        r_input.send_keys("4")
        d.find_element(By.ID, "estimate-btn").click()
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#estimate-table tbody tr")) == 3, 60)
        est = d.find_element(By.ID, "estimate-table").text
        assert "MB" in est and "~" in est
        d.execute_script("document.getElementById('estimate').scrollIntoView({block: 'end'})")
        shot("2-new-experiment")
        d.find_element(By.ID, "launch-btn").click()

        # 3. Jobs: live queue until all three are done
        wait(EC.url_contains("#/jobs/e2e"), 60)
        assert "Queued 3 runs (zero-shot, lora, ia3)" in d.find_element(By.ID, "toast").text
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr[data-run]")) == 3)
        first_row = d.find_element(By.CSS_SELECTOR, "#jobs-table tbody tr[data-run]")
        try:
            wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-status='running']"), 120)
            shot("3-jobs-running")
        except Exception:  # noqa: BLE001 - runs may all be done already on a fast machine
            pass
        # the live loss chart: one line per run that has logged a step, in its method's colour
        wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#jobs-chart svg g.series polyline"), 240)
        assert "of 3 runs done" in d.find_element(By.ID, "jobs-summary").text or \
            "of 3 run" in d.find_element(By.ID, "jobs-summary").text
        assert first_row.is_displayed()  # rows are updated in place, not rebuilt (a click is never lost)
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-status='done']")) == 3
             or drv.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-status='failed']"), 420)
        statuses = [r.get_attribute("data-status") for r in d.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-run]")]
        assert statuses == ["done"] * 3, d.find_element(By.ID, "jobs-table").text
        assert first_row.get_attribute("data-run") in ("zero-shot", "lora", "ia3")  # the same element
        series = d.find_elements(By.CSS_SELECTOR, "#jobs-chart svg g.series")
        assert {s.get_attribute("data-series") for s in series} >= {"lora train", "ia3 train"}
        assert "rougeL" in d.find_element(By.CSS_SELECTOR, "#jobs-table tr[data-run='lora'] td[data-col='result']").text
        assert "3 of 3 runs done" in d.find_element(By.ID, "jobs-summary").text
        d.find_element(By.CSS_SELECTOR, "#jobs-table tr[data-run='lora'] .job-logs").click()
        wait(EC.text_to_be_present_in_element((By.ID, "logs-view"), "run finished"))
        assert "Show the worker's raw output" in d.find_element(By.ID, "worker-toggle").text
        assert not d.find_element(By.ID, "worker-raw").is_displayed()  # raw output behind the toggle
        shot("3-jobs")

        # 4. Results: the recommendation, then the HTML report (leaderboard, curves, outputs side by side)
        d.get(f"{base}/#/results/e2e")
        wait(EC.text_to_be_present_in_element((By.ID, "recommendation"), "ecommendation"))
        rec = d.find_element(By.ID, "recommendation").text
        headline = rec.split("\n")[0]
        # tiny runs on 8 test rows: a method above the floors, or plainly none (never zero-shot itself)
        assert headline.startswith(("Recommendation: lora", "Recommendation: ia3", "No recommendation")), rec
        recommended = headline.startswith("Recommendation: ")
        table = d.find_element(By.ID, "results-table").text
        assert "rougeL [95% CI]" in table and "group" in table and "[" in table
        ranks = [r.get_attribute("data-run") for r in d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")]
        assert sorted(ranks) == ["ia3", "lora", "zero-shot"], ranks  # one leaderboard: this one
        frame = d.find_element(By.ID, "report-frame")
        wait(lambda drv: int(frame.get_attribute("offsetHeight")) > 600, 120)
        d.switch_to.frame(frame)
        assert not d.find_element(By.ID, "recommendation").is_displayed()  # shown once, above the report
        assert not d.find_element(By.ID, "leaderboard").is_displayed()
        assert d.find_elements(By.CSS_SELECTOR, "#curves svg")
        assert d.find_elements(By.CSS_SELECTOR, "#outputs-table tbody tr")
        d.switch_to.default_content()
        shot("4-results")

        # 5. Playground: one input, three runs side by side
        d.get(f"{base}/#/playground/e2e")
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-run:checked")) == 3)
        d.find_element(By.ID, "pg-input").send_keys("0 Year: 2019, Revenue in million euros: 42")
        d.find_element(By.ID, "pg-go").click()
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")) == 3, 120)
        cards = {c.get_attribute("data-run"): c.find_element(By.CSS_SELECTOR, ".out").text
                 for c in d.find_elements(By.CSS_SELECTOR, ".pg-card[data-run]")}
        assert set(cards) == {"zero-shot", "lora", "ia3"} and all(cards.values()), cards
        shot("5-playground")

        # 6. Export: download lora's adapter through the browser
        d.get(f"{base}/#/export/e2e")
        btn = wait(EC.element_to_be_clickable((By.CSS_SELECTOR, ".dl-adapter[data-run='lora']")))
        btn.click()
        zips = wait(lambda drv: [p for p in drv.downloads.glob("*.zip")], 60)
        names = zipfile.ZipFile(zips[0]).namelist()
        assert any(n.endswith("adapter_config.json") for n in names), names
        card = zipfile.ZipFile(zips[0]).read(next(n for n in names if n.endswith("README.md"))).decode()
        assert "# e2e / lora" in card and "base_model: stories260k" in card
        assert ("★ recommended" in d.find_element(By.ID, "export-table").text) == recommended
        d.find_element(By.CSS_SELECTOR, "tr[data-run='lora'] .merge-btn").click()
        wait(EC.text_to_be_present_in_element((By.ID, "merge-report"), "Merge check for lora"), 120)
        assert "passed" in d.find_element(By.ID, "merge-report").text
        wait(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-run='lora'] .dl-merged")))
        shot("6-export")

        # 7. Delete with a confirmation: a run from Jobs (cancel keeps it), then the experiment
        d.get(f"{base}/#/jobs/e2e")
        wait(EC.element_to_be_clickable((By.CSS_SELECTOR, "#jobs-table tr[data-run='ia3'] .job-delete"))).click()
        wait(EC.visibility_of_element_located((By.ID, "modal")))
        assert "Delete run ia3?" in d.find_element(By.ID, "modal-title").text
        shot("7-delete-confirm")
        d.find_element(By.ID, "modal-cancel").click()
        time.sleep(2)
        assert d.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-run='ia3']")
        d.find_element(By.CSS_SELECTOR, "#jobs-table tr[data-run='ia3'] .job-delete").click()
        wait(EC.visibility_of_element_located((By.ID, "modal")))
        d.find_element(By.ID, "modal-ok").click()
        wait(lambda drv: not drv.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-run='ia3']"))
        d.get(f"{base}/#/results/e2e")
        wait(EC.element_to_be_clickable((By.ID, "results-delete"))).click()
        wait(EC.visibility_of_element_located((By.ID, "modal")))
        assert "Its 2 runs go with it" in d.find_element(By.ID, "modal-body").text
        d.find_element(By.ID, "modal-ok").click()
        with httpx.Client(base_url=base) as c:
            # once the request has answered (its "Deleted e2e" toast may already be replaced by the
            # reloaded page's own by the time a poll looks)
            wait(lambda drv: c.get("/api/experiments/e2e").status_code == 404)
        # the rows go first, in one transaction, then the folders: the API can answer 404 meanwhile
        gone = tmp_path / "store" / "runs" / "e2e"
        try:
            wait(lambda drv: not gone.exists(), 15)
        except Exception:  # noqa: BLE001 - say what is left
            raise AssertionError(f"still in the store: {sorted(str(x) for x in gone.rglob('*'))}") from None
    finally:
        stop(server)
