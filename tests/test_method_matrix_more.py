"""The orthogonal, Fourier/sparse, scaling and prompt methods x every task, directly (no runner):
each applies with its defaults to a tiny model, trains 8 steps on a fixed batch with the loss
falling, saves and reloads through plain `PeftModel.from_pretrained` with identical outputs,
merges with the same outputs where it is `mergeable`, and counts the same trainable parameters
on an empty (meta-device) copy as on the real model; cells a method does not apply to are
refused before anything trains. The full pipeline (tests/test_matrix.py) keeps one method per
family of these, for time."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import MINILM, STORIES, needs_shared

from peftlab.config.schema import EvaluationConfig, MethodEntry, TrainingConfig
from peftlab.data.prepare import Example
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.methods import MethodContext, get_method, validate_entry
from peftlab.methods.base import parameter_counts
from peftlab.methods.common import try_merge
from peftlab.tasks.build import task_class
from peftlab.tasks.spec import CAUSAL_LM, CLASSIFICATION, IMAGE_CLASSIFICATION, SEQ2SEQ, TASK_NAMES, spec

pytestmark = needs_shared

MORE = ["oft", "boft", "hra", "fourierft", "waveft", "shira", "c3a", "vblora", "ln-tuning", "beft", "cpt",
        "cartridge", "adaption-prompt"]
# Classification on the real all-MiniLM-L6-v2 (22M): a random tiny BERT gives every input nearly the same
# [CLS] vector (spread 0.2% of its size), so no adapter can separate balanced classes in a few steps.
MODEL_OF = {CAUSAL_LM: "stories", SEQ2SEQ: "t5", CLASSIFICATION: "minilm", IMAGE_CLASSIFICATION: "vit"}
STEPS = 8
MERGE_ATOL, MERGE_RTOL = 1e-3, 1e-4  # as the export's check: |diff| <= atol + rtol * max|logit| (serve/export.py)
PROMPT_TEXT = "Table: Title:"


def _cells() -> list:
    cells = []
    for m in MORE:
        for task in TASK_NAMES:
            applies = task in get_method(m).tasks
            cells.append(pytest.param(m, task, applies, id=f"{m}-{MODEL_OF[task]}"))
    return cells


@pytest.fixture
def model_path(request: pytest.FixtureRequest) -> Any:
    def get(name: str) -> Path:
        return {"stories": STORIES, "minilm": MINILM}.get(name) or request.getfixturevalue(f"tiny_{name}")
    return get


@functools.cache
def _processors(path: str, image: bool) -> Any:
    if image:
        from transformers import ViTImageProcessor

        return None, ViTImageProcessor.from_pretrained(path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, None


def _bench(task: str, path: Path) -> tuple[Any, dict[str, Any], Any]:
    """(the task, a fixed batch of 8 rows, the auto class) on the tiny model at `path`. The two
    classes differ in every row (a word, or the image's brightness), so a random tiny encoder can
    tell them apart within a few steps."""
    import transformers
    from PIL import Image

    s = spec(task)
    tok, proc = _processors(str(path), s.image_input)
    labels = ["neg", "pos"] if not s.generative else None
    t = task_class(task)(tok, proc, TrainingConfig(max_source_length=32, max_target_length=12),
                         EvaluationConfig(max_new_tokens=6, batch_size=4), labels)
    cls = getattr(transformers, s.auto_class)
    t.prepare_model(_load(cls, path, t, meta=True))  # e.g. the image channels the encoding needs
    g = torch.Generator().manual_seed(0)
    if s.image_input:
        pixels = [torch.rand(28, 28, generator=g) * 128 + 127 * (i % 2) for i in range(8)]
        exs = [Example(source="", image=Image.fromarray(p.byte().numpy(), mode="L"), label=i % 2)
               for i, p in enumerate(pixels)]
    else:
        words = ["awful", "great"]  # classification: the class word throughout the row
        exs = [Example(source=f"Table: {words[i % 2]} {words[i % 2]} row {i} " * (i % 3 + 1) + "\nTitle:",
                       target="a title " * (i % 2 + 1), label=i % 2) for i in range(8)]
    return t, t.collate([t.encode(e) for e in exs]), cls


def _load(cls: Any, path: Path, t: Any, meta: bool = False) -> Any:
    from transformers import AutoConfig

    kw = {"num_labels": 2} if not t.generative else {}
    if meta:
        with torch.device("meta"):
            model = cls.from_config(AutoConfig.from_pretrained(path, **kw))
    else:
        model = cls.from_pretrained(path, **kw).eval()
    t.prepare_model(model)
    return model


def _ctx(task: str, model: Any, path: Path, t: Any, tokenizer: Any) -> MethodContext:
    return MethodContext(task=task, model_type=model.config.model_type, total_steps=STEPS, tokenizer_path=str(path),
                         prompt_text=PROMPT_TEXT, head_modules=t.head_modules(model), precision="fp32",
                         tokenizer=tokenizer)


def _logits(model: Any, t: Any, batch: dict[str, Any]) -> torch.Tensor:
    inputs = batch if t.name == SEQ2SEQ else {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return model(**inputs).logits.float()


@pytest.mark.parametrize(("method", "task", "applies"), _cells())
def test_method_cell(tmp_path: Path, model_path: Any, method: str, task: str, applies: bool) -> None:
    m = get_method(method)
    if not applies:
        with pytest.raises(MethodNotApplicable, match="does not apply to task"):
            validate_entry(MethodEntry(name=method), task)
        return
    opts = validate_entry(MethodEntry(name=method), task)
    path = model_path(MODEL_OF[task])
    t, batch, cls = _bench(task, path)

    # the estimate's count: the method applied to an empty copy, as preflight applies it (no tokenizer)
    empty = _load(cls, path, t, meta=True)
    estimated = m.count_trainable(empty, opts, _ctx(task, empty, path, t, None))

    torch.manual_seed(0)
    model = m.apply(_load(cls, path, t), opts, _ctx(task, empty, path, t, t.tok))
    assert parameter_counts(model)[0] == estimated > 0

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=m.learning_rate(task), weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(STEPS):
        loss = t.loss(model, dict(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(map(torch.isfinite, torch.tensor(losses))), losses
    assert losses[-1] < losses[0], f"loss did not fall: {losses}"

    model.eval()
    want = _logits(model, t, batch)
    model.save_pretrained(tmp_path / "adapter")
    from peft import PeftModel

    again = PeftModel.from_pretrained(_load(cls, path, t), tmp_path / "adapter").eval()
    got = _logits(again, t, batch)
    assert (got - want).abs().max() <= 1e-5, (got - want).abs().max()
    if not m.mergeable:
        return
    tol = MERGE_ATOL + MERGE_RTOL * float(want.abs().max())
    assert try_merge(again)  # folded in, as the test evaluation runs it
    assert (_logits(again, t, batch) - want).abs().max() <= tol
    if t.name != CLASSIFICATION:  # see test_merge_and_unload_with_a_pooler_to_save
        again.unmerge_adapter()
        unloaded = _logits(again.merge_and_unload(), t, batch)  # as the export merges it (serve/export.py)
        assert (unloaded - want).abs().max() <= tol


def _empty_causal(config: Any) -> Any:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _apply_empty(method: str, model: Any, task: str = CAUSAL_LM, **options: Any) -> Any:
    m = get_method(method)
    ctx = MethodContext(task=task, model_type=model.config.model_type, total_steps=STEPS, prompt_text=PROMPT_TEXT,
                        tokenizer_path=str(STORIES))
    return m.apply(model, validate_entry(MethodEntry(name=method, options=options), task), ctx)


@pytest.mark.parametrize(("method", "options", "match"), [
    ("oft", {"block_size": 48}, r"block_size = 48 must divide every targeted layer's input width; the layers are "
                                r"\(in\) q_proj 64, v_proj 64\. Values that fit: 1, 2, 4, 8, 16, 32, 64"),
    ("boft", {"block_size": 3}, r"q_proj 64"),
    ("boft", {"n_butterfly_factor": 2}, r"CUDA extension"),
    ("c3a", {"block_size": 64}, r"input and output width.*q_proj 64x64, v_proj 64x32.*1, 2, 4, 8, 16, 32$"),
    ("vblora", {"vector_length": 48}, r"v_proj 64x32"),
    ("fourierft", {"n_frequency": 5000}, r"at most 2048"),
    ("waveft", {"n_frequency": 5000}, r"at most 2048"),
    ("shira", {"r": 64}, r"r <= 21"),
    ("hra", {"r": 80}, r"exceed"),
    ("adaption-prompt", {"adapter_layers": 6}, r"has 5 layers"),
])
def test_structure_that_does_not_fit_is_refused_with_the_widths(method: str, options: dict, match: str) -> None:
    """Refused before training, on the empty model preflight builds, naming what would fit."""
    from transformers import AutoConfig

    if method == "boft" and "n_butterfly_factor" in options:
        from peft.tuners.boft.layer import get_fbd_cuda

        if get_fbd_cuda() is not None:
            pytest.skip("peft's BOFT CUDA extension builds here")
    with pytest.raises(MethodNotApplicable, match=match):
        _apply_empty(method, _empty_causal(AutoConfig.from_pretrained(STORIES)), **options)


def test_defaults_fit_the_layers() -> None:
    """The structural defaults divide (or fit in) every targeted layer of stories260k (q 64x64, v 64x32)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(STORIES)
    got = {name: _apply_empty(name, _empty_causal(cfg)).active_peft_config
           for name in ("oft", "boft", "c3a", "vblora", "fourierft", "waveft", "shira")}
    assert got["oft"].oft_block_size == 32 and got["boft"].boft_block_size == 4
    assert got["c3a"].block_size == 32 and got["vblora"].vector_length == 32
    assert got["fourierft"].n_frequency == 1000 and got["waveft"].n_frequency == 2048
    assert got["shira"].r == 21  # r (64 + 32) <= 64 x 32


def test_adaption_prompt_refuses_other_architectures() -> None:
    from transformers import GPTNeoXConfig

    cfg = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    with pytest.raises(MethodNotApplicable, match="for llama, mistral, gpt2 models only.*'gpt_neox'"):
        _apply_empty("adaption-prompt", _empty_causal(cfg))


def test_odd_hra_rank_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be even"):
        validate_entry(MethodEntry(name="hra", options={"r": 7}), CAUSAL_LM)


def test_unmergeable_adapters_run_unmerged() -> None:
    """BEFT folds into a bias that Llama lacks, and an adaption prompt has nothing to fold: the
    evaluation's merge leaves both unmerged, with unchanged outputs."""
    t, batch, cls = _bench(CAUSAL_LM, STORIES)
    for method in ("beft", "adaption-prompt"):
        m = get_method(method)
        model = m.apply(_load(cls, STORIES, t), m.parse_options({}), _ctx(CAUSAL_LM, _load(cls, STORIES, t),
                                                                        STORIES, t, t.tok))
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.1)
        before = _logits(model, t, batch)
        assert not try_merge(model)
        assert torch.equal(_logits(model, t, batch), before)


