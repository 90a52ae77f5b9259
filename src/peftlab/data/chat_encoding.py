"""Token ids and the assistant-only loss mask for a `Conversation`.

`encode_conversation` renders the whole conversation with the tokenizer's chat template and
labels the tokens of every assistant turn's content plus its end-of-turn token (TRL's
`assistant_only_loss`); system and user turns and the template's role headers get -100.
The mask does not rely on `{% generation %}` markers (many templates, SmolLM2's among them,
have none): for assistant turn k it renders messages[:k] with the generation prompt (which
ends with the assistant header) and messages[:k+1] without it, checks at token level that
each rendering is a prefix of the next and of the whole, and labels what lies between.
A template that renders earlier turns differently once more follow (e.g. one that strips
past reasoning) is refused with a ModelError, since no mask built from it would match.

`encode_prompt` renders a context with the generation prompt: exactly the tokens that
precede the assistant content in training, so inference sees what training saw.

Tokenizers without a chat template use a plain layout, built from separately tokenized
pieces so that it is prefix-stable by construction:

    [BOS] System: {system}\\n  User: {user}\\n  Assistant: {reply}</s>  User: ...

Truncation (when `max_len` is given and exceeded): drop the earliest user/assistant pairs,
keeping the system message and the final exchange; if that is still too long, cut contents,
keeping their starts: the last user turn gives way first, but the final reply keeps at least
half of the tokens left, and always its end-of-turn token. The cut conversation is rendered
afresh, so it is as prefix-stable as an uncut one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from peftlab.data.formats import Conversation, Turn
from peftlab.errors import DataError, ModelError

IGNORE_INDEX = -100
PLAIN_SYSTEM = "System: "
PLAIN_USER = "User: "
PLAIN_ASSISTANT = "Assistant:"
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")  # ChatML, Llama 3, Phi-3, Gemma


class EncodedConversation(NamedTuple):
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX except on assistant contents and their end-of-turn tokens
    truncated: bool


def encode_conversation(
    tok: Any, conv: Conversation, max_len: int | None = None, template_kwargs: dict[str, Any] | None = None
) -> EncodedConversation:
    """Input ids and assistant-only labels of `conv`, at most `max_len` tokens long."""
    enc = _Encoder(tok, template_kwargs)
    conv, truncated = _fit(enc, conv, max_len, prompt=False)
    ids, labels = enc.conversation(conv)
    return EncodedConversation(ids, labels, truncated)


def encode_prompt(
    tok: Any, context: Conversation, max_len: int | None = None, template_kwargs: dict[str, Any] | None = None
) -> list[int]:
    """Token ids of `context` (ending with a user turn) followed by the assistant header."""
    if not context.turns or context.turns[-1].role != "user":
        raise ValueError(f"{context.where}: a prompt context must end with a user turn (see split_last_assistant)")
    enc = _Encoder(tok, template_kwargs)
    return enc.prompt(_fit(enc, context, max_len, prompt=True)[0])


def split_reply(tok: Any, conv: Conversation, max_len: int | None = None,
                template_kwargs: dict[str, Any] | None = None) -> tuple[list[int], list[int]]:
    """`conv` (ending with an assistant turn) encoded as in training, cut before its last reply:
    (prompt ids, reply ids), the reply being that turn's labelled tokens (content + end-of-turn).
    Evaluation generates from the prompt and scores the reply, so both are exactly what training
    saw, truncation included (a prompt encoded on its own would be cut by another budget)."""
    ids, labels, _ = encode_conversation(tok, conv, max_len, template_kwargs)
    end = max(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX) + 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return ids[:start], ids[start:end]


def render_segments(tok: Any, conv: Conversation, max_len: int | None = None,
                    template_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`conv` as the model sees it in training: the decoded text in runs of positions that are
    trained (the assistant replies) or not, `[{"text", "trained"}]` (special tokens kept)."""
    ids, labels, _ = encode_conversation(tok, conv, max_len, template_kwargs)
    out: list[dict[str, Any]] = []
    run: list[int] = []
    for i, (t, lab) in enumerate(zip(ids, labels, strict=True)):
        run.append(t)
        trained = lab != IGNORE_INDEX
        if i + 1 == len(ids) or (labels[i + 1] != IGNORE_INDEX) != trained:
            out.append({"text": tok.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False),
                        "trained": trained})
            run = []
    return out


