"""zero-shot: the base model untouched, the baseline row of every leaderboard.

For classification the base has a freshly initialised head, so this row shows chance level:
that is the honest baseline for a model that has never seen the labels.
"""

from peftlab.methods.base import Method, MethodOptions


class ZeroShotOptions(MethodOptions):
    pass


METHOD = Method(
    name="zero-shot",
    summary="Base model as is, no training (baseline).",
    options=ZeroShotOptions,
    learning_rates={"default": 0.0},
    trains=False,
    family="zero-shot",
    artifact=None,
)
