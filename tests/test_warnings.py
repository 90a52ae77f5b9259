"""peftlab's own calls raise no FutureWarning and no deprecation message: one training step and
one batched evaluation (generation for the generative tasks) of every task, with warnings as
errors (the pytest config ignores FutureWarning elsewhere, so it is switched on here).

transformers 5.24 deprecated `past_key_values` (peftlab.compat passes the name each version
takes); a warning of that kind fails this test on the locked set and on newer releases alike.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared, write_experiment
from test_matrix import _experiment

from peftlab.compat import prompt_learning_broken
from peftlab.methods import get_method
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared

CASES = [("causal-lm", "stories", "lora"), ("causal-lm", "stories", "prefix-tuning"),
         ("causal-lm", "stories", "prompt-tuning"), ("seq2seq", "t5", "lora"), ("seq2seq", "t5", "prompt-tuning"),
         ("classification", "bert", "lora"), ("classification", "bert", "prefix-tuning"),
         ("image-classification", "vit", "lora")]
# On the pair that breaks peft's prompt learning (peftlab.compat), peft itself warns or the method is
# refused in preflight; scripts/check-latest.sh reports those cases as known.
_KNOWN = pytest.mark.xfail(prompt_learning_broken(), reason="peft 0.21 with transformers >= 5.24 (peftlab.compat)")


def _param(task: str, model: str, method: str):  # noqa: ANN202
    marks = [_KNOWN] if get_method(method).virtual_tokens else []
    return pytest.param(task, model, method, id=f"{task}-{method}", marks=marks)


@pytest.mark.parametrize(("task", "model", "method"), [_param(*c) for c in CASES])
def test_no_future_warnings(tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
                            task: str, model: str, method: str) -> None:
    from transformers.utils import logging as hf_logging

    path = STORIES if model == "stories" else request.getfixturevalue(f"tiny_{model}")
    body = _experiment(task, path, method)
    body["training"].update(max_steps=1)
    body["data"].update(max_test_examples=4)
    p = plan(write_experiment(tmp_path, body))
    hf_logging.warning_once.cache_clear()  # messages logged once per process: let this run log its own
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        [run] = run_experiment(p, Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    deprecated = [r.getMessage() for r in caplog.records if "deprecat" in r.getMessage().lower()]
    assert not deprecated, deprecated


def test_no_library_notice_at_import() -> None:
    """bitsandbytes' import-time notice about an optional CPU kernel package (on CPUs with
    AVX512-BF16) is not printed by any peftlab process; without peftlab it still is, where it applies."""
    import subprocess
    import sys

    from peftlab.logs import QUIET

    code = "import peftlab, peft, bitsandbytes; from peftlab.methods import get_method; get_method('qlora')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not any(prefix in out.stderr for _, prefix in QUIET), out.stderr
    bare = subprocess.run([sys.executable, "-c", "import bitsandbytes"], capture_output=True, text=True, timeout=300)
    cpuinfo = Path("/proc/cpuinfo")
    bf16 = cpuinfo.is_file() and "avx512_bf16" in cpuinfo.read_text(encoding="utf-8")
    if bf16:  # the notice is real here: the filter is what keeps it out
        assert any(prefix in bare.stderr for _, prefix in QUIET), bare.stderr
