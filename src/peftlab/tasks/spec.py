"""What each task is, in one place and without torch: name, main metric, inputs, peft task type.

Everything else that depends on the task derives from `SPECS`: the config schema's task
names, the main metric the report and the leaderboard rank by, which data columns are
needed, peft's task type and the transformers auto class, and the Task class that encodes,
predicts and scores. `report/` and `serve/` read it without importing torch.

Adding a task = one module in this package (its `Task` subclass) + one `TaskSpec` line here.
Task names are written as string literals here only; other modules use the constants.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

CAUSAL_LM = "causal-lm"
SEQ2SEQ = "seq2seq"
CLASSIFICATION = "classification"
IMAGE_CLASSIFICATION = "image-classification"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    main_metric: str  # what the leaderboard ranks by
    generative: bool  # outputs text (ROUGE, BLEU) rather than a label (accuracy, macro-F1)
    target_key: Literal["target", "label"]  # the data key naming what to learn
    image_input: bool  # the input is an image column, not text (no prompt template, no prompt learning)
    decoder_only: bool  # generation continues the prompt (a causal LM) instead of decoding from an encoder
    peft_task_type: str | None  # name of the peft.TaskType member (None: peft has none; heads via modules_to_save)
    auto_class: str  # the transformers Auto class that loads the model for this task
    task_class: str  # "module:Class" of its peftlab Task
    higher_is_better: bool = True  # direction of the main metric

    @property
    def text_input(self) -> bool:
        return not self.image_input

    def task_type(self) -> Any:
        """peft's TaskType member (imports peft)."""
        from peft import TaskType

        return getattr(TaskType, self.peft_task_type) if self.peft_task_type else None

    def load_class(self) -> type:
        module, _, name = self.task_class.partition(":")
        return getattr(importlib.import_module(module), name)


SPECS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        TaskSpec(CAUSAL_LM, "decoder-only LM: prompt in, completion out", "rougeL", True, "target", False, True,
                 "CAUSAL_LM", "AutoModelForCausalLM", "peftlab.tasks.causal_lm:CausalLMTask"),
        TaskSpec(SEQ2SEQ, "encoder-decoder: source in, target out", "rougeL", True, "target", False, False,
                 "SEQ_2_SEQ_LM", "AutoModelForSeq2SeqLM", "peftlab.tasks.seq2seq:Seq2SeqTask"),
        TaskSpec(CLASSIFICATION, "text in, one label out", "macro_f1", False, "label", False, False,
                 "SEQ_CLS", "AutoModelForSequenceClassification", "peftlab.tasks.classification:ClassificationTask"),
        TaskSpec(IMAGE_CLASSIFICATION, "image in, one label out", "macro_f1", False, "label", True, False,
                 None, "AutoModelForImageClassification",
                 "peftlab.tasks.image_classification:ImageClassificationTask"),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(SPECS)
TaskName = Literal[TASK_NAMES]  # type: ignore[valid-type]
ALL_TASKS = frozenset(TASK_NAMES)
TEXT_TASKS = frozenset(n for n, s in SPECS.items() if s.text_input)
GENERATIVE_TASKS = frozenset(n for n, s in SPECS.items() if s.generative)


def spec(name: str) -> TaskSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(TASK_NAMES)}") from None


def main_metric(task: str, default: str = "rougeL") -> str:
    s = SPECS.get(task)
    return s.main_metric if s else default
