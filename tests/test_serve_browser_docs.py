"""The API docs work offline (#27): /docs (Swagger UI) loads every script and style from
this server, nothing from a CDN, and renders the operations; the header's API link opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_browser import CHROMIUM, browser, until  # noqa: F401 - the fixture
from test_serve_worker import free_port, start_server, stop

pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed")


def _foreign(d: Any, base: str) -> list[str]:
    """Every resource the page asked for that is not on this server."""
    urls = d.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    return [u for u in urls if not u.startswith(base)]


def test_the_api_docs_load_from_this_server(browser: Any, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By

    d = browser
    port = free_port()
    server = start_server(tmp_path / "store", port, "--no-worker")
    base = f"http://127.0.0.1:{port}"

    def wait(cond: Any, timeout: float = 30) -> Any:
        return until(d, cond, timeout, 0.3)

    try:
        page = httpx.get(f"{base}/docs").text
        assert "cdn." not in page and "//" not in page.replace("http://", "").replace("https://", "x")
        d.get(f"{base}/")
        link = d.find_element(By.CSS_SELECTOR, "header a[href='/docs']")
        assert link.get_attribute("target") == "_blank"
        d.get(f"{base}/docs")
        wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")) > 10)
        assert "/v1/chat/completions" in d.find_element(By.CSS_SELECTOR, ".swagger-ui").text
        assert _foreign(d, base) == []
    finally:
        stop(server)


def test_no_script_hides_a_browser_global(browser: Any) -> None:  # noqa: F811 - the fixture
    """The pages' scripts share one global scope: a top-level `function history()` once hid
    `window.history`, and choosing another experiment on Results threw (pushState is not a function)."""
    import re

    names: set[str] = set()
    for js in (Path(__file__).parents[1] / "src" / "peftlab" / "serve" / "static").glob("*.js"):
        src = js.read_text(encoding="utf-8")
        names |= set(re.findall(r"^(?:async\s+)?function\s+([A-Za-z_$][\w$]*)", src, re.M))
        names |= set(re.findall(r"^(?:const|let|var|class)\s+([A-Za-z_$][\w$]*)", src, re.M))
    assert len(names) > 50  # the scripts were found and read
    browser.get("about:blank")
    hidden = browser.execute_script("return arguments[0].filter((n) => n in window)", sorted(names))
    assert hidden == [], f"rename these top-level names, the browser already defines them: {hidden}"
