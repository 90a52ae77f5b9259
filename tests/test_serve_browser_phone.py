"""Every page at a phone's width (390 CSS pixels, headless Chromium emulating a phone): nothing is
wider than the screen (`document.documentElement.scrollWidth <= window.innerWidth`), the menu
stays a strip at the top, and on Jobs a running run's progress, ETA and Cancel are on screen.
The store is test_answer's experiment and test_serve_browser_home's `busy` (a run running, one
queued), written by hand: no model."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from test_answer import EXP, build_store
from test_serve_browser import CHROMIUM, DRIVER, SHOTS, pytestmark  # noqa: F401 - marks
from test_serve_browser_home import BUSY, _wait, add_busy
from test_serve_worker import free_port, start_server, stop

WIDTH, HEIGHT = 390, 844
PAGES = [
    ("home", "#/home", "#home-table tbody tr"),
    ("datasets", "#/datasets", "#datasets-table"),
    ("new", "#/new", "#methods-table tbody tr"),
    ("jobs", f"#/jobs/{BUSY}", "#jobs-table tbody tr"),
    ("results", f"#/results/{EXP}", "#results-table tbody tr"),
    ("playground", f"#/playground/{EXP}", "#pg-runs"),
    ("export", f"#/export/{EXP}", "#export-table tbody tr"),
]


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server and one phone-sized browser for the walk."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    tmp = tmp_path_factory.mktemp("phone")
    store = build_store(tmp / "store")
    add_busy(store)
    port = free_port()
    proc = start_server(store.root, port, "--no-worker")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                 f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp)}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": True})
    drv.set_page_load_timeout(60)
    drv.base = f"http://127.0.0.1:{port}/"
    try:
        yield drv
    finally:
        drv.quit()
        stop(proc)


def _width(d: Any) -> tuple[int, int]:
    return d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")


@pytest.mark.parametrize(("page", "path", "ready"), PAGES)
def test_a_page_fits_a_phone(phone: Any, page: str, path: str, ready: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d = phone
    d.get(d.base + path)
    _wait(d, lambda drv: drv.find_element(By.ID, f"page-{page}").is_displayed()
          and drv.find_elements(By.CSS_SELECTOR, ready))
    time.sleep(1.5)  # the page's second fetches (charts, reports) settle
    assert d.execute_script("return window.innerWidth") == WIDTH
    if SHOTS:
        d.save_screenshot(str(SHOTS / f"phone-{page}.png"))
    wide = d.execute_script(
        "return Array.from(document.querySelectorAll('body *')).filter((e) => e.getBoundingClientRect().right > "
        "window.innerWidth + 1 && e.offsetParent !== null).slice(0, 5).map((e) => e.tagName + '#' + e.id + '.' "
        "+ e.className + ' ' + Math.round(e.getBoundingClientRect().right))")
    scroll, inner = _width(d)
    assert scroll <= inner, f"{page} is {scroll} px wide on a {inner} px screen: {wide}"
    # the menu is a strip at the top, not a third of the screen
    assert d.find_element(By.TAG_NAME, "header").size["height"] <= HEIGHT * 0.15


def test_jobs_progress_eta_and_cancel_are_on_screen(phone: Any) -> None:
    from selenium.webdriver.common.by import By

    d = phone
    d.get(d.base + f"#/jobs/{BUSY}")
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#jobs-table tr[data-status="running"] button.job-cancel'))
    row = d.find_element(By.CSS_SELECTOR, '#jobs-table tr[data-status="running"]')
    for sel in ('td[data-col="progress"] .bar', 'td[data-col="eta"]', "button.job-cancel"):
        r = d.execute_script("const b = arguments[0].getBoundingClientRect(); return [b.left, b.right, b.width];",
                             row.find_element(By.CSS_SELECTOR, sel))
        assert r[2] > 0 and r[0] >= 0 and r[1] <= WIDTH, f"{sel} at {r}"
    assert "40 s" in row.find_element(By.CSS_SELECTOR, 'td[data-col="eta"]').text
