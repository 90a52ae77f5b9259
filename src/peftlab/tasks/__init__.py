"""Tasks: `spec.py` says what each task is (torch-free), one module per task says how it
encodes, batches, predicts and scores (`base.Task`), and `build.py` makes the task object
for a run. Adding a task = one module here + one `TaskSpec` line in `spec.py`.

This package's own namespace stays torch-free, so `peftlab.tasks.spec` can be read anywhere.
"""

from peftlab.tasks.spec import SPECS, TASK_NAMES, TaskSpec, spec

__all__ = ["SPECS", "TASK_NAMES", "TaskSpec", "spec"]
