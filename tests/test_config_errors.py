"""Configuration errors in the user's words, with their place (issue #30).

A bad value names the file and line it is on, or the flag that gave it (`--tune 0`), and says
what the value must be: never pydantic's wording ("Input should be ...", "Value error, ...",
"function-after[...]") and never one mistake reported twice. A row of another chat format in a
file of one format says which format the row holds, where, and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import STORIES, tiny_causal, write_experiment

from peftlab.cli import main
from peftlab.config import parse_experiment
from peftlab.errors import ConfigError, DataError
from peftlab.train.runner import plan

VALIDATOR_WORDS = ("Input should", "Value error", "function-after", "instance of", "list[any]", "validation error")


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_experiment(text, source="exp.yaml")
    msg = str(e.value)
    for words in VALIDATOR_WORDS:
        assert words not in msg, f"{words!r} in: {msg}"
    return msg


BASE = """name: demo
model: tiny
task: causal-lm
data:
  train: train.jsonl
  input: q
  target: a
methods:
  - lora
"""


def _line(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


# -- 1. a search range ----------------------------------------------------------------------

SEARCH = BASE + """  - name: lora
    label: lora2
    search:
      r: [4, 8]
      SEARCH
"""


@pytest.mark.parametrize(("space", "says"), [
    ("learning_rate: {low: 1e-3, high: 1e-5}", "learning_rate: low (0.001) is above high (1e-05); swap them"),
    ("learning_rate: {low: 1e-3, high: 1e-3}",
     "learning_rate: low and high are both 0.001; give a wider range, or a list of one choice ([0.001])"),
    ("learning_rate: {low: 0, high: 1, log: true}", "learning_rate: a log range needs low > 0 (got 0)"),
    ("learning_rate: 0.001", "learning_rate = 0.001: must be a list of choices, e.g. [4, 8, 16], or a range "
                             "{low: ..., high: ..., log: true|false}"),
])
def test_a_bad_search_range_is_one_error_on_its_line(space: str, says: str) -> None:
    text = SEARCH.replace("SEARCH", space)
    msg = _refused(text)
    assert msg.startswith(f"exp.yaml:{_line(text, space)}: methods[1].search.{says}"), msg
    assert "\n" not in msg  # one mistake, one error


def test_the_inverted_range_of_the_issue_word_for_word() -> None:
    text = SEARCH.replace("SEARCH", "learning_rate: {low: 1e-3, high: 1e-5}")
    assert _refused(text) == "exp.yaml:14: methods[1].search.learning_rate: low (0.001) is above high (1e-05); swap them"


@pytest.mark.parametrize(("space", "says"), [
    ({"r": [4, "x"]}, "search.r: 'x': must be a whole number (e.g. 8)"),
    ({"r": {"low": 0, "high": 8}}, "search.r: 0: must be a whole number above 0; use 1 or more"),
    ({"dropout": [0.1, 2]}, "search.dropout: 2: must be below 1"),
    ({"learning_rate": {"low": 0, "high": 1e-3}}, "search.learning_rate: 0: a learning rate must be a number above 0"),
])
def test_a_search_value_the_method_does_not_take_is_refused_before_any_trial(space: dict, says: str,
                                                                             tmp_path: Path) -> None:
    from peftlab.tune.plan import check_tuning

    body = tiny_causal([{"name": "lora", "search": space}])
    body["tuning"] = {"trials": 2}
    path = write_experiment(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        check_tuning(plan(path))
    assert str(e.value) == f"{path}:{_line(path.read_text(encoding='utf-8'), '- name: lora')}: methods: lora: {says}"


# -- 2. a value from a flag is the flag's ---------------------------------------------------

@pytest.mark.parametrize(("argv", "says"), [
    (["--tune", "0"], "--tune 0: tuning.trials must be a whole number above 0; use 1 or more"),
    (["--max-steps", "0"], "--max-steps 0: training.max_steps must be a whole number above 0; use 1 or more"),
    (["--set", "training.max_steps=0"],  # the file has max_steps: 6 on its own line: the flag is still at fault
     "--set training.max_steps=0: training.max_steps must be a whole number above 0; use 1 or more"),
    (["--set", "tuning.sampler=grid", "--tune", "2"],
     "--set tuning.sampler=grid: tuning.sampler must be one of tpe, random"),
    (["--set", "tuning.sampler=random"], "--set tuning.sampler=random: missing required key 'tuning.trials'"),
    (["--learning-rate", "inf"], "--learning-rate inf: training.learning_rate = inf: must be a finite number"),
    (["--set", "training.precision=bf32"], "--set training.precision=bf32: training.precision must be one of "
                                           "auto, fp32, bf16, fp16; did you mean 'fp32'?"),
    (["--set", "training.max_steps.value=3"],
     "--set training.max_steps.value=3: training.max_steps is not a section with keys; it cannot hold 'value'"),
    (["--set", "training.batch_size=[1"],  # was a yaml traceback
     "--set training.batch_size=[1: the value is not valid YAML; quote it, e.g. --set 'training.batch_size=\"[1\"'"),
])
def test_a_bad_flag_is_reported_against_the_flag(argv: list[str], says: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write_experiment(tmp_path, tiny_causal(["lora"]))
    assert main(["--store", str(tmp_path / "store"), "run", str(path), *argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {says}\n"
    assert str(path) not in err  # no line of the file is blamed for it
    assert not (tmp_path / "store").exists()


def test_an_override_from_the_library_is_named_as_one(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, tiny_causal(["lora"]))
    with pytest.raises(ConfigError) as e:
        plan(path, {"tuning.trials": 0})
    assert str(e.value) == "override tuning.trials=0: tuning.trials must be a whole number above 0; use 1 or more"


def test_a_bad_value_in_the_file_keeps_its_line_next_to_an_override(tmp_path: Path) -> None:
    body = tiny_causal(["lora"])
    body["training"]["batch_size"] = 0
    path = write_experiment(tmp_path, body)
    text = path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        plan(path, {"tuning.trials": 2}, origins={"tuning.trials": "--tune 2"})
    assert str(e.value) == (f"{path}:{_line(text, 'batch_size: 0')}: training.batch_size = 0: must be a whole "
                            "number above 0; use 1 or more")


# -- 3. a row of another chat format ---------------------------------------------------------

def _turns(user: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def test_a_row_of_another_format_in_a_messages_file_says_which(tmp_path: Path) -> None:
    from peftlab.train.preflight import preflight

    rows: list[dict[str, Any]] = [{"messages": _turns(f"question {i}", f"answer {i}")} for i in range(24)]
    rows[4] = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    rows[9] = {"instruction": "Say hi", "input": "", "output": "hi"}
    rows[12] = {"prompt": "Say hi", "completion": "hi"}
    train = tmp_path / "chat.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    body = {"name": "chat", "model": str(STORIES), "task": "causal-lm",
            "data": {"train": str(train), "format": "messages"}, "methods": ["lora"], "training": {"max_steps": 1}}
    with pytest.raises(DataError) as e:
        preflight(plan(write_experiment(tmp_path, body)))
    assert str(e.value) == (
        f"{train}:5: this row holds sharegpt data (a 'conversations' list of {{from, value}}), not messages "
        "(data.format: messages); rename 'conversations' to 'messages', and in each turn 'from' to 'role' "
        "(human -> user, gpt -> assistant) and 'value' to 'content', or move the sharegpt rows to a file of their "
        "own (fix the row, or set data.on_bad_rows: skip)")
    body["data"]["on_bad_rows"] = "skip"
    skipped = preflight(plan(write_experiment(tmp_path, body))).data.skipped
    assert [s.split(": ", 1)[0] for s in skipped] == [f"{train}:{n}" for n in (5, 10, 13)]
    assert "this row holds alpaca data ('instruction' and 'output'), not messages (data.format: messages); write " \
           'it as {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}' in skipped[1]
    assert "this row holds prompt-completion data ('prompt' and 'completion'), not messages" in skipped[2]


def test_sharegpt_turns_inside_messages_say_what_to_rename() -> None:
    from peftlab.data.formats import to_conversation

    row = {"messages": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    with pytest.raises(DataError) as e:
        to_conversation(row, "messages", "f.jsonl:3")
    assert str(e.value) == (
        "f.jsonl:3: messages[0] is a dict without 'role' (its keys: from, value); each turn needs {role, content}; "
        "these are sharegpt's turn keys: rename 'from' to 'role' (human -> user, gpt -> assistant) and 'value' to "
        "'content' (fix the row, or set data.on_bad_rows: skip)")


def test_a_messages_row_without_messages_of_no_known_format_says_so_as_before() -> None:
    from peftlab.data.formats import to_conversation

    with pytest.raises(DataError, match="'messages' must be a list of {role, content} objects, found no such column"):
        to_conversation({"text": "x"}, "messages", "f.jsonl:3")


# -- the common mistakes, in the user's words -----------------------------------------------

@pytest.mark.parametrize(("old", "new", "says"), [
    ("  target: a\n", "  target: a\ntraining:\n  batch_size: four\n",
     "training.batch_size = 'four': must be a whole number (e.g. 8)"),
    ("  target: a\n", "  target: a\ntraining:\n  batch_size: 0\n",
     "training.batch_size = 0: must be a whole number above 0; use 1 or more"),
    ("  target: a\n", "  target: a\ntraining:\n  learning_rate: -1\n", "training.learning_rate = -1: must be above 0"),
    ("  target: a\n", "  target: a\ntraining:\n  warmup_ratio: 1.5\n", "training.warmup_ratio = 1.5: must be below 1"),
    ("  target: a\n", "  target: a\ntraining:\n  precision: bf32\n",
     "training.precision = 'bf32': must be one of auto, fp32, bf16, fp16; did you mean 'fp32'?"),
    ("  target: a\n", "  target: a\ntraining: fast\n",
     "training = 'fast': must be a section of keys (`key: value` lines indented below it), not text"),
    ("  target: a\n", "  target: a\ntraining:\n  group_by_length: maybe\n",
     "training.group_by_length = 'maybe': must be true or false"),
    ("  target: a\n", "  target: a\nevaluation:\n  metrics: rouge\n",
     "evaluation.metrics = 'rouge': must be a list, e.g. [a, b], not text; write [rouge]"),
    ("  target: a\n", "  target: a\nevaluation:\n  metrics: [rouge, acc]\n",
     "evaluation.metrics[1] = 'acc': must be one of rouge, bleu, accuracy, f1, loss"),
    ("task: causal-lm", "task: causal_lm",
     "task = 'causal_lm': must be one of causal-lm, seq2seq, classification, image-classification; "
     "did you mean 'causal-lm'?"),
    ("methods:\n  - lora\n", "methods: []\n", "methods = []: needs at least 1 entry"),
    ("  - lora\n", "  - {name: lora, r: 0}\n", "methods[0] (lora): r = 0: must be a whole number above 0; use 1 or more"),
    ("  input: q\n", "  input: 5\n", "data.input = 5: must be text or a list"),  # one line, not one per union member
    ("  - lora\n", "  - lora\ntuning:\n  trials: 2\n  sampeler: tpe\n",
     "unknown key 'tuning.sampeler'. Did you mean 'sampler'? Allowed here: budget, eta, max_train_examples_per_trial, pruner, "
     "sampler, seed, steps_per_trial, trials"),
    ("  - lora\n", "  - name: lora\n    search:\n      r: {low: 4, high: 16, step: 4}\n",
     "unknown key 'methods[0].search.r.step'. Allowed here: high, log, low"),
    ("  - lora\n", "  - {name: lora, lable: x}\n", "methods[0] (lora): unknown option 'lable'. Did you mean 'label'?"),
    ("  - lora\n", "  - lora: 16\n",  # was a TypeError traceback
     "methods[0]: `lora: 16`: a method's options go in a section, e.g. `- lora: {r: 16}`, or `- lora` alone for its "
     "defaults"),
    ("  - lora\n", "  - name: lora\n    search:\n      r: []\n", "methods[0].search.r = []: needs at least 1 entry"),
    ("  - lora\n", '  - {name: lora, label: "x\\n"}\n',
     "methods[0] = 'x\\n': use letters, digits, '.', '_' and '-' only (it becomes a folder name)"),
])
def test_common_mistakes_in_the_users_words(old: str, new: str, says: str) -> None:
    text = BASE.replace(old, new)
    assert text != BASE
    msg = _refused(text)
    line = _line(text, new.strip().splitlines()[-1].strip())
    assert msg == f"exp.yaml:{line}: {says}" or (msg.startswith(f"exp.yaml:{line}: {says} Allowed: ")
                                                 and "\n" not in msg), msg
