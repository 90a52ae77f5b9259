"""Error types. Every error a user can cause is a PeftlabError with a message that names
the file, line or key at fault and says how to fix it."""

from __future__ import annotations


class PeftlabError(Exception):
    """Base class for user-facing errors (bad config, bad data, impossible method)."""


class ConfigError(PeftlabError):
    """The experiment file is invalid: YAML syntax, unknown key, wrong type or bad value."""


class DataError(PeftlabError):
    """A data file cannot be read or a row is invalid."""


class ModelError(PeftlabError):
    """A model cannot be found or loaded, or a module named in the config does not exist."""


class StoreError(PeftlabError):
    """The store folder or its database cannot be used: a file where a folder should be, a
    corrupt database, no write access for a write."""


class MethodNotApplicable(PeftlabError):
    """A PEFT method cannot apply to this task or architecture."""


class NotFound(PeftlabError):
    """A named thing (experiment, run, data set) is not in the store (HTTP 404 in the service)."""


class DivergedError(Exception):
    """Training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"loss became {loss} at step {step}; lower the learning rate (or use precision fp32/bf16 "
            f"instead of fp16) and run again with --force"
        )
        self.step = step
        self.loss = loss
