"""Options shared by the prompt-learning methods (virtual tokens prepended to the input)."""

from pydantic import Field

from peftlab.methods.base import MethodOptions


class VirtualTokenOptions(MethodOptions):
    num_virtual_tokens: int = Field(20, gt=0, le=512)
