"""The OpenAI-compatible endpoint, with the official `openai` client against a real `peftlab serve`
on 127.0.0.1: models, chat and text completions (greedy = the run's own test predictions),
streaming, errors in OpenAI's shape, the token, and several adapters at once (batched).

One store, trained in-process: `tiny` (causal-lm on stories260k: zero-shot, two LoRA adapters,
IA3, prompt-tuning and full fine-tuning) and `cls` (classification on all-MiniLM-L6-v2: zero-shot
and LoRA).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DATA, MINILM, STORIES, needs_shared, tiny_causal, write_experiment
from test_serve_worker import free_port, start_server, stop

openai = pytest.importorskip("openai")

from peftlab.store import Store  # noqa: E402

pytestmark = needs_shared
TOKEN = "s3cret-key"
PHRASEBANK = DATA / "financial_phrasebank"
CAUSAL = ["zero-shot", "lora", "lora-b", "ia3", "prompt-tuning", "full"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peftlab.train.runner import plan, run_experiment

    tmp = tmp_path_factory.mktemp("openai")
    short = tmp / "short-test.jsonl"  # statista's tables run past stories260k's 512 positions: cut them
    with open(DATA / "statista" / "test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(8)]
    short.write_text("".join(json.dumps({"table": r["table"][:60], "title": r["title"]}) + "\n" for r in rows),
                     encoding="utf-8")
    lm = tiny_causal(["zero-shot", {"name": "lora", "options": {"r": 4}},
                      {"name": "lora", "label": "lora-b", "options": {"r": 8}, "learning_rate": 0.01}, "ia3",
                      {"name": "prompt-tuning", "num_virtual_tokens": 4}, "full"], max_steps=4, threads=1)
    lm["evaluation"]["max_new_tokens"] = 10
    lm["data"]["test"] = str(short)
    lm["training"]["max_source_length"] = 96  # no test prompt is cut: the endpoint never cuts one
    cls = {"name": "cls", "model": str(MINILM), "task": "classification",
           "data": {"train": str(PHRASEBANK / "train.jsonl"), "test": str(PHRASEBANK / "test.jsonl"), "input": "text",
                    "label": "label", "max_train_examples": 16, "max_test_examples": 4},
           "methods": ["zero-shot", "lora"],
           "training": {"max_steps": 2, "batch_size": 8, "precision": "fp32", "threads": 1, "max_source_length": 64}}
    s = Store(tmp / "store")
    for body, name in ((lm, "lm.yaml"), (cls, "cls.yaml")):
        runs = run_experiment(plan(write_experiment(tmp, body, name)), s, isolation="inprocess", echo=lambda *_: None)
        assert all(r.status == "done" for r in runs), [(r.name, r.error) for r in runs]
    return tmp / "store"


@pytest.fixture(scope="module")
def server(store: Path) -> Any:
    port = free_port()
    proc = start_server(store, port, "--no-worker", "--token", TOKEN)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=TOKEN, max_retries=0, timeout=120)


def predictions(store: Path, experiment: str, run: str) -> list[dict[str, Any]]:
    with open(Store(store).find_run(experiment, run).file("predictions"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def tables(store: Path) -> dict[str, str]:
    """Each formatted test prompt of `tiny` -> its raw input (the table): what a client sends."""
    out = {}
    with open(store.parent / "short-test.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out[f"Table: {row['table']}\nTitle:"] = row["table"]
    return out


def test_models_lists_every_done_run(client: Any, store: Path) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [f"tiny/{n}" for n in CAUSAL] + ["cls/zero-shot", "cls/lora"]
    m = client.models.retrieve("tiny/lora")
    assert m.id == "tiny/lora" and m.object == "model" and m.owned_by == "peftlab"
    assert m.parent == str(STORIES)


@pytest.mark.parametrize("run", CAUSAL)
def test_greedy_completions_are_the_runs_own_outputs(client: Any, store: Path, run: str) -> None:
    raw = tables(store)
    for p in predictions(store, "tiny", run)[:3]:
        chat = client.chat.completions.create(model=f"tiny/{run}", temperature=0,
                                              messages=[{"role": "user", "content": raw[p["input"]]}])
        text = client.completions.create(model=f"tiny/{run}", prompt=raw[p["input"]], temperature=0)
        for got, finish, usage in ((chat.choices[0].message.content, chat.choices[0].finish_reason, chat.usage),
                                   (text.choices[0].text, text.choices[0].finish_reason, text.usage)):
            assert got.strip() == p["output"], run
            assert finish == ("stop" if p["stopped"] else "length")
            assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
            assert usage.completion_tokens == 10 if not p["stopped"] else usage.completion_tokens <= 10
        assert chat.usage.prompt_tokens == text.usage.prompt_tokens > 10


def test_streaming_equals_the_whole_answer(client: Any, server: str, store: Path) -> None:
    raw = tables(store)
    p = predictions(store, "tiny", "lora")[0]
    msgs = [{"role": "user", "content": raw[p["input"]]}]
    whole = client.chat.completions.create(model="tiny/lora", messages=msgs, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny/lora", messages=msgs, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # it did stream
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny/ia3", prompt=raw[p["input"]], temperature=0, stream=True))
    assert text.strip() == predictions(store, "tiny", "ia3")[0]["output"]
    # on the wire: server-sent events ending with [DONE]
    r = httpx.post(f"{server}/v1/completions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
                   json={"model": "tiny/lora", "prompt": "x", "max_tokens": 2, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.text.split("\n") if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_several_adapters_at_once_each_answer_its_own(client: Any, server: str, store: Path) -> None:
    """Concurrent requests for different runs of one base (batched together where peft allows):
    each answer is that run's own greedy output."""
    raw = tables(store)
    want = {run: predictions(store, "tiny", run)[:2] for run in ("lora", "lora-b", "zero-shot", "ia3")}
    jobs = [(run, p) for run, ps in want.items() for p in ps] * 2
    got: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def ask(i: int, run: str, prompt: str) -> None:
        try:
            start.wait()
            got[i] = client.completions.create(model=f"tiny/{run}", prompt=prompt, temperature=0).choices[0].text
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i, run, raw[p["input"]])) for i, (run, p) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (run, p) in enumerate(jobs):
        assert got[i].strip() == p["output"], run
    batches = httpx.get(f"{server}/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert any(runs > 1 for _, runs in batches["inference"]["last_batches"]), batches  # adapters mixed in a batch


def test_sampling_stop_and_seed(client: Any, store: Path) -> None:
    raw = tables(store)
    p = predictions(store, "tiny", "lora")[0]
    prompt = raw[p["input"]]

    def ask(**kw: Any) -> Any:
        return client.completions.create(model="tiny/lora", prompt=prompt, **kw).choices[0]

    assert ask(temperature=1.0, top_p=1e-6).text.strip() == p["output"]  # the nucleus is the top token: greedy
    a, b = ask(temperature=1.5, seed=7, max_tokens=12), ask(temperature=1.5, seed=7, max_tokens=12)
    assert a.text == b.text
    assert {ask(temperature=2.0, seed=s, max_tokens=12).text for s in range(4)} != {a.text}  # it does sample
    cut = p["output"][len(p["output"]) // 2:][:2]
    stopped = ask(temperature=0, stop=[cut, "zzz"])
    assert stopped.finish_reason == "stop" and cut not in stopped.text
    assert p["output"].startswith(stopped.text.strip())


def test_classification_answers_the_label(client: Any, store: Path) -> None:
    for run in ("zero-shot", "lora"):
        for p in predictions(store, "cls", run)[:2]:
            r = client.chat.completions.create(model=f"cls/{run}", messages=[{"role": "user", "content": p["input"]}])
            assert r.choices[0].message.content == p["output"]
            assert abs(r.model_extra["peftlab"]["confidence"] - p["confidence"]) <= 1e-4


def _refused(call: Any, status: int) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as e:
        call()
    assert e.value.status_code == status
    body = e.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_errors_in_openais_shape(client: Any, server: str) -> None:
    msgs = [{"role": "user", "content": "0 Year: 2018"}]
    err = _refused(lambda: client.chat.completions.create(model="tiny/nope", messages=msgs), 404)
    assert err["code"] == "model_not_found" and "tiny/lora" in err["message"] and "cls/lora" in err["message"]
    _refused(lambda: client.models.retrieve("nope/x"), 404)
    err = _refused(lambda: client.chat.completions.create(model="tiny/lora", messages=msgs, n=2), 400)
    assert err["param"] == "n" and "n > 1" in err["message"]
    err = _refused(lambda: client.completions.create(model="tiny/lora", prompt="1 2 " * 400), 400)
    assert err["code"] == "context_length_exceeded" and "512" in err["message"]
    err = _refused(lambda: client.completions.create(model="tiny/lora", prompt="x", max_tokens=600), 400)
    assert err["code"] == "context_length_exceeded" and err["param"] == "max_tokens"
    err = _refused(lambda: client.chat.completions.create(model="tiny/lora", messages=msgs, temperature=3), 400)
    assert err["param"] == "temperature"
    err = _refused(lambda: client.chat.completions.create(model="tiny/lora", messages=msgs,
                                                          extra_body={"best_of": 3}), 400)
    assert "Unrecognized" in err["message"] and err["param"] == "best_of"
    two = [*msgs, {"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]
    err = _refused(lambda: client.chat.completions.create(model="tiny/lora", messages=two), 400)
    assert "chat template" in err["message"]
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    assert e.value.response.json()["error"]["type"] == "authentication_error"
    for path in ("/v1/models", "/v1/chat/completions"):  # no token at all
        r = httpx.request("GET" if path.endswith("models") else "POST", f"{server}{path}", json={})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_requests_of_one_base_share_batches(store: Path) -> None:
    """In-process: requests that wait while a batch runs are answered together, the LoRA and
    zero-shot rows in one mixed batch, IA3's in its own; and one at a time with batching off."""
    from peftlab.infer.engine import Engine
    from peftlab.infer.pool import ModelPool

    raw = tables(store)
    want = {run: predictions(store, "tiny", run)[0] for run in ("lora", "lora-b", "zero-shot", "ia3")}
    for batching in (True, False):
        engine = Engine(Store(store), ModelPool(), batching=batching)
        with engine.pool.use(engine.runnable("tiny/lora").run):  # hold the base: its requests wait
            futures = [engine.submit(engine.prepare("tiny/zero-shot", prompt="x", temperature=0))]
            while engine.pending:  # taken, and waiting for the base
                time.sleep(0.01)
            jobs = [engine.prepare(f"tiny/{run}", prompt=raw[p["input"]], temperature=0) for run, p in want.items()]
            futures += [engine.submit(j) for j in jobs]
        answers = [f.result(timeout=120) for f in futures]
        for (run, p), a in zip(want.items(), answers[1:], strict=True):
            assert a["text"].strip() == p["output"], (batching, run)
        engine.close()
        if batching:
            assert engine.batches == [(1, 1), (3, 3), (1, 1)]  # lora, lora-b and zero-shot mixed; ia3 alone
        else:
            assert engine.batches == [(1, 1)] * 5