def end_of_turn_ids(tok: Any) -> list[int]:
    """Token ids that can close an assistant turn: the chat end-of-turn tokens, then EOS. The one
    definition: training (the columns path's appended token, the mask), generation's stop tokens
    (`tasks.causal_lm.stop_ids`) and serving all read it."""
    ids: list[int] = []
    if getattr(tok, "chat_template", None):  # (not get_vocab(): it copies the vocabulary per call)
        found = [tok.convert_tokens_to_ids(t) for t in _END_OF_TURN]
        ids = [i for i in found if isinstance(i, int) and i != tok.unk_token_id]
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    return ids


class _Encoder:
    """One tokenizer's rendering: its chat template, or the plain layout."""

    def __init__(self, tok: Any, template_kwargs: dict[str, Any] | None) -> None:
        self.tok = tok
        self.kwargs = template_kwargs or {}
        self.chat = bool(getattr(tok, "chat_template", None))
        self.eot = set(end_of_turn_ids(tok))
        if not self.eot:
            raise ModelError(f"{_name(tok)}: the tokenizer has no EOS token; set one so the model can learn to stop")
        if not self.chat:
            probe = tok("a")["input_ids"]
            bos = tok.bos_token_id
            self.bos = [bos] if bos is not None and probe and probe[0] == bos else []
            # Whether the tokenizer itself puts a space before a piece (SentencePiece does);
            # if not, the reply gets one so that "Assistant:" and the reply do not run together.
            joined = tok.decode(self.ids(PLAIN_ASSISTANT) + self.ids("Hi"), skip_special_tokens=True)
            self.reply_prefix = "" if joined.strip() == f"{PLAIN_ASSISTANT} Hi" else " "

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def render(self, msgs: list[dict[str, str]], gen: bool, where: str = "") -> list[int]:
        try:
            text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **self.kwargs)
        except Exception as e:  # noqa: BLE001 - a template's own raise_exception() is a jinja2 error
            raise ModelError(
                f"{where + ': ' if where else ''}{_name(self.tok)}'s chat template refused the conversation "
                f"({type(e).__name__}: {e}); some templates allow no system message (drop data.system_prompt "
                f"and system turns) or need other roles"
            ) from None
        return self.ids(text)

    def length(self, conv: Conversation, prompt: bool) -> int:
        if self.chat:
            return len(self.render(conv.messages(), prompt, conv.where))
        return len(self.prompt(conv) if prompt else self.plain(conv)[0])

    def prompt(self, conv: Conversation) -> list[int]:
        if self.chat:
            return self.render(conv.messages(), True, conv.where)
        return self.plain(conv)[0] + self.ids(PLAIN_ASSISTANT)

    def conversation(self, conv: Conversation) -> tuple[list[int], list[int]]:
        return self.templated(conv) if self.chat else self.plain(conv)

    def templated(self, conv: Conversation) -> tuple[list[int], list[int]]:
        msgs = conv.messages()
        full = self.render(msgs, False, conv.where)
        labels = [IGNORE_INDEX] * len(full)
        first = len(msgs) - len(conv.turns)  # 1 with a system message
        for i, turn in enumerate(conv.turns):
            if turn.role != "assistant" or not turn.loss:
                continue
            k = first + i
            head = self.render(msgs[:k], True, conv.where)
            upto = full if k == len(msgs) - 1 else self.render(msgs[: k + 1], False, conv.where)
            self._prefix(head, upto, conv, f"messages[:{k}] with the generation prompt", f"messages[:{k + 1}]")
            self._prefix(upto, full, conv, f"messages[:{k + 1}]", "the whole conversation")
            span = upto[len(head) :]
            ends = [j for j, t in enumerate(span) if t in self.eot]
            if not ends:
                raise ModelError(
                    f"{conv.where}: {_name(self.tok)}'s chat template closes assistant turn {i} with no "
                    f"end-of-turn or EOS token, so the model could not learn to stop; use a template that ends "
                    f"each assistant turn with one"
                )
            stop = len(head) + ends[-1] + 1
            labels[len(head) : stop] = full[len(head) : stop]
        return full, labels

    def plain(self, conv: Conversation) -> tuple[list[int], list[int]]:
        ids = list(self.bos)
        if conv.system:
            ids += self.ids(f"{PLAIN_SYSTEM}{conv.system}\n")
        labels = [IGNORE_INDEX] * len(ids)
        eos = self.tok.eos_token_id
        for t in conv.turns:
            if t.role == "user":
                part = self.ids(f"{PLAIN_USER}{t.content}\n")
                ids += part
                labels += [IGNORE_INDEX] * len(part)
                continue
            head = self.ids(PLAIN_ASSISTANT)
            body = self.ids(self.reply_prefix + t.content) + [eos]
            ids += head + body
            labels += [IGNORE_INDEX] * len(head) + (body if t.loss else [IGNORE_INDEX] * len(body))
        return ids, labels

    def _prefix(self, a: list[int], b: list[int], conv: Conversation, a_name: str, b_name: str) -> None:
        if b[: len(a)] == a:
            return
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        raise ModelError(
            f"{conv.where}: {_name(self.tok)}'s chat template is not prefix-stable: the tokens of {a_name} are "
            f"not a prefix of those of {b_name} (first difference at token {at}: "
            f"{self.tok.decode(a[at : at + 8])!r} vs {self.tok.decode(b[at : at + 8])!r}), so the "
            f"assistant-only loss mask cannot be built; use a model whose template renders earlier turns the "
            f"same whatever follows, or data.format: columns"
        )


