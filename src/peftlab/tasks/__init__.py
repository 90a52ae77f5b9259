"""The task registry. Adding a task = one module here + one line in TASKS."""

from peftlab.tasks.base import Prediction, Task
from peftlab.tasks.causal_lm import CausalLMTask
from peftlab.tasks.classification import ClassificationTask
from peftlab.tasks.image_classification import ImageClassificationTask
from peftlab.tasks.seq2seq import Seq2SeqTask

TASKS: dict[str, type[Task]] = {
    "causal-lm": CausalLMTask,
    "seq2seq": Seq2SeqTask,
    "classification": ClassificationTask,
    "image-classification": ImageClassificationTask,
}

__all__ = ["TASKS", "Prediction", "Task"]
