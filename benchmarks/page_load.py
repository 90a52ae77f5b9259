"""How long the web service's Results and Export pages take to show an experiment, in headless
Chromium as a user opens them: from navigation to the page's content on screen (the Results
leaderboard and its recommendation headline; the Export table). Each page is opened --repeat
times in a fresh tab of one browser, against `peftlab serve --no-worker` on 127.0.0.1; the first
opening of each is also reported apart (caches are cold then: the leaderboard's, the export zips').

    python benchmarks/page_load.py --store STORE --experiment NAME     # an existing store
    python benchmarks/page_load.py --tiny --json out.json               # a tiny experiment: checks it runs

Needs Debian's chromium and chromium-driver (scripts/setup.sh installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_playground import _free_port, start_server  # noqa: E402
from tiny import build_store, experiment  # noqa: E402

PAGES = {  # page: (address, what shows that it has loaded)
    "results": ("#/results/{e}", "#recommendation p.headline, #results-table tbody tr"),
    "export": ("#/export/{e}", "#export-table tbody tr"),
}


def _browser(tmp: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    opts = Options()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1360,1000",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp)}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def measure(url: str, name: str, repeat: int, timeout: float = 300) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = _browser(Path(tmp))
        try:
            for page, (address, ready) in PAGES.items():
                seconds = []
                for _ in range(repeat):
                    d.get("about:blank")
                    t0 = time.perf_counter()
                    d.get(f"{url}/{address.format(e=name)}")
                    WebDriverWait(d, timeout).until(lambda drv, r=ready: drv.find_elements(By.CSS_SELECTOR, r))
                    seconds.append(time.perf_counter() - t0)
                out[page] = {"first_seconds": round(seconds[0], 3), "median_seconds": round(statistics.median(seconds), 3),
                             "seconds": [round(s, 3) for s in seconds]}
        finally:
            d.quit()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="an existing store (default: a tiny experiment trained here)")
    ap.add_argument("--experiment", help="the experiment to open (default: the store's one with most runs)")
    ap.add_argument("--repeat", type=int, default=5, help="openings of each page (default 5)")
    ap.add_argument("--tiny", action="store_true", help="a tiny experiment, 2 openings: checks that this runs")
    ap.add_argument("--json", help="write the result here as JSON")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="page-load-"))
    store = Path(args.store) if args.store else None
    if store is None:
        body = experiment("pages", [{"name": "zero-shot"}, {"name": "lora", "options": {"r": 4}}], max_steps=2)
        store = build_store(tmp / "store", body)
    from peftlab.store import Store

    s = Store(store)
    name = args.experiment or max((e["name"] for e in s.experiments()), key=lambda n: len(s.runs(n)))
    repeat = 2 if args.tiny else args.repeat
    port = _free_port()
    proc = start_server(store, port, None)
    try:
        pages = measure(f"http://127.0.0.1:{port}", name, repeat)
    finally:
        proc.terminate()
        proc.wait(30)
    result = {"mode": "tiny" if args.tiny else "full", "experiment": name, "runs": len(s.runs(name)),
              "repeat": repeat, "pages": pages, "cpu": platform.processor() or platform.machine(),
              "load_average": [round(x, 2) for x in os.getloadavg()[:2]], "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                              time.gmtime())}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
