"""Jobs and Results in a real browser (headless Chromium), on experiments written by hand (no
model; test_answer's and test_serve_browser_home's `busy`):

- Jobs' live chart shows the validation metric as well as the loss, a line per run, each run its
  own shade of its method's colour, with a toggle per method and per run;
- the worker's raw output reads as a terminal shows it (no escape codes; a progress bar redrawn
  with carriage returns is its last state);
- Results' experiment select changes the address (a reload shows the chosen experiment); the
  trainable share reads 100% and 0.0013%; the tuning chart has its legend and whole-trial ticks.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_answer import EXP, build_store
from test_serve_browser import browser, pytestmark  # noqa: F401 - fixtures and marks
from test_serve_browser_home import BUSY, _wait, add_busy
from test_serve_worker import free_port, start_server, stop

from peftlab.store import Store


def _series(d: Any) -> list[tuple[str, str]]:
    """(label, colour) of each line in the chart, read at once (the page redraws it)."""
    got = d.execute_script('return Array.from(document.querySelectorAll("#jobs-chart svg g.series")).map('
                           '(g) => [g.dataset.series, g.querySelector("polyline").getAttribute("stroke")])')
    return [tuple(x) for x in got]


def _toggle(d: Any, key: str) -> None:
    from selenium.webdriver.common.by import By

    d.find_element(By.CSS_SELECTOR, f'#jobs-chart input.chart-toggle[data-key="{key}"]').click()


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server for this file's pages: test_answer's store with the experiment `busy` added (a
    test may add runs, never change one). Yields (the store, the run ids of `busy`, its address)."""
    store = build_store(tmp_path_factory.mktemp("jobs") / "store")
    ids = add_busy(store)
    port = free_port()
    proc = start_server(store.root, port, "--no-worker")
    yield store, ids, f"http://127.0.0.1:{port}"
    stop(proc)


def test_jobs_chart_shows_the_validation_metric_with_toggles(browser: Any, busy: tuple) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    _, _, base = busy
    d = browser
    d.get(f"{base}/#/jobs/{BUSY}")
    # the loss: train and validation of the three runs that started (the queued one has no curve)
    _wait(d, lambda drv: len(_series(drv)) == 6)
    colors = {name.split(" ")[0]: stroke for name, stroke in _series(d)}
    assert len(set(colors.values())) == 3, colors  # each seed of vera its own shade
    # the validation metric, one line per run, in the same colours
    d.find_element(By.CSS_SELECTOR, '#jobs-chart input[name="chart-metric"][value="metric"]').click()
    _wait(d, lambda drv: [n for n, _ in _series(drv)] == ["vera.s42 validation macro_f1", "vera.s43 validation macro_f1",
                                                         "ia3.s42 validation macro_f1"])
    assert "Validation macro_f1" in d.find_element(By.CSS_SELECTOR, "#jobs-chart h3").text
    assert {n.split(" ")[0]: c for n, c in _series(d)} == colors
    # a method's toggle hides all its runs; a run's toggle hides that run
    _toggle(d, "m:vera")
    _wait(d, lambda drv: [n for n, _ in _series(drv)] == ["ia3.s42 validation macro_f1"])
    _toggle(d, "m:vera")
    _toggle(d, "r:vera.s43")
    _wait(d, lambda drv: [n for n, _ in _series(drv)] == ["vera.s42 validation macro_f1", "ia3.s42 validation macro_f1"])
    # the choice holds across the page's refreshes
    d.execute_script("return renderJobs()")
    assert [n for n, _ in _series(d)] == ["vera.s42 validation macro_f1", "ia3.s42 validation macro_f1"]
    # back to the loss: the hidden run stays hidden
    d.find_element(By.CSS_SELECTOR, '#jobs-chart input[name="chart-metric"][value="loss"]').click()
    _wait(d, lambda drv: len(_series(drv)) == 4)


