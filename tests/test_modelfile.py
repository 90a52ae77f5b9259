"""The prompt format a GGUF export writes (Ollama's TEMPLATE, the GGUF's chat template): made from
the token ids training gives an input, so that each template, filled as its reader fills it, is
that input's text and tokenizes to those ids."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from conftest import SMOLLM, STORIES, needs_shared, tiny_causal, write_experiment

from peftlab.config.load import load_experiment
from peftlab.infer.modelfile import modelfile, ollama_prompt, prompt_format
from peftlab.infer.prompts import source_prompt
from peftlab.models import load_tokenizer, resolve_model
from peftlab.tasks.build import build_task

pytestmark = needs_shared


def _format(tmp_path: Path, model: Path, **data: object):  # noqa: ANN202 - (task, cfg, PromptFormat)
    body = tiny_causal(["lora"])
    body["model"] = str(model)
    body["data"].update(data)
    cfg = load_experiment(write_experiment(tmp_path, body)).cfg
    tok = load_tokenizer(resolve_model(cfg.model, None), cfg.model, cfg.task)
    task = build_task(cfg, tok, None, None, precision="fp32")
    return task, cfg, prompt_format(task, cfg)


@pytest.mark.parametrize("system", [None, "Answer with a title only."])
def test_chat_model_template_gives_the_training_tokens(tmp_path: Path, system: str | None) -> None:
    task, cfg, fmt = _format(tmp_path, SMOLLM, prompt="Table: {table}\nTitle {{braces}}:", system_prompt=system)
    assert fmt.chat and fmt.field == "table" and fmt.stops[0] == "<|im_end|>"
    tpl = fmt.go_template()
    assert tpl.startswith("<|im_start|>system\n") and tpl.endswith("{{ .Response }}<|im_end|>")
    assert "Table: {{ .Prompt }}\nTitle {braces}:<|im_end|>\n<|im_start|>assistant\n" in tpl
    assert (system or "SmolLM") in tpl
    value = "Year | Sales {{x}}\n2020 | 5"
    source = cfg.data.prompt.format(table=value)
    ids, _ = source_prompt(task, cfg, source)
    text = ollama_prompt(tpl, value)
    assert text == fmt.render(value) and fmt.value_of(source) == value
    assert task.tok(text, add_special_tokens=False)["input_ids"] == ids  # no BOS: SmolLM2 adds none
    chat = jinja2.Environment().from_string(fmt.jinja_template())
    assert chat.render(messages=[{"role": "user", "content": value}]) == text
    mf = modelfile("m-f16.gguf", fmt, cfg, 2048, "title")
    assert 'PARAMETER stop "<|im_end|>"' in mf and "PARAMETER num_ctx 2048" in mf and "FROM ./m-f16.gguf" in mf


def test_plain_model_template_is_the_prompt_template_after_bos(tmp_path: Path) -> None:
    task, cfg, fmt = _format(tmp_path, STORIES)
    assert not fmt.chat and fmt.bos and fmt.parts == ("Table: ", "\nTitle:")
    assert fmt.go_template() == "Table: {{ .Prompt }}\nTitle:{{ .Response }}"


def test_several_fields_make_the_whole_input_the_prompt(tmp_path: Path) -> None:
    task, cfg, fmt = _format(tmp_path, STORIES, prompt="{table} / {title}:")
    assert fmt.field is None and fmt.parts == ("", "")
    assert fmt.value_of("a / b:") == "a / b:"
    assert "whole input" in modelfile("m.gguf", fmt, cfg, None, "t")
