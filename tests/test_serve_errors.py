"""Every refusal on /v1 in OpenAI's error shape (issue #30): unknown routes, wrong methods, bodies
that are not UTF-8, JSON or an object, numbers out of range, missing and misnamed parameters;
the rest of the API keeps FastAPI's {"detail"}. In-process (TestClient) on a store holding one
zero-shot run of stories260k.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_shared, tiny_causal, write_experiment

pytestmark = needs_shared


def zero_shot_store(tmp: Path) -> Path:
    """A store with `tiny/zero-shot` (stories260k, causal-lm): an evaluation only, no training."""
    from peftlab.store import Store
    from peftlab.train.runner import plan, run_experiment

    body = tiny_causal(["zero-shot"], threads=1)
    body["data"]["max_test_examples"] = 2
    runs = run_experiment(plan(write_experiment(tmp, body)), Store(tmp / "store"), isolation="inprocess",
                          echo=lambda *_: None)
    assert [r.status for r in runs] == ["done"], [(r.name, r.error) for r in runs]
    return tmp / "store"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastapi.testclient import TestClient

    from peftlab.serve.app import Settings, create_app

    store = zero_shot_store(tmp_path_factory.mktemp("errors"))
    with TestClient(create_app(Settings(store=str(store), start_worker=False)), base_url="http://127.0.0.1") as c:
        yield c


def _openai_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


CHAT = {"model": "tiny/zero-shot", "messages": [{"role": "user", "content": "0 Year: 2018"}]}


def test_unknown_routes_and_methods(client: Any) -> None:
    err = _openai_error(client.get("/v1/nope"), 404)
    assert "GET /v1/nope" in err["message"] and "/v1/chat/completions" in err["message"]
    assert err["type"] == "invalid_request_error"
    _openai_error(client.post("/v1/engines/x/completions", json={}), 404)
    err = _openai_error(client.get("/v1/chat/completions"), 405)
    assert "POST" in err["message"]
    r = client.delete("/v1/models")
    assert _openai_error(r, 405)["message"].endswith("use GET") and r.headers["allow"] == "GET"
    assert client.get("/api/nope").json() == {"detail": "Not Found"}  # the rest of the API keeps its shape
    assert client.delete("/api/health").json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize(("body", "words"), [
    (b'{"model": "tiny/zero-shot", ', "not valid JSON: Expecting property name enclosed in double quotes at line 1, "
                                     "column 29"),
    (b'{"model": "tiny/zero-shot",\n "messages": [}', "line 2"),
    (b'\xff\xfe{"model": "x"}', "not valid UTF-8 (byte 0xff at position 0)"),
    (b"", "body is empty"),
    (b"[1, 2]", "not a JSON object"),
])
def test_bodies_that_do_not_parse(client: Any, body: bytes, words: str) -> None:
    err = _openai_error(client.post("/v1/chat/completions", content=body,
                                    headers={"content-type": "application/json"}), 400)
    assert words in err["message"] and err["param"] is None  # no character position posing as a parameter
    assert client.post("/api/experiments", content=body,  # elsewhere: FastAPI's own
                       headers={"content-type": "application/json"}).status_code == 422


@pytest.mark.parametrize(("change", "param"), [
    ({"seed": 2**70}, "seed"),  # was HTTP 500 "Overflow when unpacking long long"
    ({"seed": -(2**70)}, "seed"),
    ({"max_tokens": 2**70}, "max_tokens"),
    ({"max_completion_tokens": 2**40}, "max_completion_tokens"),
    ({"n": 2**70}, "n"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": float("inf")}, "top_p"),
    ({"messages": [{"role": 3, "content": "x"}]}, "messages[0].role"),
    ({"stop": [1]}, "stop"),
])
def test_numbers_out_of_range_and_bad_values_name_the_parameter(client: Any, change: dict, param: str) -> None:
    body = json.dumps({**CHAT, "temperature": 1.0, **change}).encode()  # NaN/Infinity as Python's json writes them
    err = _openai_error(client.post("/v1/chat/completions", content=body,
                                    headers={"content-type": "application/json"}), 400)
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error"


def test_sampling_seeds_at_the_edges_of_the_range_answer(client: Any) -> None:
    for seed in (2**64 - 1, -(2**63)):
        r = client.post("/v1/chat/completions", json={**CHAT, "temperature": 1.0, "seed": seed, "max_tokens": 2})
        assert r.status_code == 200, r.text


def test_missing_and_unknown_parameters(client: Any) -> None:
    err = _openai_error(client.post("/v1/chat/completions", json={"messages": CHAT["messages"]}), 400)
    assert err["param"] == "model" and err["message"] == "Missing required parameter: 'model'"
    err = _openai_error(client.post("/v1/completions", json={"model": "tiny/zero-shot", "prompt": "x",
                                                             "best_of": 2}), 400)
    assert err["param"] == "best_of" and "Unrecognized" in err["message"]


def test_too_long_messages_in_plain_words(client: Any) -> None:
    long = [{"role": "user", "content": "1 2 " * 400}]
    err = _openai_error(client.post("/v1/chat/completions", json={**CHAT, "messages": long}), 400)
    assert "your messages take " in err["message"] and err["code"] == "context_length_exceeded"
    err = _openai_error(client.post("/v1/completions", json={"model": "tiny/zero-shot", "prompt": "1 2 " * 400}), 400)
    assert "your prompt takes " in err["message"]