def test_the_workers_raw_output_reads_as_a_terminal(browser: Any, busy: tuple) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    _, ids, base = busy
    d = browser
    d.get(f"{base}/#/jobs/{BUSY}")
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, f'button.job-logs[data-id="{ids["ia3.s42"]}"]'))
    d.find_element(By.CSS_SELECTOR, f'button.job-logs[data-id="{ids["ia3.s42"]}"]').click()
    _wait(d, lambda drv: "raw output" in drv.find_element(By.ID, "worker-toggle").text)
    d.find_element(By.ID, "worker-toggle").click()
    _wait(d, lambda drv: drv.find_element(By.ID, "worker-raw").is_displayed())
    raw = d.find_element(By.ID, "worker-raw").get_attribute("textContent")
    assert raw.split("\n") == ["WARNING some library note", "Training: 100%|##########| 10/10 [00:10<00:00]", "done"]
    assert "\x1b" not in raw and "[0m" not in raw


def _add_trials(store: Store) -> None:
    """Two tuning trials of ia3 in test_answer's experiment (scored on validation)."""
    for n, f1 in enumerate([61.0, 64.0]):
        run, _ = store.upsert_run(EXP, f"ia3.t{n}", "ia3", f"ia3.t{n}",
                                  {"role": "trial", "variant": "ia3", "trial": {"number": n, "params": {"learning_rate": 0.01 * (n + 1)}}})
        store.finish(run.id, "done", metrics={"macro_f1": f1}, cost={"train_seconds": 5.0})


def test_results_trainable_share_and_the_tuning_chart(browser: Any, busy: tuple) -> None:  # noqa: F811
    """Two bugs of Results, each checked whatever the other does: the trainable share in a
    person's words (100%, 0.0013%; not 1.0e+2%) and the tuning chart's legend and whole-trial ticks."""
    from selenium.webdriver.common.by import By

    store, _, base = busy
    _add_trials(store)
    problems = []
    d = browser
    d.get(f"{base}/#/results/{EXP}")
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#results-table tr[data-run="full"]'))
    full = d.find_element(By.CSS_SELECTOR, '#results-table tr[data-run="full"]').text
    if " 100% " not in f" {full} " or "e+" in full:
        problems.append(f"full's trainable share: {full}")
    # the tuning chart: a legend of the methods tuned, ticks at whole trials only
    _wait(d, lambda drv: drv.find_element(By.ID, "report-frame").get_attribute("data-loaded") == "1")
    d.switch_to.frame(d.find_element(By.ID, "report-frame"))
    tuning = d.find_element(By.ID, "tuning")
    legend = [e.text.strip() for e in tuning.find_elements(By.CSS_SELECTOR, ".legend label")]
    if legend != ["ia3"]:
        problems.append(f"tuning legend: {legend}")
    ticks = [t.text for t in tuning.find_elements(By.CSS_SELECTOR, '[data-chart="budget"] svg text.tick')]
    if ticks[-3:] != ["0", "1", "2"]:  # the x ticks come last: 0, 1, 2 trials (not 0.5, 1.5)
        problems.append(f"tuning ticks: {ticks}")
    d.switch_to.default_content()
    d.get(f"{base}/#/results/{BUSY}")
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#results-table tr[data-seed="vera.s43"]'))
    vera = d.find_element(By.CSS_SELECTOR, '#results-table tr[data-run="vera"]').text
    if not re.search(r"\b0\.0013%", vera):
        problems.append(f"vera's trainable share: {vera}")
    assert not problems, problems


def test_results_select_changes_the_address(browser: Any, busy: tuple) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, _, base = busy
    d = browser
    d.get(f"{base}/#/results/{EXP}")
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#results-table tr[data-run="full"]'))
    # choosing another experiment changes the address; a reload shows it
    Select(d.find_element(By.ID, "results-exp")).select_by_value(BUSY)
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#results-table tr[data-seed="vera.s43"]'))
    assert d.current_url.endswith(f"#/results/{BUSY}")
    d.refresh()
    _wait(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, '#results-table tr[data-seed="vera.s43"]'))
    assert d.find_element(By.ID, "results-exp").get_attribute("value") == BUSY
    # Back returns to the previous experiment
    d.back()
    _wait(d, lambda drv: drv.find_element(By.ID, "results-exp").get_attribute("value") == EXP)
