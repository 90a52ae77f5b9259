"""One checked example of a split, as every task reads it (rows, chat conversations and images alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Example:
    source: str  # the formatted input text (the prompt template applied); "" for images
    target: str | None = None  # training target (generation tasks)
    references: list[str] = field(default_factory=list)  # all references (multi-reference eval)
    label: int | None = None
    image: Any = None  # PIL.Image for image tasks
    where: str = ""  # "file:line", for messages
    # Chat data: the whole conversation (a formats.Conversation), which the task encodes with the
    # chat template; `source` is then the context before the last reply as text, `target` that reply.
    conversation: Any = None
