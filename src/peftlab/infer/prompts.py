"""Prompts from OpenAI-style requests, built as the run's training built its inputs.

Training formats an input in two steps, and so does this: the experiment's prompt template (or
its input column) makes the text (`loading.source_text`), then the task turns it into tokens:
a causal LM through `PromptFormatter` (the model's chat template around it, with the
experiment's system prompt, or the bare text after BOS), an encoder-decoder through its
tokenizer, a classifier reads the text. A chat request's user turns are the inputs; a single
user turn (with the run's own system prompt or none) gives exactly the training tokens. Longer
conversations go through the chat template as a whole, each message's text tokenized on its own
as `PromptFormatter` does. A run trained on conversations (a chat `data.format` or
`data.as_chat`) was encoded by `data.chat_encoding`, so its requests are too: the messages
become a `Conversation` and `encode_prompt` renders it with the generation prompt, the chat
template's or the plain layout's, exactly as training rendered the turns before a reply.
Nothing is truncated here (training cut inputs to
`max_source_length`): a prompt longer than the model's context is refused by the engine.
"""

from __future__ import annotations

from typing import Any

from peftlab.config.schema import ExperimentConfig
from peftlab.data.chat_encoding import encode_prompt
from peftlab.data.formats import Conversation, Turn
from peftlab.errors import PeftlabError
from peftlab.infer.loading import source_text
from peftlab.tasks.base import Task
from peftlab.tasks.spec import CAUSAL_LM, SEQ2SEQ

UNLIMITED = 1 << 30
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class PromptError(PeftlabError):
    """A request's prompt or messages this run cannot take; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def text_of(content: Any, param: str) -> str:
    """A message's content: a string, or OpenAI's list of parts of which only text ones are taken."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if not isinstance(p, dict) or p.get("type") != "text":
                raise PromptError("only text content is supported (parts of type 'text')", param)
            parts.append(str(p.get("text", "")))
        return "".join(parts)
    raise PromptError("content must be a string or a list of text parts", param)


def input_text(cfg: ExperimentConfig, text: str, param: str) -> str:
    """The experiment's prompt template around `text`, as a training row of it was formatted."""
    try:
        return source_text(cfg, text, None)
    except PeftlabError as e:
        raise PromptError(str(e), param) from None


def completion_prompt(task: Task, cfg: ExperimentConfig, prompt: str) -> tuple[list[int], str]:
    """(token ids, the formatted text) for /v1/completions' `prompt`."""
    return source_prompt(task, cfg, input_text(cfg, prompt, "prompt"))


def raw_ids(task: Task, cfg: ExperimentConfig, ids: list[int]) -> tuple[list[int], str]:
    """(`ids`, their text) for a prompt of token ids: the model's own tokens, taken as they are, with no
    template (as lm-evaluation-harness sends them)."""
    if cfg.task != CAUSAL_LM:
        raise PromptError(f"a prompt of token ids is for causal language model runs; this run is {cfg.task}: "
                          "send the prompt as text", "prompt")
    if not ids:
        raise PromptError("the prompt has no tokens", "prompt")
    size = len(task.tok)
    bad = next((t for t in ids if not 0 <= t < size), None)
    if bad is not None:
        raise PromptError(f"token id {bad} is not in this model's vocabulary (0 to {size - 1})", "prompt")
    return list(ids), task.tok.decode(ids)


def source_prompt(task: Task, cfg: ExperimentConfig, src: str) -> tuple[list[int], str]:
    """(token ids, `src`) for an input already through the experiment's template (the playground's,
    with a value per input column)."""
    if _conversational(task, cfg):
        return _conversation_ids(task, cfg, [{"role": "user", "content": src}]), src
    return _ids(task, cfg, src), src


def chat_prompt(task: Task, cfg: ExperimentConfig, messages: list[dict[str, Any]]) -> tuple[list[int], str]:
    """(token ids, the last user input) for /v1/chat/completions' `messages`."""
    msgs = []
    for i, m in enumerate(messages):
        role = ROLES.get(str(m.get("role")))
        if role is None:
            raise PromptError(f"messages[{i}].role must be one of {', '.join(ROLES)}", f"messages[{i}].role")
        msgs.append({"role": role, "content": text_of(m.get("content"), f"messages[{i}].content")})
    if not msgs or msgs[-1]["role"] != "user":
        raise PromptError("the last message must be the user's", "messages")
    for m in msgs:
        if m["role"] == "user":
            m["content"] = input_text(cfg, m["content"], "messages")
    turns = [m for m in msgs if m["role"] != "system"]
    if _conversational(task, cfg):
        return _conversation_ids(task, cfg, msgs), turns[-1]["content"]
    systems = [m["content"] for m in msgs if m["role"] == "system"]
    if len(turns) == 1 and (not systems or systems == [cfg.data.system_prompt]):
        return _ids(task, cfg, turns[0]["content"]), turns[0]["content"]  # exactly a training input
    if cfg.task != CAUSAL_LM or not task.fmt.chat:
        raise PromptError("this run's model has no chat template: it was trained on one input at a time, so send "
                          "one user message (and no system message but the experiment's own)", "messages")
    if not systems and cfg.data.system_prompt:
        msgs.insert(0, {"role": "system", "content": cfg.data.system_prompt})
    return _chat_ids(task.tok, msgs), turns[-1]["content"]


def _conversational(task: Task, cfg: ExperimentConfig) -> bool:
    return cfg.task == CAUSAL_LM and bool(getattr(task, "conversational", False))


def _conversation_ids(task: Task, cfg: ExperimentConfig, msgs: list[dict[str, str]]) -> list[int]:
    """The request as the conversation training encoded: its system messages joined (the
    experiment's system prompt where it has none), user and assistant turns as given."""
    systems = [m["content"] for m in msgs if m["role"] == "system"]
    system = "\n\n".join(systems) if systems else cfg.data.system_prompt
    turns = [Turn(m["role"], m["content"].strip(), loss=False) for m in msgs if m["role"] != "system"]
    return encode_prompt(task.tok, Conversation(system, turns, "request"))


def _ids(task: Task, cfg: ExperimentConfig, src: str) -> list[int]:
    if cfg.task == CAUSAL_LM:
        return task.fmt.prompt_ids(src, UNLIMITED)[0]
    if cfg.task == SEQ2SEQ:
        return task.tok(src)["input_ids"]
    return task.tok(src)["input_ids"]  # a classifier: counted, the text itself is what it reads


def _chat_ids(tok: Any, msgs: list[dict[str, str]]) -> list[int]:
    """The conversation through the chat template, the template's own text and each message's
    text tokenized apart (as `PromptFormatter` does for one turn); a template that rewrites the
    messages, so that the marks do not survive, is tokenized whole."""
    marks = [f"\u2063PEFTLAB_MSG_{i}\u2063" for i in range(len(msgs))]
    shown = [m if m["role"] == "system" else {**m, "content": marks[i]} for i, m in enumerate(msgs)]
    text = tok.apply_chat_template(shown, tokenize=False, add_generation_prompt=True)
    ids: list[int] = []
    pos = 0
    for i, m in enumerate(msgs):
        if m["role"] == "system":
            continue
        j = text.find(marks[i], pos)
        if j < 0:
            whole = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return tok(whole, add_special_tokens=False)["input_ids"]
        ids += tok(text[pos:j], add_special_tokens=False)["input_ids"]
        ids += tok(m["content"], add_special_tokens=False)["input_ids"]
        pos = j + len(marks[i])
    return ids + tok(text[pos:], add_special_tokens=False)["input_ids"]
