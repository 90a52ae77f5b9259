"""causal-lm: prompt then completion, loss only on the completion, EOS appended.

The same `PromptFormatter` builds the prompt at training, evaluation and inference time,
so the model sees identical token sequences: the model's chat template when it has one,
otherwise the prompt template as written. The completion ends with EOS so the model
learns to stop (no "Ghana Ghana Ghana").

Conversations (chat data formats, `data.as_chat`; `Example.conversation`, or any input when the
task is `conversational`) go through `peftlab.data.chat_encoding` instead: training labels every
assistant turn (assistant-only loss), and evaluation, prediction and serving render the
conversation before the last assistant turn with the generation prompt, which is exactly the
prefix that turn had in training, and score that turn as the reference. A conversational
task's bare input text (the playground, an endpoint) is one user turn.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

from peftlab.data.chat_encoding import encode_conversation, encode_prompt, end_of_turn_ids, split_reply
from peftlab.data.formats import Conversation, Turn
from peftlab.data.prepare import Example
from peftlab.evaluate.metrics import generation_metrics
from peftlab.tasks.base import Prediction, Task
from peftlab.tasks.generation import GenerationResult, generate_batched, one_pass_ok
from peftlab.tasks.spec import CAUSAL_LM, SPECS

_SENTINEL = "\u2063PEFTLAB_CONTENT\u2063"


class PromptFormatter:
    """Token ids for a prompt: [chat prefix] + truncated content + [chat suffix]."""

    def __init__(self, tok: Any, system_prompt: str | None = None) -> None:
        self.tok = tok
        self.prefix_ids: list[int] = []
        self.suffix_ids: list[int] = []
        self.chat = bool(getattr(tok, "chat_template", None))
        if self.chat:
            msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
            msgs.append({"role": "user", "content": _SENTINEL})
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            prefix, suffix = text.split(_SENTINEL)
            self.prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"]
            self.suffix_ids = tok(suffix, add_special_tokens=False)["input_ids"]
        else:
            probe = tok("a")["input_ids"]
            if tok.bos_token_id is not None and probe and probe[0] == tok.bos_token_id:
                self.prefix_ids = [tok.bos_token_id]
        self.eos_id = stop_ids(tok)[0]

    def prompt_ids(self, content: str, max_len: int) -> tuple[list[int], bool]:
        ids = self.tok(content, add_special_tokens=False)["input_ids"]
        budget = max(1, max_len - len(self.prefix_ids) - len(self.suffix_ids))
        return self.prefix_ids + ids[:budget] + self.suffix_ids, len(ids) > budget

    def target_ids(self, target: str, max_len: int) -> tuple[list[int], bool]:
        ids = self.tok(target, add_special_tokens=False)["input_ids"]
        return ids[: max_len - 1] + [self.eos_id], len(ids) > max_len - 1


def keep_count(labels: torch.Tensor) -> int:
    """How many trailing positions hold every logit that predicts a label."""
    n = labels.shape[1]
    has = labels != -100
    first = torch.where(has.any(1), has.float().argmax(1), torch.full_like(has[:, 0], n, dtype=torch.long))
    return max(2, n - int(first.min()) + 1)


def completion_loss(logits: torch.Tensor, labels: torch.Tensor, num_items: Any = None) -> torch.Tensor:
    """Next-token cross-entropy of `logits` (the last k positions) against `labels` (all n)."""
    k = logits.shape[1]
    target = labels[:, labels.shape[1] - k + 1 :].to(logits.device)
    loss = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), target.flatten(), ignore_index=-100, reduction="sum"
    )
    count = num_items if num_items is not None else (target != -100).sum().clamp(min=1)
    return loss / count


def stop_ids(tok: Any) -> list[int]:
    """Token ids that end a completion: the chat end-of-turn token first, then EOS
    (`chat_encoding.end_of_turn_ids`, the one definition; here it must not be empty)."""
    ids = end_of_turn_ids(tok)
    if not ids:
        raise ValueError("tokenizer has no EOS token; set one so the model can learn to stop")
    return ids


class CausalLMTask(Task):
    spec = SPECS[CAUSAL_LM]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fmt = PromptFormatter(self.tok, self.system_prompt)

    def prepare_model(self, model: Any) -> None:
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tok.pad_token_id
        self.keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    keep_logits = False  # the model can compute logits for the last k positions only

    def loss(self, model: Any, batch: dict[str, Any], num_items: Any = None) -> torch.Tensor:
        """Cross-entropy on the completion, with logits computed only where it can be.

        The LM head (vocabulary x hidden) over every prompt position is about a fifth of
        SmolLM2's training FLOPs, and its fp32 logits the biggest activation, yet only the
        completion tokens carry loss. With right padding the completions of a batch all lie in
        its last `k` positions, k = length - shortest prompt + 1, so the model is asked for
        those logits only (`logits_to_keep`; virtual tokens of prompt methods are prepended,
        so they do not move the tail).
        """
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.keep_logits:
            inputs["logits_to_keep"] = keep_count(labels)
        logits = model(**inputs).logits
        return completion_loss(logits, labels, num_items)

    def encode(self, ex: Example) -> dict[str, Any]:
        if self._chat(ex):
            t = self.training
            enc = encode_conversation(self.tok, self.conversation(ex), t.max_source_length + t.max_target_length)
            self.truncated += int(enc.truncated)
            return {"input_ids": enc.input_ids, "labels": enc.labels}
        p, cut_p = self.fmt.prompt_ids(ex.source, self.training.max_source_length)
        t, cut_t = self.fmt.target_ids(ex.target or "", self.training.max_target_length)
        self.truncated += int(cut_p or cut_t)
        return {"input_ids": p + t, "labels": [-100] * len(p) + t}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(len(f["input_ids"]) for f in features)
        pad = self.tok.pad_token_id
        ids = torch.full((len(features), n), pad, dtype=torch.long)
        labels = torch.full((len(features), n), -100, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def prompt(self, source: str) -> list[int]:
        if self.conversational:
            return self.prompt_of(Example(source=source))
        return self.fmt.prompt_ids(source, self.training.max_source_length)[0]

    def _chat(self, ex: Example) -> bool:
        return ex.conversation is not None or self.conversational

    def conversation(self, ex: Example) -> Conversation:
        """The example as a conversation (its own; or its input text as a user turn, and its
        target, when it has one, as the reply), with data.system_prompt where it has no system
        message of its own."""
        conv = ex.conversation
        if conv is None:
            turns = [Turn("user", ex.source.strip())]
            if ex.target and ex.target.strip():
                turns.append(Turn("assistant", ex.target.strip()))
            conv = Conversation(None, turns, ex.where)
        if conv.system is None and self.system_prompt:
            conv = Conversation(self.system_prompt, conv.turns, conv.where)
        return conv

    def prompt_of(self, ex: Example) -> list[int]:
        """The prompt tokens generation continues: the training prefix of the reply."""
        if not self._chat(ex):
            return self.fmt.prompt_ids(ex.source, self.training.max_source_length)[0]
        return self._split(ex)[0]

    def target_of(self, ex: Example) -> list[int]:
        """The reference tokens the test loss scores after `prompt_of(ex)`."""
        if not self._chat(ex):
            return self.fmt.target_ids(ex.target or "", self.training.max_target_length)[0]
        prompt, reply = self._split(ex)
        if not reply:
            raise ValueError(f"{ex.where}: no assistant turn to score; evaluation needs the reference reply")
        return reply

    def _split(self, ex: Example) -> tuple[list[int], list[int]]:
        """(prompt, reply) of a conversation: with a final reply, the training sequence (the same
        length budget, source + target) cut before it; without (prediction), the context
        rendered with the generation prompt in max_source_length tokens, and no reply."""
        conv, t = self.conversation(ex), self.training
        if conv.turns[-1].role != "assistant":
            return encode_prompt(self.tok, conv, t.max_source_length), []
        return split_reply(self.tok, conv, t.max_source_length + t.max_target_length)

    def predict(self, model: Any, examples: list[Example], desc: str = "predict") -> list[Prediction]:
        return self._generate(model, examples, desc)[1]

    def evaluate(self, model: Any, examples: list[Example], desc: str = "test") -> tuple[float, list[Prediction]]:
        """Test loss and predictions from one prompt pass per batch (see `generate_batched`),
        where generation is greedy and any virtual tokens can head the cache."""
        targets = [self.target_of(e) for e in examples]
        if self.evaluation.num_beams != 1 or not self.keep_logits or not one_pass_ok(model):
            # A loss pass over prompt + reference (for conversations: the last reply only), then generation.
            from peftlab.evaluate.loss import mean_loss

            prompts = [self.prompt_of(e) for e in examples]
            feats = [{"input_ids": p + t, "labels": [-100] * len(p) + t} for p, t in zip(prompts, targets, strict=True)]
            loss = mean_loss(model, feats, self.collate, self.evaluation.batch_size, self.precision,
                             desc=f"{desc} loss", loss=self.loss)
            return loss, self.predict(model, examples, desc=desc)
        generated, preds = self._generate(model, examples, desc, targets)
        return generated.mean_loss, preds

    def _generate(
        self, model: Any, examples: list[Example], desc: str, targets: list[list[int]] | None = None
    ) -> tuple[GenerationResult, list[Prediction]]:
        prompts = [self.prompt_of(e) for e in examples]
        generated = generate_batched(
            model, self.tok, prompts, self.evaluation, stop_ids(self.tok), desc=desc, precision=self.precision,
            targets=targets,
        )
        preds = [
            Prediction(e.source, e.references if len(e.references) > 1 else (e.target or ""), text, stopped)
            for e, (text, stopped) in zip(examples, generated.outputs, strict=True)
        ]
        return generated, preds

    def score(self, examples: list[Example], preds: list[Prediction]) -> dict[str, float]:
        return generation_metrics([p.output for p in preds], [e.references for e in examples])