def _fit(enc: _Encoder, conv: Conversation, max_len: int | None, prompt: bool) -> tuple[Conversation, bool]:
    """Shorten `conv` to `max_len` tokens (see the module docstring); (conversation, truncated)."""
    if max_len is None or enc.length(conv, prompt) <= max_len:
        return conv, False
    # 1. Drop the earliest (user, assistant) pairs; fewer dropped is better, and the length
    #    falls as more are dropped, so binary-search the smallest number that fits.
    most = (len(conv.turns) - 1) // 2
    lo, hi = 1, most
    while lo <= hi:
        mid = (lo + hi) // 2
        if enc.length(_drop(conv, mid), prompt) <= max_len:
            hi = mid - 1
        else:
            lo = mid + 1
    if lo <= most:
        return _drop(conv, lo), True
    conv = _drop(conv, most)
    # 2. Cut the contents of the last user turn (and of the reply, when it is the long part).
    user_i = len(conv.turns) - (1 if prompt else 2)
    u = enc.ids(conv.turns[user_i].content)
    r = [] if prompt else enc.ids(conv.turns[-1].content)
    budget = max_len - (enc.length(conv, prompt) - len(u) - len(r))
    if budget < (1 if prompt else 2):
        raise DataError(
            f"{conv.where}: the system message and the chat template's headers take more than the "
            f"{max_len} tokens allowed; shorten the system message or raise the length limit"
        )
    r_keep = min(len(r), max(budget - len(u), budget // 2), max(budget - 1, 0))
    u_keep = min(len(u), budget - r_keep)
    for _ in range(8):  # re-tokenizing cut text can shift a token or two: shave until it fits
        cut = _cut_turns(enc, conv, user_i, u[:u_keep], None if prompt else r[: max(r_keep, 1)])
        over = enc.length(cut, prompt) - max_len
        if over <= 0:
            return cut, True
        if u_keep > 0:
            u_keep = max(0, u_keep - over)
        else:
            r_keep = max(1, r_keep - over)
    raise DataError(f"{conv.where}: cannot fit the conversation into {max_len} tokens; raise the length limit")


def _drop(conv: Conversation, pairs: int) -> Conversation:
    return replace(conv, turns=list(conv.turns[2 * pairs :]))


def _cut_turns(enc: _Encoder, conv: Conversation, user_i: int, u: list[int], r: list[int] | None) -> Conversation:
    turns = list(conv.turns)
    turns[user_i] = Turn("user", _decode(enc, u))
    if r is not None:
        turns[-1] = Turn("assistant", _decode(enc, r) or turns[-1].content[:1], turns[-1].loss)
    return replace(conv, turns=turns)


def _decode(enc: _Encoder, ids: list[int]) -> str:
    """Text of the kept tokens, less a half character left where a cut split one."""
    return enc.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False).rstrip("\ufffd").strip()


def _name(tok: Any) -> str:
    return str(getattr(tok, "name_or_path", "") or type(tok).__name__)
