"""Serving's text per row (`infer.decode.Row`): what a /v1 client receives, streamed or whole, is
the evaluation's output for the same tokens (`tasks.generation._Decoding.text`): no leading or
trailing whitespace, stop strings cut, unfinished characters held back."""

from __future__ import annotations

from conftest import STORIES, needs_shared
from transformers import AutoTokenizer

from peftlab.infer.decode import Row
from peftlab.tasks.generation import _Decoding

pytestmark = needs_shared


def _feed(tok, text: str, stop: tuple[str, ...] = ()) -> tuple[Row, list[str]]:  # noqa: ANN001
    sent: list[str] = []
    row = Row(prompt=[1], max_tokens=64, stop=stop, on_text=sent.append)
    for t in tok.encode(text, add_special_tokens=False):
        row.tokens.append(t)
        row.update(tok, final=False)
        assert row.text == "".join(sent)
        if row.finish_reason is not None:  # a stop string: the server stops feeding the row
            return row, sent
        assert row.text == row.text.rstrip(), "trailing whitespace was sent before the text after it"
    row.update(tok, final=True)
    return row, sent


def test_a_row_s_text_is_the_evaluation_s_output_for_the_same_tokens() -> None:
    tok = AutoTokenizer.from_pretrained(STORIES)
    for text in (" Once upon a time ", "The cat sat.  ", " ", "a b  c\n"):
        ids = tok.encode(text, add_special_tokens=False)
        expected, _ = _Decoding([tok.eos_token_id], 0, 8, 1, 1.0, 0).text(tok, ids)
        row, sent = _feed(tok, text)
        assert row.text == "".join(sent) == expected, (text, row.text, expected)


def test_a_stop_string_cuts_the_row() -> None:
    tok = AutoTokenizer.from_pretrained(STORIES)
    row, sent = _feed(tok, "Once upon a time there was", stop=("time",))
    # the text before the stop string, as OpenAI's API returns it (evaluation has no stop strings)
    assert row.finish_reason == "stop" and "".join(sent) == row.text == "Once upon a "
