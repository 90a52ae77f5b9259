"""SIGTERM to a real `peftlab serve` with /v1 requests in flight (issue #30): it stops accepting at
once, a request that can finish within `--shutdown-timeout` is answered, the others are stopped
(their generation too), and the process exits within the timeout and a few seconds (it took
30-40 s: uvicorn waited 30 s for the requests, then the engine's thread).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import needs_shared
from test_serve_backpressure import LONG, body, idle, inference
from test_serve_errors import zero_shot_store
from test_serve_worker import free_port, start_server, stop, wait_for

pytestmark = needs_shared
SHUTDOWN = 3.0
SHORT = 100  # tokens: ~1.2 s
LONGS = 6


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zero_shot_store(tmp_path_factory.mktemp("shutdown"))


def test_sigterm_finishes_or_stops_requests_and_exits_promptly(store: Path) -> None:
    port = free_port()
    proc = start_server(store, port, "--no-worker", "--max-batch", "1", "--shutdown-timeout", str(SHUTDOWN))
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.post(f"{url}/v1/completions", json=body(2), timeout=60)  # the model loaded
        idle(url)
        answers: dict[str, Any] = {}

        def send(name: str, payload: dict[str, Any]) -> None:
            try:
                r = httpx.post(f"{url}/v1/completions", json=payload, timeout=90)
                answers[name] = (r.status_code, r.text)
            except httpx.HTTPError as e:  # the server closed the connection
                answers[name] = (type(e).__name__, None)

        # first one that ends in ~1.5 s, then six that take 1.5-5 s each (by the CPU's speed), one at a time
        # (max batch 1): together far longer than the shutdown timeout on any CPU
        jobs = [("short", body(SHORT))] + [(f"long{i}", body(LONG)) for i in range(LONGS)]
        threads = [threading.Thread(target=send, args=job) for job in jobs]
        threads[0].start()
        wait_for(lambda: inference(url)["running"] == 1, 20, "the short request running", 0.05)
        for t in threads[1:]:
            t.start()
        wait_for(lambda: inference(url)["waiting"] >= 2, 20, "requests waiting", 0.02)

        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: _refused(url), 2, "new connections refused", 0.05)
        proc.wait(timeout=60)
        took = time.perf_counter() - t0
        for t in threads:
            t.join(10)
        assert took < SHUTDOWN + 4, f"the server took {took:.1f} s to exit"
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn raises the signal again once it has shut down
        status, answer = answers["short"]
        assert status == 200 and json.loads(answer)["usage"]["completion_tokens"] == SHORT, answers  # finished
        stopped = 0
        for i in range(LONGS):  # finished within the timeout (whole), or stopped: a 503 in OpenAI's shape or
            status, answer = answers[f"long{i}"]  # the connection closed
            if status == 200:
                assert json.loads(answer)["usage"]["completion_tokens"] == LONG, answers
                continue
            stopped += 1
            if isinstance(status, int):
                assert status == 503 and json.loads(answer)["error"]["code"] == "shutting_down", answers
        assert stopped >= 1 and answers[f"long{LONGS - 1}"][0] != 200, answers  # the last could never have run
    finally:
        stop(proc)


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/health", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False
