"""lm-evaluation-harness against `/v1/completions` (issue 26): prompts of token ids, `echo` and
`logprobs`, the loglikelihood requests of its multiple-choice tasks, answered by a real
`peftlab serve` as vLLM answers them. A prompt's log-probabilities are the model's own (checked
against peft + transformers directly), and lm-eval's `local-completions` model on the endpoint
scores a multiple-choice task exactly as lm-eval's own HF model does on the same adapter.

One store, trained in-process: `tiny` (causal-lm on stories260k: zero-shot, LoRA, prompt-tuning).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import yaml
from conftest import DATA, STORIES, needs_shared, tiny_causal, write_experiment
from test_serve_worker import free_port, start_server, stop

from peftlab.store import Store

pytestmark = needs_shared
RUNS = ["zero-shot", "lora", "prompt-tuning"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peftlab.train.runner import plan, run_experiment

    tmp = tmp_path_factory.mktemp("lm-eval")
    exp = tiny_causal(["zero-shot", {"name": "lora", "options": {"r": 4}, "learning_rate": 0.01},
                       {"name": "prompt-tuning", "num_virtual_tokens": 4}], max_steps=4, threads=1)
    runs = run_experiment(plan(write_experiment(tmp, exp)), Store(tmp / "store"), isolation="inprocess",
                          echo=lambda *_: None)
    assert all(r.status == "done" for r in runs), [(r.name, r.error) for r in runs]
    return tmp / "store"


@pytest.fixture(scope="module")
def server(store: Path) -> Any:
    port = free_port()
    proc = start_server(store, port, "--no-worker")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def _model(store: Path, run: str) -> Any:
    """The run's model as a user loads it: the base in plain transformers, its adapter through peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(STORIES, dtype=torch.float32)
    if run == "zero-shot":
        return base.eval()
    return PeftModel.from_pretrained(base, Store(store).run_dir("tiny", run) / "adapter").eval()


@pytest.mark.parametrize("run", RUNS)
def test_prompt_logprobs_are_the_models_own(server: str, store: Path, run: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(STORIES)
    ids = tok("Once upon a time there was a little girl", add_special_tokens=False)["input_ids"]
    r = httpx.post(f"{server}/v1/completions", timeout=60, json={
        "model": f"tiny/{run}", "prompt": [ids], "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0})
    assert r.status_code == 200, r.text
    (choice,) = r.json()["choices"]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ids) + 1
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    with torch.no_grad():
        out = _model(store, run)(input_ids=torch.tensor([ids])).logits[0, -len(ids):]
    want = torch.log_softmax(out.float(), -1)
    for i in range(1, len(ids)):
        assert math.isclose(lp["token_logprobs"][i], want[i - 1, ids[i]].item(), abs_tol=1e-4), (i, run)
        assert math.isclose(max(lp["top_logprobs"][i].values()), want[i - 1].max().item(), abs_tol=1e-4)
    nxt = int(want[-1].argmax())
    assert choice["text"] == tok.decode(ids) + tok.decode([nxt])  # echo: the prompt, then the one new token
    assert r.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}


def test_several_prompts_and_what_is_refused(server: str) -> None:
    url = f"{server}/v1/completions"
    r = httpx.post(url, timeout=60, json={"model": "tiny/lora", "prompt": [[1, 30, 40], [1, 50]], "max_tokens": 0,
                                          "echo": True, "logprobs": 0})
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert [len(c["logprobs"]["token_logprobs"]) for c in choices] == [3, 2]
    # without echo: the completion's token only
    r = httpx.post(url, timeout=60, json={"model": "tiny/lora", "prompt": [1, 30, 40], "max_tokens": 1, "logprobs": 2})
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 1 and len(lp["top_logprobs"][0]) == 2 and lp["text_offset"] == [0]

    def refused(body: dict, param: str, words: str, path: str = "/v1/completions") -> None:
        r = httpx.post(f"{server}{path}", timeout=60, json={"model": "tiny/lora", **body})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == param and words in err["message"], err

    refused({"prompt": [1, 2], "logprobs": 1, "max_tokens": 5}, "max_tokens", "set max_tokens to 0 or 1")
    refused({"prompt": [1, 2], "max_tokens": 0}, "max_tokens", "echo: true")
    refused({"prompt": [1, 999999], "echo": True, "max_tokens": 0}, "prompt", "not in this model's vocabulary")
    refused({"prompt": [], "max_tokens": 1}, "prompt", "prompt is empty")
    refused({"prompt": "x", "echo": True, "stream": True}, "stream", "stream: false")
    refused({"messages": [{"role": "user", "content": "x"}], "logprobs": True}, "logprobs", "/v1/completions",
            path="/v1/chat/completions")


def _task(tmp: Path) -> Path:
    """A multiple-choice task file for lm-eval: statista tables, each with its own title and three
    other rows' titles as the choices."""
    with open(DATA / "statista" / "test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(12)]
    docs = []
    for i, r in enumerate(rows):
        choices = [rows[(i + k) % len(rows)]["title"][:60] for k in range(4)]
        docs.append({"question": f"Table: {r['table'][:80]}\nTitle:", "choices": [" " + c for c in choices],
                     "answer": 0})
    data = tmp / "mc.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (tmp / "peftlab_mc.yaml").write_text(yaml.safe_dump({
        "task": "peftlab_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}), encoding="utf-8")
    return tmp


def test_lm_eval_scores_a_multiple_choice_task_on_the_endpoint_as_on_the_model(server: str, store: Path,
                                                                                 tmp_path: Path) -> None:
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    tasks = TaskManager(include_path=str(_task(tmp_path)))

    def evaluate(model: str, args: dict) -> tuple[float, list[float]]:
        out = lm_eval.simple_evaluate(model=model, model_args=args, tasks=["peftlab_mc"], task_manager=tasks,
                                      log_samples=True, batch_size=1)
        samples = sorted(out["samples"]["peftlab_mc"], key=lambda s: s["doc_id"])
        return out["results"]["peftlab_mc"]["acc,none"], [float(r[0]) for s in samples for r in s["filtered_resps"]]

    adapter = Store(store).run_dir("tiny", "lora") / "adapter"
    served = evaluate("local-completions", {"base_url": f"{server}/v1/completions", "model": "tiny/lora",
                                            "tokenizer": str(STORIES), "tokenizer_backend": "huggingface",
                                            "tokenized_requests": True, "num_concurrent": 1, "max_retries": 1,
                                            "add_bos_token": True})  # as lm-eval's HF model (the tokenizer's own)
    local = evaluate("hf", {"pretrained": str(STORIES), "peft": str(adapter), "dtype": "float32", "device": "cpu"})
    print(f"\nlm-eval acc: endpoint {served[0]}, hf model {local[0]}")
    assert len(served[1]) == len(local[1]) == 48  # 12 questions x 4 choices
    assert served[0] == local[0]
    for a, b in zip(served[1], local[1], strict=True):
        assert math.isclose(a, b, abs_tol=1e-3), (a, b)
