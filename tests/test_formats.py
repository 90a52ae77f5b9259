"""Chat data formats: detection, conversion to one Conversation, row errors with file:line,
on_bad_rows: skip, and the assistant-only token mask on real tokenizers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, SMOLLM, STORIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftlab.data.chat_encoding import IGNORE_INDEX, encode_conversation, encode_prompt
from peftlab.data.formats import (
    BadRow,
    Conversation,
    Turn,
    convert_rows,
    detect_format,
    split_last_assistant,
    to_conversation,
)
from peftlab.data.mappings import samsum_conversation, template_conversation
from peftlab.data.sources import read_rows
from peftlab.errors import DataError, ModelError

needs_tokenizers = pytest.mark.skipif(
    not (SMOLLM / "tokenizer.json").is_file() or not (STORIES / "tokenizer.json").is_file(),
    reason="shared/models tokenizers not present",
)


def _load(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def smol() -> Any:
    return _load(SMOLLM)


@pytest.fixture(scope="module")
def stories() -> Any:
    return _load(STORIES)


def _msg(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": content}


SYSTEM, Q, A = "Be brief.", "Name a colour.", "Blue."
EXPECTED = Conversation(SYSTEM, [Turn("user", Q), Turn("assistant", A)], "d.jsonl:3")
SAME = {
    "messages": {"messages": [_msg("system", SYSTEM), _msg("user", Q), _msg("assistant", A)]},
    "sharegpt": {"conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": Q},
                                   {"from": "gpt", "value": A}]},
    "alpaca": {"instruction": Q, "input": "", "output": A, "system": SYSTEM},
    "prompt-completion": {"prompt": [_msg("system", SYSTEM), _msg("user", Q)], "completion": A},
}
TWO_TURN = Conversation(
    "You are terse.",
    [Turn("user", "What is 2+2?"), Turn("assistant", "4"), Turn("user", "And 3+3?"),
     Turn("assistant", "6, of course.")],
    "chat.jsonl:1",
)


def _labelled_spans(tok: Any, ids: list[int], labels: list[int]) -> list[str]:
    """The text of each run of labelled positions, checking labels equal the ids there."""
    spans: list[list[int]] = []
    prev = IGNORE_INDEX
    for i, lab in zip(ids, labels, strict=True):
        if lab != IGNORE_INDEX:
            assert lab == i
            if prev == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(i)
        prev = lab
    return [tok.decode(s, clean_up_tokenization_spaces=False) for s in spans]


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [("messages", "column 'messages' holds lists of {role, content} (1 of 1 sampled rows)"),
     ("sharegpt", "column 'conversations' holds lists of {from, value}"),
     ("alpaca", "columns 'instruction', 'input' and 'output' hold text (alpaca)"),
     ("prompt-completion", "hold lists of {role, content}")],
)
def test_detect_each_format(fmt: str, reason: str) -> None:
    row = dict(SAME[fmt], __line__=1)
    got, why = detect_format(set(row) - {"__line__"}, [row])
    assert got == fmt
    assert reason in why
    plain = {"prompt": "Q?", "completion": "A."}
    assert detect_format(set(plain), [plain]) == ("prompt-completion",
                                                  "columns 'prompt' and 'completion' hold strings (TRL prompt-completion)")


def test_detect_looks_at_values_not_names() -> None:
    rows = [{"messages": "hello there", "label": "x"}, {"messages": "again", "label": "y"}]
    fmt, why = detect_format({"messages", "label"}, rows)
    assert fmt == "columns"
    assert "'messages' does not hold lists of {role, content} (e.g. a string ('hello there'))" in why
    fmt, why = detect_format({"text", "label"}, [{"text": "a", "label": "b"}])
    assert fmt == "columns" and "using the input/target columns" in why
    # One malformed row among many does not flip the format; it is a row error later.
    rows = [SAME["messages"]] * 3 + [{"messages": "oops"}]
    assert detect_format({"messages"}, rows)[0] == "messages"
    # sharegpt-shaped lists in a 'messages' column are not OpenAI messages.
    rows = [{"messages": SAME["sharegpt"]["conversations"]}]
    assert detect_format({"messages"}, rows)[0] == "columns"


# ---------------------------------------------------------------- conversion


@pytest.mark.parametrize("fmt", list(SAME))
def test_every_format_gives_the_same_conversation(fmt: str) -> None:
    assert to_conversation(SAME[fmt], fmt, "d.jsonl:3") == EXPECTED


def test_format_variants() -> None:
    conv = to_conversation({"instruction": "Translate.", "input": "chat", "output": "cat"}, "alpaca", "w")
    assert conv.system is None and conv.turns[0].content == "Translate.\n\nchat"
    row = {"system": "S", "conversations": [{"from": "Human", "value": " hi\n"}, {"from": "bot", "value": "yo"},
                                            {"from": "user", "value": "and?"}, {"from": "model", "value": "done"}]}
    conv = to_conversation(row, "sharegpt", "w")
    assert conv.system == "S" and [t.role for t in conv.turns] == ["user", "assistant"] * 2
    assert conv.turns[0].content == "hi"  # stripped: templates add their own separators
    parts = {"messages": [_msg("user", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
                          _msg("assistant", "c")]}
    assert to_conversation(parts, "messages", "w").turns[0].content == "a\nb"
    assert to_conversation({"prompt": "Q", "completion": [_msg("assistant", "A")]}, "prompt-completion",
                           "w").turns == [Turn("user", "Q"), Turn("assistant", "A")]
    assert EXPECTED.messages() == SAME["messages"]["messages"]


def test_prompt_completion_replies_in_the_prompt_are_context() -> None:
    row = {"prompt": [_msg("user", "a"), _msg("assistant", "b"), _msg("user", "c")], "completion": "d"}
    conv = to_conversation(row, "prompt-completion", "w")
    assert [(t.role, t.loss) for t in conv.turns] == [("user", True), ("assistant", False), ("user", True),
                                                      ("assistant", True)]


BAD = [
    ("messages", {"messages": "hi"}, "'messages' must be a list of {role, content} objects, found a string ('hi')"),
    ("messages", {"text": "x"}, "'messages' must be a list of {role, content} objects, found no such column"),
    ("messages", {"messages": []}, "'messages' is an empty list"),
    ("messages", {"messages": ["hi"]}, "messages[0] must be a {role, content} object, found a string"),
    ("messages", {"messages": [{"role": "user", "text": "x"}]},
     "messages[0] is a dict without 'content' (its keys: role, text)"),
    ("messages", {"messages": [_msg("user", "x"), _msg("tool", "y")]},
     "messages[1] has unknown role 'tool'; allowed: system, user, assistant"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}]},
     "conversations[1] has unknown from 'robot'; allowed: human, user, gpt, assistant, bot, model, system"),
    ("messages", {"messages": [_msg("user", "x")]}, "no assistant turn"),
    ("messages", {"messages": [_msg("assistant", "x"), _msg("user", "y")]},
     "turn messages[0] is an assistant turn but a user turn must come first"),
    ("messages", {"messages": [_msg("user", "x"), _msg("assistant", "y"), _msg("assistant", "z")]},
     "turn messages[2] is an assistant turn but a user turn must come after the assistant turn messages[1]"),
    ("messages", {"messages": [_msg("system", "s"), _msg("user", "x"), _msg("user", "y")]},
     "turn messages[2] is a user turn but an assistant turn must come after the user turn messages[1]"),
    ("messages", {"messages": [_msg("user", "x"), _msg("assistant", "y"), _msg("user", "z")]},
     "turn messages[2] is a trailing user turn with no assistant reply"),
    ("messages", {"messages": [_msg("user", "x"), _msg("system", "s"), _msg("assistant", "y")]},
     "messages[1] is a system message after other turns; a system message may only come first"),
    ("messages", {"messages": [_msg("user", "x"), _msg("assistant", "  ")]},
     "messages[1] (assistant) has empty content; an assistant turn needs text"),
    ("messages", {"messages": [_msg("user", ""), _msg("assistant", "y")]}, "messages[0] (user) has empty content"),
    ("messages", {"messages": [_msg("user", "x"), _msg("assistant", None)]},
     "messages[1].content must be a string, found null"),
    ("messages", {"messages": [_msg("user", [{"type": "image_url", "image_url": "u"}]), _msg("assistant", "y")]},
     "messages[0].content[0] is a 'image_url' part; only text parts"),
    ("alpaca", {"instruction": " ", "output": "y"}, "empty or missing 'instruction'"),
    ("alpaca", {"instruction": "x", "output": ""}, "'output' (assistant) has empty content"),
    ("alpaca", {"instruction": "x", "output": ["y"]}, "'output' must be text, found a list of 1 item(s)"),
    ("prompt-completion", {"prompt": "x"}, "empty or missing 'completion'"),
    ("sharegpt", {"system": "s", "conversations": [{"from": "system", "value": "t"}, {"from": "human", "value": "x"},
                                                   {"from": "gpt", "value": "y"}]},
     "both a 'system' field and a system turn (conversations[0])"),
]


@pytest.mark.parametrize(("fmt", "row", "why"), BAD)
def test_bad_rows_name_file_line_and_fix(fmt: str, row: dict[str, Any], why: str) -> None:
    with pytest.raises(DataError) as e:
        to_conversation(row, fmt, "data/chat.jsonl:7")
    msg = str(e.value)
    assert msg.startswith("data/chat.jsonl:7: ")
    assert why in msg
    assert msg.endswith("(fix the row, or set data.on_bad_rows: skip)")
    assert isinstance(e.value, BadRow) and e.value.where == "data/chat.jsonl:7"


def test_skip_honoured_on_a_real_file(tmp_path: Path) -> None:
    lines = [SAME["messages"], {"messages": [_msg("user", "x")]}, SAME["messages"],
             {"messages": [_msg("user", "x"), _msg("wizard", "y")]}]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    rs = read_rows(str(path))
    convs, skipped = convert_rows(rs.rows, "messages", rs.source, on_bad_rows="skip")
    assert [c.where for c in convs] == [f"{path}:1", f"{path}:3"]
    assert skipped == [
        f"{path}:2: no assistant turn; the conversation needs at least one assistant reply to learn from",
        f"{path}:4: messages[1] has unknown role 'wizard'; allowed: system, user, assistant",
    ]
    with pytest.raises(DataError, match=rf"^{path}:2: no assistant turn"):
        convert_rows(rs.rows, "messages", rs.source)
    with pytest.raises(ValueError, match="not converted"):
        to_conversation(SAME["messages"], "columns", "w")


def test_split_last_assistant() -> None:
    context, ref = split_last_assistant(TWO_TURN)
    assert ref == "6, of course."
    assert context.system == "You are terse." and context.where == TWO_TURN.where
    assert [t.content for t in context.turns] == ["What is 2+2?", "4", "And 3+3?"]
    assert len(TWO_TURN.turns) == 4  # the input is not changed


# ---------------------------------------------------------------- token mask


@needs_tokenizers
def test_smollm_mask_is_exactly_the_assistant_replies(smol: Any) -> None:
    ids, labels, truncated = encode_conversation(smol, TWO_TURN, max_len=512)
    assert not truncated
    assert smol.decode(ids) == smol.apply_chat_template(TWO_TURN.messages(), tokenize=False)
    assert _labelled_spans(smol, ids, labels) == ["4<|im_end|>", "6, of course.<|im_end|>"]
    n = sum(len(smol(t, add_special_tokens=False)["input_ids"]) + 1 for t in ("4", "6, of course."))
    assert sum(lab != IGNORE_INDEX for lab in labels) == n
    # The newline after each <|im_end|> and all headers stay unlabelled.
    im_end = smol.convert_tokens_to_ids("<|im_end|>")
    last = len(ids) - 1 - ids[::-1].index(im_end)
    assert labels[last] == im_end and labels[last + 1 :] == [IGNORE_INDEX] * (len(ids) - last - 1)


@needs_tokenizers
@pytest.mark.parametrize("which", ["smol", "stories"])
def test_prompt_is_exactly_the_training_prefix(which: str, request: pytest.FixtureRequest) -> None:
    tok = request.getfixturevalue(which)
    ids, labels, _ = encode_conversation(tok, TWO_TURN)
    context, ref = split_last_assistant(TWO_TURN)
    prompt = encode_prompt(tok, context)
    assert ids[: len(prompt)] == prompt
    assert labels[len(prompt) - 1] == IGNORE_INDEX and labels[len(prompt)] != IGNORE_INDEX
    assert _labelled_spans(tok, ids[len(prompt) :], labels[len(prompt) :])[0].strip().startswith(ref)


@needs_tokenizers
def test_no_template_fallback_on_stories(stories: Any) -> None:
    assert not stories.chat_template
    ids, labels, _ = encode_conversation(stories, TWO_TURN)
    assert ids[0] == stories.bos_token_id
    text = stories.decode(ids, skip_special_tokens=True)
    assert [line.strip() for line in text.split("\n")] == [
        "System: You are terse.", "User: What is 2+2?", "Assistant: 4 User: And 3+3?", "Assistant: 6, of course."]
    assert [s.strip() for s in _labelled_spans(stories, ids, labels)] == ["4</s>", "6, of course.</s>"]
    assert ids.count(stories.eos_token_id) == 2


@needs_tokenizers
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30)), min_size=1,
                max_size=3), st.none() | st.text(min_size=1, max_size=20))
def test_mask_property_on_smollm(smol: Any, pairs: list[tuple[str, str]], system: str | None) -> None:
    msgs = ([_msg("system", system)] if system else []) + [m for q, a in pairs for m in (_msg("user", q),
                                                                                           _msg("assistant", a))]
    try:
        conv = to_conversation({"messages": msgs}, "messages", "h:1")
    except BadRow:
        return  # whitespace-only content: a row error, tested above
    if any(tok in t.content for t in conv.turns for tok in ("<|im_end|>", "<|im_start|>")):
        return
    ids, labels, _ = encode_conversation(smol, conv)
    # Compare with the tokenizer's own round trip: it cannot spell every code point.
    replies = [smol.decode(smol(t.content, add_special_tokens=False)["input_ids"], clean_up_tokenization_spaces=False)
               + "<|im_end|>" for t in conv.turns if t.role == "assistant"]
    assert "".join(_labelled_spans(smol, ids, labels)) == "".join(replies)
    context, _ = split_last_assistant(conv)
    assert ids[: len(encode_prompt(smol, context))] == encode_prompt(smol, context)


@needs_tokenizers
def test_template_that_rewrites_past_turns_is_refused() -> None:
    tok = _load(SMOLLM)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and not loop.last %}[hidden]"
        "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ModelError, match=r"chat.jsonl:1: .*chat template is not prefix-stable.*messages\[:3\]"):
        encode_conversation(tok, TWO_TURN)
    tok.chat_template = ("{% for m in messages %}{{ m.role }}:\n{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:\n{% endif %}")
    with pytest.raises(ModelError, match="no end-of-turn or EOS token"):
        encode_conversation(tok, TWO_TURN)
    tok.chat_template = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    with pytest.raises(ModelError, match=r"^chat.jsonl:1: .*refused the conversation .*System role not supported"):
        encode_conversation(tok, TWO_TURN)


# ---------------------------------------------------------------- truncation


@needs_tokenizers
def test_truncation_drops_earliest_turns_and_keeps_system(smol: Any) -> None:
    turns = [Turn(r, f"{r} message number {i} " + "word " * 20) for i in range(4) for r in ("user", "assistant")]
    conv = Conversation("Keep me.", turns, "t:1")
    full = encode_conversation(smol, conv)
    ids, labels, truncated = encode_conversation(smol, conv, max_len=len(full.input_ids) - 10)
    assert truncated and len(ids) <= len(full.input_ids) - 10
    text = smol.decode(ids)
    assert "Keep me." in text and "message number 0" not in text and "message number 3" in text
    assert full.input_ids[-len(ids) + 20 :] == ids[20:]  # the tail (later turns) is untouched
    context, _ = split_last_assistant(conv)
    prompt = encode_prompt(smol, context, max_len=60)
    assert len(prompt) <= 60 and "Keep me." in smol.decode(prompt) and smol.decode(prompt).endswith("assistant\n")


@needs_tokenizers
@pytest.mark.parametrize("which", ["smol", "stories"])
def test_truncation_cuts_content_and_keeps_the_reply_and_its_end(which: str, request: pytest.FixtureRequest) -> None:
    tok = request.getfixturevalue(which)
    eot = "<|im_end|>" if which == "smol" else "</s>"
    long_user = Conversation(None, [Turn("user", "tell me " * 400), Turn("assistant", "A short reply.")], "t:2")
    ids, labels, truncated = encode_conversation(tok, long_user, max_len=128)
    assert truncated and len(ids) <= 128
    assert [s.strip() for s in _labelled_spans(tok, ids, labels)] == ["A short reply." + eot]
    long_reply = Conversation(None, [Turn("user", "Go on."), Turn("assistant", "and then " * 400)], "t:3")
    ids, labels, truncated = encode_conversation(tok, long_reply, max_len=128)
    assert truncated and 100 <= len(ids) <= 128
    (span,) = _labelled_spans(tok, ids, labels)
    assert span.strip().startswith("and then and then") and span.endswith(eot)
    assert "Go on." in tok.decode(ids)


@needs_tokenizers
def test_truncation_cannot_cut_the_system_message(smol: Any) -> None:
    conv = Conversation("rules " * 100, [Turn("user", "x"), Turn("assistant", "y")], "data.jsonl:9")
    with pytest.raises(DataError, match="^data.jsonl:9: the system message and the chat template's headers"):
        encode_conversation(smol, conv, max_len=50)


# ---------------------------------------------------------------- samsum mapping


def test_samsum_rows_become_two_turn_conversations(request: pytest.FixtureRequest) -> None:
    path = DATA / "samsum" / "train.jsonl"
    if not path.is_file():
        pytest.skip("shared/data/samsum not present")
    rs = read_rows(str(path))
    rows = rs.rows[:3] + [{"document": "A: hi", "summary": "", "__line__": 99}]
    convs, skipped = convert_rows(rows, samsum_conversation, rs.source, on_bad_rows="skip")
    assert len(convs) == 3 and skipped == [
        f"{path}:99: column 'summary' is empty or missing (columns in the row: document, summary); fill it in"]
    for conv, row in zip(convs, rs.rows[:3], strict=True):
        assert conv.where == f"{path}:{row['__line__']}" and conv.system is None
        assert conv.turns[0].content == "Summarize this dialogue:\n\n" + row["document"].strip()
        assert conv.turns[1] == Turn("assistant", row["summary"].strip())
    assert samsum_conversation({"dialogue": "B: yo", "summary": "B greets."}, "hub:1").turns[0].content.endswith("B: yo")
    if (SMOLLM / "tokenizer.json").is_file():
        smol = request.getfixturevalue("smol")
        ids, labels, _ = encode_conversation(smol, convs[0], max_len=256)
        assert _labelled_spans(smol, ids, labels) == [convs[0].turns[1].content + "<|im_end|>"]
    conv = template_conversation({"q": "2+2?", "a": 4}, "Q: {q}", "a", "w:1", system="S")
    assert conv == Conversation("S", [Turn("user", "Q: 2+2?"), Turn("assistant", "4")], "w:1")
