"""Results in a real browser (headless Chromium): one leaderboard, one row per method with its
seeds under it, and the recommendation's headline, which a budget typed on the page changes.
The experiment is test_answer's, written by hand (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_answer import EXP, build_store
from test_serve_browser import CHROMIUM, SHOTS, browser, not_blank, pytestmark, until  # noqa: F401 - fixtures and marks
from test_serve_worker import free_port, start_server, stop


def test_results_shows_one_leaderboard_and_the_budgeted_headline(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    store = build_store(tmp_path / "store")
    port = free_port()
    proc = start_server(store.root, port, "--no-worker")
    try:
        d = browser
        def wait(cond: Any) -> Any:
            return until(d, cond)

        d.get(f"http://127.0.0.1:{port}/#/results/{EXP}")
        wait(EC.text_to_be_present_in_element((By.ID, "recommendation"), "Recommendation: ia3"))
        headline = d.find_element(By.CSS_SELECTOR, "#recommendation p.headline").text
        assert headline.startswith("Recommendation: ia3, macro_f1 ")
        rows = d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        methods = [r.get_attribute("data-run") for r in rows if r.get_attribute("data-run")]
        assert sorted(methods) == sorted(["ia3", "vera", "full", "prompt-tuning", "lora", "zero-shot",
                                          "majority-class"])
        seeds = [r.get_attribute("data-seed") for r in rows if r.get_attribute("data-seed")]
        assert sorted(seeds) == sorted(f"{m}.s{s}" for m in ("ia3", "full", "prompt-tuning") for s in (42, 43))
        starred = [r.get_attribute("data-run") for r in rows if "★ recommended" in r.text]
        assert starred == ["ia3"]
        # the report below shows the rest; its own leaderboard and recommendation are hidden (shown once)
        wait(lambda drv: drv.find_element(By.ID, "report-frame").get_attribute("data-loaded") == "1")
        d.switch_to.frame(d.find_element(By.ID, "report-frame"))
        assert not d.find_element(By.ID, "leaderboard").is_displayed()
        assert not d.find_element(By.ID, "recommendation").is_displayed()
        d.switch_to.default_content()
        # a budget changes the headline, not a paragraph below it
        d.find_element(By.ID, "bg-mem").send_keys("1000")
        d.find_element(By.ID, "bg-apply").click()
        wait(EC.text_to_be_present_in_element((By.ID, "recommendation"), "within your budget"))
        headline = d.find_element(By.CSS_SELECTOR, "#recommendation p.headline").text
        assert headline.startswith("Recommendation within your budget (peak memory ≤ 1000 MB): vera")
        rows = d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        assert [r.get_attribute("data-run") for r in rows if "★ recommended" in r.text] == ["vera"]
        # forgetting is not measured for classification: the table says n/a, and a cap on it changes nothing
        vera = d.find_element(By.CSS_SELECTOR, '#results-table tr[data-run="vera"]').text
        assert " n/a " in f" {vera} ", vera
        d.find_element(By.ID, "bg-forget").send_keys("0.1")
        d.find_element(By.ID, "bg-apply").click()
        wait(EC.text_to_be_present_in_element((By.ID, "recommendation"), "forgetting ≤ 0.1 nats/token"))
        headline = d.find_element(By.CSS_SELECTOR, "#recommendation p.headline").text
        assert headline.startswith("Recommendation within your budget (peak memory ≤ 1000 MB, forgetting ≤ 0.1 "
                                   "nats/token): vera"), headline
        png = (SHOTS or tmp_path) / "results-budget.png"
        d.save_screenshot(str(png))
        not_blank(png)
    finally:
        stop(proc)
