"""A run's prompt format as text, for the places that format prompts themselves: Ollama's
Modelfile (a Go template) and the GGUF's chat template (Jinja, which llama.cpp's chat endpoints
and LM Studio read).

Both are made from one `PromptFormat`: the token ids a single input gets in training and on
/v1 (`infer.prompts.source_prompt`: the experiment's prompt template, then the model's chat
template with the experiment's system prompt, or the bare text after BOS), decoded back to text
around a marker where the user's input goes. The GGUF check (`infer.gguf`) then feeds llama.cpp
`render(value)` and requires llama.cpp's tokens to equal these ids, so a template that would not
give the trained tokens is not offered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from peftlab.config.schema import ExperimentConfig
from peftlab.errors import PeftlabError
from peftlab.infer.loading import source_text
from peftlab.infer.prompts import source_prompt
from peftlab.tasks.base import Task
from peftlab.tasks.causal_lm import stop_ids

MARK = "PEFTLABINPUTMARK"  # ASCII: every tokenizer round-trips it


@dataclass(frozen=True)
class PromptFormat:
    """The text of a prompt is `value.join(parts)`: the literal texts between the places the
    user's input goes (the template's field, once or more, or the whole formatted input)."""

    parts: tuple[str, ...]
    stops: tuple[str, ...]  # token texts that end a reply: the end of turn first, then EOS
    chat: bool  # the model's chat template made the prompt (a reply ends with stops[0])
    field: str | None  # the prompt template's field the input fills; None: the input is the whole text
    bos: bool  # training put BOS first (llama.cpp adds it where the GGUF says so)
    template: tuple[str, str] = ("", "")  # the prompt template's text before and after its field

    def render(self, value: str) -> str:
        return value.join(self.parts)

    def value_of(self, source: str) -> str:
        """The input value of a formatted source (a test row's input), for a one-field template."""
        if self.field is None:
            return source
        head, tail = self.template
        if source.startswith(head) and source.endswith(tail) and len(source) >= len(head) + len(tail):
            return source[len(head): len(source) - len(tail)]
        raise PeftlabError(f"probe input {source[:60]!r} does not follow the experiment's prompt template")

    def go_template(self) -> str:
        """Ollama's TEMPLATE: the prompt, then the reply and (in a chat) its end of turn, so that a
        conversation's earlier turns render as they were trained."""
        body = "{{ .Prompt }}".join(_go_literal(p) for p in self.parts) + "{{ .Response }}"
        return body + (_go_literal(self.stops[0]) if self.chat and self.stops else "")

    def jinja_template(self) -> str:
        """A chat template giving the same text for the last user message (llama.cpp's chat
        endpoints, LM Studio); BOS is left to the GGUF's add_bos flag."""
        return "{{ messages[-1]['content'] }}".join(_jinja_literal(p) for p in self.parts)


def _go_literal(text: str) -> str:
    """Literal text inside a Go template: `{{` would open an action."""
    return text.replace("{{", '{{ "{{" }}')


def _jinja_literal(text: str) -> str:
    return "{{ " + json.dumps(text) + " }}" if text else ""


def prompt_format(task: Task, cfg: ExperimentConfig) -> PromptFormat:
    """The run's single-input prompt format (a causal LM's)."""
    tok = task.tok
    field: str | None = None
    template = ("", "")
    try:
        src = source_text(cfg, MARK, None)
    except PeftlabError:  # a template of several fields: the input is the whole formatted text
        src = MARK
    fields = _fields(cfg)
    if len(fields) == 1 and src.count(MARK) == 1:
        field = fields[0]
        head, _, tail = src.partition(MARK)
        template = (head, tail)
    else:
        src = MARK  # no template, several fields, or one used twice: the input is the formatted text
    ids, _ = source_prompt(task, cfg, src)
    # BOS is left to llama.cpp where the tokenizer adds it itself (the GGUF's add_bos flag says so); a
    # chat template's first token may be the BOS token (SmolLM2's <|im_start|>) and then stays text.
    adds = tok.bos_token_id is not None and tok("a")["input_ids"][:1] == [tok.bos_token_id]
    bos = adds and ids[:1] == [tok.bos_token_id]
    text = tok.decode(ids[1:] if bos else ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    parts = tuple(text.split(MARK))
    if len(parts) < 2:
        raise PeftlabError("this run's prompt format cannot be written as a template (its input did not survive "
                           "the tokenizer's round trip)")
    stops = tuple(dict.fromkeys(tok.convert_ids_to_tokens(i) for i in stop_ids(tok)))
    return PromptFormat(parts, stops, bool(getattr(task.fmt, "chat", False)), field, bos,
                        ("", "") if field is None else template)


def _fields(cfg: ExperimentConfig) -> list[str]:
    if not cfg.data.prompt:
        return []
    from peftlab.data.prepare import template_fields

    return list(dict.fromkeys(template_fields(cfg.data.prompt)))


def modelfile(gguf_name: str, fmt: PromptFormat, cfg: ExperimentConfig, context: int | None,
              title: str) -> str:
    """Ollama's Modelfile for the GGUF beside it: the trained prompt format, the stop tokens and
    the run's decoding (greedy; Ollama's defaults would sample at temperature 0.8 with a 1.1
    repeat penalty)."""
    tpl = fmt.go_template()
    if '"""' in tpl:
        raise PeftlabError('the prompt format holds """, which a Modelfile cannot quote')
    ev = cfg.evaluation
    lines = [f"# {title}", "# ollama create NAME -f THIS_FILE, then: ollama run NAME", f"FROM ./{gguf_name}",
             f'TEMPLATE """{tpl}"""']
    if fmt.field:
        lines.insert(2, f"# The prompt is the value of {{{fmt.field}}} in the experiment's prompt template.")
    elif cfg.data.prompt:
        lines.insert(2, "# The prompt is the whole input, formatted as the experiment's prompt template formats it.")
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in fmt.stops]
    lines += ["PARAMETER temperature 0", f"PARAMETER repeat_penalty {ev.repetition_penalty:g}",
              "PARAMETER repeat_last_n -1", f"PARAMETER num_predict {ev.max_new_tokens}"]
    if context:
        lines.append(f"PARAMETER num_ctx {context}")
    return "\n".join(lines) + "\n"


def ollama_prompt(template: str, value: str) -> str:
    """What Ollama sends the model for a first prompt `value` under a TEMPLATE this module wrote
    (its `{{ .Prompt }}` filled, the text from `{{ .Response }}` on left out, as Ollama does when
    generating): the check's and the tests' reading of the Modelfile."""
    head = template.split("{{ .Response }}", 1)[0]
    return head.replace("{{ .Prompt }}", "\x00").replace('{{ "{{" }}', "{{").replace("\x00", value)


def context_of(model: Any) -> int | None:
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(min(n, 4096)) if isinstance(n, int) and n > 0 else None
