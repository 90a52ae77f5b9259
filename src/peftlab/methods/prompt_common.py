"""Options shared by the prompt-learning methods (virtual tokens prepended to the input)."""

import re

from pydantic import Field

from peftlab.methods.base import MethodContext, MethodOptions


class VirtualTokenOptions(MethodOptions):
    num_virtual_tokens: int = Field(20, gt=0, le=512)


class TextInitOptions(VirtualTokenOptions):
    """Virtual tokens that start from real text rather than random vectors."""

    init_text: str | None = Field(
        None, description='e.g. "Write the title of this table:". Default: the prompt template\'s words.'
    )
    random_init: bool = Field(False, description="Start from random vectors instead of text.")


def init_text(opts: TextInitOptions, ctx: MethodContext) -> str | None:
    """`init_text`, else the fixed words of the prompt template; None for random init."""
    if opts.random_init:
        return None
    if opts.init_text:
        return opts.init_text
    words = re.sub(r"\{[^{}]*\}", " ", ctx.prompt_text or "").split()
    return " ".join(words) or None
