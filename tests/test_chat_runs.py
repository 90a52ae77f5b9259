"""Chat data through real runs: messages and sharegpt files train on stories260k (every
assistant turn learnt, the loss falls) and evaluation generates the last assistant turn from
the exact training prefix; the assistant-only mask pinned through the task on SmolLM2's
template; bad rows, formats and the hub through preflight; predict/evaluate on a chat run;
and examples/samsum-chat.yaml end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DATA, REPO, SMOLLM, STORIES, needs_shared, write_experiment

from peftlab.cli import main
from peftlab.config import load_experiment
from peftlab.data.chat_encoding import IGNORE_INDEX, encode_conversation, encode_prompt
from peftlab.data.formats import DATA_FORMATS, Conversation, Turn
from peftlab.errors import ConfigError, DataError
from peftlab.store import Store
from peftlab.train.runner import plan, preflight, run_experiment

pytestmark = needs_shared

COLOURS = ["red", "blue", "green", "black", "white", "pink"]
SHAPES = ["round", "square", "flat", "tall", "long", "small"]


def _conversations(n: int, offset: int = 0) -> list[list[tuple[str, str]]]:
    """Two-exchange conversations whose replies follow from the question: learnable in a few steps."""
    out = []
    for i in range(offset, offset + n):
        c, s = COLOURS[i % 6], SHAPES[(i // 6) % 6]
        out.append([("user", f"Item {i}: colour?"), ("assistant", f"It is {c}."),
                    ("user", "And the shape?"), ("assistant", f"The {c} one is {s}.")])
    return out


def _row(conv: list[tuple[str, str]], fmt: str, last_reply: bool = True) -> dict[str, Any]:
    turns = conv if last_reply else conv[:-1]
    if fmt == "messages":
        return {"messages": [{"role": r, "content": c} for r, c in turns]}
    return {"system": "Answer briefly.",
            "conversations": [{"from": {"user": "human", "assistant": "gpt"}[r], "value": c} for r, c in turns]}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def _chat_experiment(tmp_path: Path, fmt: str, **data: Any) -> dict[str, Any]:
    train = _write(tmp_path / f"{fmt}-train.jsonl", [_row(c, fmt) for c in _conversations(48)])
    test = _write(tmp_path / f"{fmt}-test.jsonl", [_row(c, fmt) for c in _conversations(6, offset=100)])
    return {
        "name": f"chat-{fmt}", "model": str(STORIES), "task": "causal-lm",
        "data": {"train": str(train), "test": str(test), "max_validation_examples": 4, **data},
        "methods": [{"name": "lora", "learning_rate": 0.01}],
        "training": {"max_steps": 16, "batch_size": 8, "max_source_length": 160, "max_target_length": 24,
                     "logging_steps": 1, "precision": "fp32", "warmup_ratio": 0.0},
        "evaluation": {"max_new_tokens": 12, "batch_size": 8},
    }


@pytest.fixture(scope="module")
def messages_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Store, list[str]]:
    tmp = tmp_path_factory.mktemp("chat-messages")
    p = plan(write_experiment(tmp, _chat_experiment(tmp, "messages")))
    store = Store(tmp / "store")
    said: list[str] = []
    [run] = run_experiment(p, store, isolation="inprocess", echo=said.append)
    return run, store, said


def _check_trained(run: Any, store: Store, fmt: str, said: list[str]) -> None:
    assert run.status == "done", run.error
    assert any(s.startswith("note: data.format auto: ") and f": {fmt} (" in s for s in said), said
    assert run.info["data"]["format"] == fmt
    assert run.info["data"]["truncated_train_rows"] == 0  # both exchanges of every conversation trained
    losses = [v for _, v in sorted(store.curves(run.id)["train_loss"])]
    assert len(losses) == 16 and sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4, losses
    preds = _jsonl(run.file("predictions"))
    assert len(preds) == 6
    for i, p in enumerate(preds):  # the last assistant turn, generated from the conversation before it
        c, s = COLOURS[(100 + i) % 6], SHAPES[((100 + i) // 6) % 6]
        assert p["reference"] == f"The {c} one is {s}."
        assert p["input"].endswith(f"User: Item {100 + i}: colour?\nAssistant: It is {c}.\nUser: And the shape?")
    assert run.metrics["rougeL"] > 30, preds  # it learnt the replies, not just their shape


def test_messages_file_trains_and_evaluates_the_last_turn(messages_run: tuple[Any, Store, list[str]]) -> None:
    _check_trained(*messages_run[:2], "messages", messages_run[2])


def test_sharegpt_file_trains_and_evaluates_the_last_turn(tmp_path: Path) -> None:
    p = plan(write_experiment(tmp_path, _chat_experiment(tmp_path, "sharegpt")))
    store = Store(tmp_path / "store")
    said: list[str] = []
    [run] = run_experiment(p, store, isolation="inprocess", echo=said.append)
    _check_trained(run, store, "sharegpt", said)
    assert _jsonl(run.file("predictions"))[0]["input"].startswith(
        "System: Answer briefly.\nUser: Item 100")


def _task_for(tmp_path: Path, model: Path, fmt: str = "messages") -> tuple[Any, Any]:
    from peftlab.models import resolve_model
    from peftlab.tasks.build import load_task

    body = _chat_experiment(tmp_path, fmt)
    body["model"] = str(model)
    lp = plan(write_experiment(tmp_path, body))
    data = preflight(lp).data
    return load_task(lp.cfg, resolve_model(lp.cfg.model, lp.base_dir), None, "fp32"), data


@pytest.mark.skipif(not (SMOLLM / "tokenizer.json").is_file(), reason="SmolLM2 tokenizer not present")
def test_mask_pinned_through_the_task_on_smollm_template(tmp_path: Path) -> None:
    task, data = _task_for(tmp_path, SMOLLM)
    ex = data.test[0]  # Item 100: white, long
    f = task.encode(ex)
    ids, labels = f["input_ids"], f["labels"]
    trained = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    assert all(labels[i] == ids[i] for i in trained)
    spans = task.tok.decode([ids[i] for i in trained])
    assert spans == "It is white.<|im_end|>The white one is long.<|im_end|>"
    # Exactly these positions: the two replies and their <|im_end|>, nothing of the headers,
    # the default system turn SmolLM2's template adds, or the user turns.
    text = task.tok.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.count("<|im_start|>assistant\n") == 2
    assert len(ids) == 65 and trained == [38, 39, 40, 41, 42, 57, 58, 59, 60, 61, 62, 63]  # the pin
    first, second = _runs(trained)
    assert len(first) == len(task.tok("It is white.", add_special_tokens=False)["input_ids"]) + 1
    assert len(second) == len(task.tok("The white one is long.", add_special_tokens=False)["input_ids"]) + 1
    assert task.tok.decode(ids[: first[0]]).endswith("<|im_start|>assistant\n")
    assert task.tok.decode(ids[second[-1] + 1 :]) == "\n"  # the newline after the last <|im_end|>: not learnt
    # Evaluation's prompt is the training sequence up to the last reply; its target that reply.
    prompt = task.prompt_of(ex)
    assert prompt == ids[: second[0]]
    assert task.target_of(ex) == ids[second[0] : second[-1] + 1]
    # A bare input (the playground's) is one user turn, rendered by the same encoder; with a target,
    # that is its reply (infer.loading.example(source, reference)).
    assert task.prompt("Item 7: colour?") == encode_prompt(task.tok, Conversation(None, [Turn("user", "Item 7: colour?")]))
    from peftlab.data.prepare import Example

    bare = Example(source="Item 7: colour?", target="It is pink.")
    assert task.prompt_of(bare) == task.prompt("Item 7: colour?")
    assert task.tok.decode(task.target_of(bare)) == "It is pink.<|im_end|>"


def _runs(positions: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in positions:
        if out and out[-1][-1] == i - 1:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def test_stories_plain_layout_through_the_task(tmp_path: Path) -> None:
    task, data = _task_for(tmp_path, STORIES, "sharegpt")
    ex = data.test[0]
    f = task.encode(ex)
    enc = encode_conversation(task.tok, ex.conversation, 184)
    assert not enc.truncated
    assert f == {"input_ids": enc.input_ids, "labels": enc.labels}
    assert task.prompt_of(ex) == f["input_ids"][: len(task.prompt_of(ex))]
    lines = task.tok.decode(task.prompt_of(ex), skip_special_tokens=True).split("\n")
    assert [x.strip() for x in lines] == ["System: Answer briefly.", "User: Item 100: colour?",
                                          "Assistant: It is white. User: And the shape?", "Assistant:"]


@pytest.mark.parametrize("model", [STORIES, SMOLLM], ids=["plain-layout", "chat-template"])
def test_served_chat_prompt_is_the_training_prompt(tmp_path: Path, model: Path) -> None:
    """The OpenAI endpoint's messages of a chat run are encoded as training encoded them: the
    conversation before the last reply, system message and all (plain layout or chat template)."""
    from peftlab.infer.prompts import chat_prompt, completion_prompt

    if not (model / "tokenizer.json").is_file() and not (model / "tokenizer.model").is_file():
        pytest.skip(f"{model.name} tokenizer not present")
    task, data = _task_for(tmp_path, model, "sharegpt")
    cfg = plan(write_experiment(tmp_path, _chat_experiment(tmp_path, "sharegpt"))).cfg
    ex = data.test[0]
    conv = ex.conversation
    msgs = [{"role": "system", "content": conv.system}] + [{"role": t.role, "content": t.content} for t in conv.turns]
    ids, last = chat_prompt(task, cfg, msgs[:-1])
    assert ids == task.prompt_of(ex)
    assert last == "And the shape?"
    one, _ = completion_prompt(task, cfg, "Item 7: colour?")
    assert one == encode_prompt(task.tok, Conversation(None, [Turn("user", "Item 7: colour?")]))


# ---------------------------------------------------------------- config and rows


def test_format_names_and_existing_experiment_files() -> None:
    from typing import get_args

    from peftlab.config.schema import DataFormat

    assert set(get_args(DataFormat)) == {"auto", *DATA_FORMATS}
    for f in sorted((REPO / "examples").glob("*.yaml")):
        d = load_experiment(f).cfg.data
        assert d.format == "auto" or f.name == "samsum-chat.yaml"
        assert d.chat == (f.name == "samsum-chat.yaml"), f  # every file written before chat formats: columns


def test_run_hashes_of_files_without_chat_keys_unchanged() -> None:
    """Runs recorded before data.format existed stay the same runs (not reset, not refused)."""
    from peftlab.config.schema import ExperimentConfig
    from peftlab.train.runner import config_hash

    body = {"name": "x", "model": "stories260k", "task": "causal-lm", "methods": ["lora"],
            "data": {"train": "a.jsonl", "prompt": "{a}", "target": "b"}}

    def hashed() -> str:
        cfg = ExperimentConfig.model_validate(body)
        return config_hash(cfg, cfg.methods[0])

    assert hashed() == "bbd6d6b0b3a39ee6"  # the hash before chat formats (this config names no paths)
    body["data"] |= {"format": "auto", "as_chat": False}
    assert hashed() == "bbd6d6b0b3a39ee6"
    body["data"]["as_chat"] = True
    assert hashed() != "bbd6d6b0b3a39ee6"


@pytest.mark.parametrize(("data", "match"), [
    ({"format": "messages", "target": "summary"}, "data.target: not used with data.format messages"),
    ({"as_chat": True, "target": "t"}, "data.as_chat: give the user turn"),
    ({"format": "sharegpt", "as_chat": True, "prompt": "{a}", "target": "t"}, "only with data.format columns"),
])
def test_chat_settings_checked_in_the_schema(tmp_path: Path, data: dict[str, Any], match: str) -> None:
    body = _chat_experiment(tmp_path, "messages", **data)
    with pytest.raises(ConfigError, match=match):
        plan(write_experiment(tmp_path, body))
    body = _chat_experiment(tmp_path, "messages", format="messages")
    body["task"] = "classification"
    with pytest.raises(ConfigError, match="conversations need a decoder-only generation task"):
        plan(write_experiment(tmp_path, body))


def test_bad_rows_through_preflight_name_file_line_and_skip(tmp_path: Path) -> None:
    good = [_row(c, "messages") for c in _conversations(8)]
    bad = [{"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]},
           {"messages": "not a list"},
           {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},
           {"messages": [{"role": "user", "content": "only a question"}]}]
    path = _write(tmp_path / "with-bad-rows.jsonl", good[:2] + bad + good[2:])
    body = _chat_experiment(tmp_path, "messages")
    body["data"]["train"] = str(path)
    with pytest.raises(DataError) as e:
        preflight(plan(write_experiment(tmp_path, body)))
    assert str(e.value) == (f"{path}:3: messages[1] has unknown role 'robot'; allowed: system, user, assistant "
                            "(fix the row, or set data.on_bad_rows: skip)")
    body["data"]["on_bad_rows"] = "skip"
    checked = preflight(plan(write_experiment(tmp_path, body)))
    assert [s.split(": ", 1)[0] for s in checked.data.skipped] == [f"{path}:{i}" for i in (3, 4, 5, 6)]
    assert "'messages' must be a list of {role, content} objects, found a string" in checked.data.skipped[1]
    assert "turn messages[0] is an assistant turn but a user turn must come first" in checked.data.skipped[2]
    assert "no assistant turn" in checked.data.skipped[3]
    assert checked.warnings == [f"4 bad rows skipped (data.on_bad_rows: skip), e.g. {checked.data.skipped[0]}"]
    assert len(checked.data.train) + len(checked.data.validation) == 8


def test_file_formats_refused_with_what_they_hold(tmp_path: Path) -> None:
    body = _chat_experiment(tmp_path, "messages")
    body["data"]["train"] = str(DATA / "samsum" / "train.jsonl")
    with pytest.raises(DataError, match=r"samsum/train.jsonl: data.format auto found no chat data .*Columns in the "
                                        r"file: id, document, summary. Name the columns"):
        preflight(plan(write_experiment(tmp_path, body)))
    body = _chat_experiment(tmp_path, "sharegpt", format="messages")
    with pytest.raises(DataError, match="data.format is messages, but the file holds sharegpt data"):
        preflight(plan(write_experiment(tmp_path, body)))
    # A file that looks like chat data while columns are named: the columns, and a hint.
    rows = [dict(_row(c, "messages"), q=f"q{i}", a=f"a{i}") for i, c in enumerate(_conversations(12))]
    body = _chat_experiment(tmp_path, "messages", input="q", target="a")
    body["data"]["train"] = str(_write(tmp_path / "both.jsonl", rows))
    del body["data"]["test"]
    checked = preflight(plan(write_experiment(tmp_path, body)))
    assert checked.data.format == "columns" and checked.data.train[0].conversation is None
    assert "looks like messages data" in checked.notes[0] and "those columns are used" in checked.notes[0]


def test_hub_dataset_offline_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    body = _chat_experiment(tmp_path, "messages")
    body["data"]["train"] = "hf://peftlab-none/no-such-chat-set:train"
    with pytest.raises(DataError, match=r"^hf://peftlab-none/no-such-chat-set:train: hub dataset "
                                        r"'peftlab-none/no-such-chat-set' \(split 'train'\) is not in the local cache, "
                                        r"and the hub is switched off here"):
        preflight(plan(write_experiment(tmp_path, body)))


# ---------------------------------------------------------------- predict / evaluate a chat run


def test_predict_and_evaluate_a_chat_run(messages_run: tuple[Any, Store, list[str]], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run, store, _ = messages_run
    new = [dict(_row(c, "messages", last_reply=False), id=i, lang="en")
           for i, c in enumerate(_conversations(5, offset=200))]
    src = _write(tmp_path / "new.jsonl", new)
    out = tmp_path / "out.jsonl"
    args = ["--store", str(store.root)]
    assert main(["predict", run.experiment, run.name, "--input", str(src), "--output", str(out), *args]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [{k: v for k, v in r.items() if k not in ("output", "stopped")} for r in rows] == new
    assert all(isinstance(r["output"], str) and isinstance(r["stopped"], bool) for r in rows)
    # A columns file for a chat run: refused with what it holds.
    cols = _write(tmp_path / "cols.jsonl", [{"question": "q", "answer": "a"}])
    assert main(["predict", run.experiment, run.name, "--input", str(cols), "--output", str(out), *args]) == 2
    assert "trained on conversations, but this file holds none" in capsys.readouterr().err
    # Evaluate on conversations the run never saw: the last reply scored, recorded under the run.
    held = _write(tmp_path / "held.jsonl", [_row(c, "messages") for c in _conversations(6, offset=300)])
    assert main(["evaluate", run.experiment, run.name, "--test", str(held), *args]) == 0
    rec = store.find_run(run.experiment, run.name).info["evaluations"]["file-held"]
    assert rec["examples"] == 6 and rec["format"] == "messages" and rec["metrics"]["rougeL"] > 30
    refs = [p["reference"] for p in _jsonl(store.root / rec["predictions"])]
    assert refs == [f"The {COLOURS[i % 6]} one is {SHAPES[(i // 6) % 6]}." for i in range(300, 306)]


# ---------------------------------------------------------------- the example


@pytest.mark.skipif(not (SMOLLM / "config.json").is_file(), reason="SmolLM2 not present")
def test_samsum_chat_example_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "examples" / "samsum-chat.yaml"
    body = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert body["data"]["format"] == "columns" and body["data"]["as_chat"] is True
    store = str(tmp_path / "store")
    assert main(["--store", store, "run", str(example), "--in-process", "--methods", "lora", "--max-steps", "2",
                 "--max-train-examples", "8", "--max-eval-examples", "3", "--max-validation-examples", "2",
                 "--set", "evaluation.max_new_tokens=6", "--set", "training.batch_size=4",
                 "--set", "training.max_source_length=128",
                 "--set", "evaluation.forgetting=false"]) == 0  # its reference set: ~2 min on SmolLM2 (test_forgetting)
    run = Store(store).find_run("samsum-chat", "lora")
    assert run.status == "done" and run.info["data"]["format"] == "columns"
    pred = _jsonl(run.file("predictions"))[0]
    assert pred["input"].startswith("Summarize this dialogue in one sentence:\n\n")
    assert "ranked by rougeL" in capsys.readouterr().out


# ---------------------------------------------------------------- the data set API


def test_dataset_analysis_shows_the_format_and_a_rendered_conversation(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from peftlab.serve.app import Settings, create_app

    rows = [_row(c, "messages") for c in _conversations(6, offset=100)] + [{"messages": "oops"}]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    app = create_app(Settings(store=str(tmp_path / "store"), start_worker=False))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/api/datasets", files={"file": ("chat.jsonl", body, "application/json")})
        assert r.status_code == 201, r.text
        ds = r.json()["id"]
        a = c.get(f"/api/datasets/{ds}").json()["analysis"]
        assert a["format"] == "messages" and "holds lists of {role, content}" in a["format_reason"]
        assert a["conversation"]["messages"][-1] == {"role": "assistant", "content": "The white one is long."}
        assert a["rendered"] is None
        bad = next(p for p in a["problems"] if p["kind"] == "bad_conversations")
        assert bad["count"] == 1 and bad["lines"] == [7] and "must be a list of {role, content}" in bad["examples"][0]
        if (SMOLLM / "tokenizer.json").is_file():
            got = c.get(f"/api/datasets/{ds}", params={"model": SMOLLM.name}).json()["analysis"]["rendered"]
            assert got["model"] == SMOLLM.name and got["chat_template"] is True
            assert [s["text"] for s in got["segments"] if s["trained"]] == [
                "It is white.<|im_end|>", "The white one is long.<|im_end|>"]
            assert got["text"].startswith("<|im_start|>system\n") and got["text"].endswith("<|im_end|>\n")
        got = c.get(f"/api/datasets/{ds}", params={"model": STORIES.name}).json()["analysis"]["rendered"]
        assert got["chat_template"] is False and "User: Item 100: colour?" in got["text"]
        assert c.get(f"/api/datasets/{ds}", params={"model": str(tmp_path)}).status_code in (400, 403, 422)


def test_playground_holds_a_conversation_samples_and_beams(messages_run: tuple[Any, Store, list[str]]) -> None:
    """A chat run's playground: each run's own conversation, answered greedily as its test
    evaluation answered the same turns; sampling repeatable by seed; beams said."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from peftlab.serve.app import Settings, create_app

    run, store, _ = messages_run
    preds = _jsonl(run.file("predictions"))
    app = create_app(Settings(store=str(store.root), start_worker=False))
    url = "/api/playground"
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get(f"/api/playground/{run.experiment}/runs").json()["chat"] is True
        for i in (0, 3):  # the test conversations up to their last reply: what the evaluation generated from
            msgs = [{"role": r, "content": t} for r, t in _conversations(6, offset=100)[i][:-1]]
            r = c.post(url, json={"experiment": run.experiment, "runs": ["lora"], "messages": {"lora": msgs}})
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["conversation"] is True and got["sampling"] is None
            assert got["outputs"][0]["output"] == preds[i]["output"], (i, got, preds[i])
        one = {"experiment": run.experiment, "runs": ["lora"], "text": "Item 7: colour?", "max_new_tokens": 12}
        sampled = {**one, "do_sample": True, "temperature": 1.5, "top_p": 1.0}
        a, b = (c.post(url, json={**sampled, "seed": 3}).json() for _ in range(2))
        assert a["sampling"] == {"temperature": 1.5, "top_p": 1.0, "seed": 3}
        assert a["outputs"][0]["output"] == b["outputs"][0]["output"]  # the same seed, the same draw
        draws = {c.post(url, json={**sampled, "seed": s}).json()["outputs"][0]["output"] for s in range(6)}
        assert len(draws) > 1, draws
        greedy = c.post(url, json=one).json()
        assert greedy["sampling"] is None and greedy["outputs"][0]["output"] not in ("", None)
        beams = c.post(url, json={**one, "num_beams": 3}).json()
        assert beams["sampling"] == {"num_beams": 3} and beams["outputs"][0]["output"]
        for bad, says in (({**sampled, "num_beams": 2}, "do not combine"),
                          ({**one, "text": None, "messages": {"other": [{"role": "user", "content": "x"}]}},
                           "no conversation for run 'lora'"),
                          ({**one, "messages": {"lora": [{"role": "assistant", "content": "x"}]}}, "must be the user's")):
            r = c.post(url, json=bad)
            assert r.status_code == 422 and says in r.text, r.text