@pytest.mark.parametrize("method", ["ia3", "oft"])
def test_merge_and_unload_with_a_pooler_to_save(tiny_bert: Path, method: str) -> None:
    """BERT classifiers train their pooler with every method (tasks/classification.py), and peft
    0.21's generic unload fails on it ('BertPooler' object has no attribute 'weight'); peftlab's
    merge (`methods.common.merge_and_unload`, what the export runs) puts the trained modules back
    first, and the merged model gives the adapter's outputs."""
    from peftlab.methods.common import merge_and_unload

    t, _, cls = _bench(CLASSIFICATION, tiny_bert)
    m = get_method(method)
    model = _load(cls, tiny_bert, t)
    peft_model = m.apply(model, m.parse_options({}), _ctx(CLASSIFICATION, model, tiny_bert, t, t.tok))
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    peft_model.eval()
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    with torch.no_grad():
        before = peft_model(input_ids=ids).logits
        merged = merge_and_unload(peft_model)
        after = merged(input_ids=ids).logits
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert torch.allclose(before, after, atol=1e-4), float((before - after).abs().max())


def test_preflight_refuses_a_block_size_that_does_not_fit(tmp_path: Path) -> None:
    """Through the runner: the experiment file's line and the widths, before anything trains."""
    from conftest import tiny_causal, write_experiment

    from peftlab.train.runner import plan, preflight

    exp = write_experiment(tmp_path, tiny_causal([{"name": "oft", "options": {"block_size": 48}}]))
    with pytest.raises(MethodNotApplicable, match=r"exp\.yaml:\d+: methods: oft \(oft\): oft: block_size = 48 .*q_proj 64"):
        preflight(plan(exp))
