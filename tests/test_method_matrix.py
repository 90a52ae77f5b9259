"""Every method x every task, directly (no runs, no store): fast enough for all of peft's methods.

For each cell on a tiny model: the method applies with its defaults; 8 optimizer steps on one fixed
batch lower the loss; the saved artifact reloads through plain `PeftModel.from_pretrained` with the
same logits; a `mergeable` method merges (`merge_and_unload`) to the same logits, and a
non-mergeable one really cannot; `count_trainable` on an empty (meta) copy equals the real count.
Cells a method does not apply to are refused before training. The full pipeline (runs, store,
reload of predictions) is tests/test_matrix.py, on a representative per family.

Variant cells cover lora's initialisations (the data-driven ones with calibration batches),
`quantize: 4bit` for every method that has it, and LoftQ.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import STORIES, needs_shared

from peftlab.config.schema import MethodEntry, ModelConfig
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.methods import REGISTRY, MethodContext, get_method, validate_entry
from peftlab.methods.base import parameter_counts
from peftlab.methods.common import can_merge, merged_for_inference, save_artifact
from peftlab.tasks.spec import CAUSAL_LM, CLASSIFICATION, IMAGE_CLASSIFICATION, SEQ2SEQ, TASK_NAMES, spec

pytestmark = needs_shared

LABELS = {CLASSIFICATION: ["neg", "neu", "pos"], IMAGE_CLASSIFICATION: ["normal", "pneumonia"]}
INITS = ("gaussian", "orthogonal", "pissa", "pissa_niter_4", "olora", "eva", "corda", "lora_ga")
SOME_TASKS = ("gaussian", "orthogonal", "pissa_niter_4")
QUANTIZABLE = [n for n, m in REGISTRY.items() if m.quantizable and n != "qlora"]  # qlora is 4-bit in the main cells


def _cells() -> list:
    from test_method_matrix_more import MORE  # those have their own harness, with the real MiniLM encoder

    cells = [pytest.param(m, t, {}, id=f"{m}-{t}") for m in REGISTRY if m not in MORE for t in TASK_NAMES]
    for init in INITS:  # the data-free inits that leave the base alone, and pissa's fast-SVD form, on two tasks
        tasks = (CAUSAL_LM, CLASSIFICATION) if init in SOME_TASKS else TASK_NAMES
        cells += [pytest.param("lora", t, {"init": init}, id=f"lora[{init}]-{t}") for t in tasks]
    cells += [pytest.param("dora", CAUSAL_LM, {"init": "pissa"}, id="dora[pissa]-causal-lm"),
              pytest.param("lora", CLASSIFICATION, {"init": "olora", "use_rslora": True}, id="lora[olora,rslora]-cls")]
    cells += [pytest.param(m, CAUSAL_LM, {"quantize": "4bit"}, id=f"{m}[4bit]-causal-lm") for m in QUANTIZABLE]
    cells += [pytest.param("qlora", CAUSAL_LM, {"init": "loftq"}, id="qlora[loftq]-causal-lm")]
    return cells


@pytest.fixture(scope="session")
def paths(request: pytest.FixtureRequest) -> dict[str, Path]:
    return {CAUSAL_LM: STORIES, SEQ2SEQ: request.getfixturevalue("tiny_t5"),
            CLASSIFICATION: request.getfixturevalue("tiny_bert"), IMAGE_CLASSIFICATION: request.getfixturevalue("tiny_vit")}


def _load(path: Path, task: str, **kw: Any) -> Any:
    import torch

    from peftlab.models import load_model, resolve_model

    torch.manual_seed(0)  # the fresh classifier heads
    cfg = ModelConfig(path=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(resolve_model(cfg), cfg, task, LABELS.get(task), **kw)
    if spec(task).text_input and model.config.pad_token_id is None:  # as the tasks' prepare_model does
        model.config.pad_token_id = 0
    return model


@pytest.fixture(scope="session")
def pristine(paths: dict[str, Path]) -> dict[str, Any]:
    """One full-precision base per task, built once; every cell works on a deep copy."""
    return {t: _load(p, t) for t, p in paths.items()}


def _batch(task: str, model: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    if task == IMAGE_CLASSIFICATION:
        return {"pixel_values": torch.randn(4, 1, 28, 28, generator=g), "labels": torch.tensor([0, 1, 1, 0])}
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0  # one padded row
    if task == CAUSAL_LM:
        labels = ids.clone()
        labels[:, :5] = -100  # the prompt
        labels[mask == 0] = -100
    elif task == SEQ2SEQ:
        labels = torch.randint(5, vocab, (4, 6), generator=g)
    else:
        labels = torch.tensor([0, 1, 2, 1])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@functools.cache
def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _ctx(task: str, model: Any, path: Path, batch: dict[str, Any] | None, tokenizer: bool = True) -> MethodContext:
    from peftlab.tasks.classification import head_names

    heads = head_names(model) if task == CLASSIFICATION else (["classifier"] if task == IMAGE_CLASSIFICATION else [])
    tok = _tokenizer(path) if spec(task).text_input and tokenizer else None
    return MethodContext(task=task, model_type=model.config.model_type, total_steps=8, tokenizer_path=str(path),
                         prompt_text="Table: {table}\nTitle:", head_modules=heads, precision="fp32", tokenizer=tok,
                         calibration=(lambda: iter([_twice(batch)] * 2)) if batch is not None else None)


def _twice(batch: dict[str, Any]) -> dict[str, Any]:
    """A calibration batch of 8 rows: EVA's SVD needs r x rho = 32 token rows per batch."""
    import torch

    return {k: torch.cat([v, v]) for k, v in batch.items()}


def _logits(model: Any, batch: dict[str, Any], task: str) -> Any:
    """Inference logits, without labels (peft's AdaLoRA adds its penalty to any loss, and a reloaded
    inference-mode AdaLoRA has no trainable adapter to take it from)."""
    import torch

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if task == SEQ2SEQ:
        inputs["decoder_input_ids"] = batch["labels"]
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits.float()


def _train(model: Any, method: Any, opts: Any, task: str, batch: dict[str, Any]) -> list[float]:
    import torch

    lr = method.learning_rate(task)
    opt = method.make_optimizer(model, opts, lr, 0.0) if method.make_optimizer else None
    opt = opt or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    callbacks = method.callbacks(model) if method.callbacks else []
    losses = []
    model.train()
    for step in range(1, 9):
        loss = model(**batch).loss
        extra = method.extra_loss(model, batch) if method.extra_loss else None
        (loss + extra if extra is not None else loss).backward()
        opt.step()
        for cb in callbacks:
            cb.on_optimizer_step(None, SimpleNamespace(global_step=step), None)
        opt.zero_grad()
        losses.append(float(loss))
    return losses


@functools.cache
def _meta_model(task: str, config_json: str) -> Any:
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(**__import__("json").loads(config_json))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, spec(task).auto_class).from_config(config)


def _meta_copy(model: Any, task: str) -> Any:
    """An empty (meta-device) copy of the architecture, as the estimate builds (built once per task)."""
    return copy.deepcopy(_meta_model(task, model.config.to_json_string()))


def _close(a: Any, b: Any, tol: float) -> float:
    diff = float((a - b).abs().max())
    assert diff <= tol * max(1.0, float(a.abs().max())), f"max |diff| {diff:.2e}"
    return diff


@pytest.mark.parametrize(("name", "task", "options"), _cells())
def test_method_cell(name: str, task: str, options: dict, paths: dict[str, Path], pristine: dict[str, Any],
                     tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    method = get_method(name)
    try:
        opts = validate_entry(MethodEntry(name=name, options=options), task)
    except (MethodNotApplicable, ConfigError):
        assert task not in method.tasks or method.virtual_tokens, f"{name} refused for {task}"
        return  # refused at planning time, before anything loads
    quantized = method.quantized(opts)
    fresh = (lambda: _load(paths[task], task, **method.load_kwargs(opts, _ctx(task, pristine[task], paths[task], None)))
             ) if quantized else (lambda: copy.deepcopy(pristine[task]))
    model, batch = fresh(), _batch(task, pristine[task])
    torch.manual_seed(0)
    model = method.apply(model, opts, _ctx(task, model, paths[task], batch)) if method.apply else model
    if not method.trains:
        assert method.count_trainable(model, opts, _ctx(task, model, paths[task], None)) == 0
        return
    # the estimate's way: an empty copy, a context without tokenizer or batches (train/runner.py)
    empty, empty_ctx = _meta_copy(pristine[task], task), _ctx(task, pristine[task], paths[task], None, tokenizer=False)
    real = parameter_counts(model)[0]
    if method.init_reads_weights:
        with pytest.raises(NotImplementedError):  # "Cannot copy out of meta tensor": the estimate has no count
            method.count_trainable(empty, opts, empty_ctx)
    elif options.get("init") == "eva":  # EVA moves rank between layers by explained variance: same budget, not count
        assert abs(method.count_trainable(empty, opts, empty_ctx) - real) <= 0.5 * real
    else:
        assert method.count_trainable(empty, opts, empty_ctx) == real

    losses = _train(model, method, opts, task, batch)
    assert losses[-1] < losses[0], f"loss did not fall: {losses}"
    before = _logits(model, batch, task)
    save_artifact(model, tmp_path / "artifact")  # as the recipe does, before its merged test evaluation
    if can_merge(model):  # the run's test evaluation folds the adapter in where it can
        with merged_for_inference(model):
            _close(before, _logits(model, batch, task), 1e-4)
    if method.is_full:
        import transformers

        again = getattr(transformers, spec(task).auto_class).from_pretrained(tmp_path / "artifact")
    else:
        again = PeftModel.from_pretrained(fresh(), str(tmp_path / "artifact"))
    _close(before, _logits(again, batch, task), 1e-5)

    if quantized or method.is_full:
        return  # a 4-bit base is not merged into (export merges into the full-precision base)
    if method.mergeable:
        assert can_merge(again)
        _close(before, _logits(again.merge_and_unload(), batch, task), 1e-4)
    else:
        assert not can_merge(again) or _merge_fails(again), f"{name} is marked not mergeable but merges"


def _merge_fails(model: Any) -> bool:
    try:
        model.merge_and_unload()
    except (NotImplementedError, AttributeError, ValueError):
        return True
    return False


def test_loraplus_trains_b_faster() -> None:
    """LoRA+ (`loraplus_lr_ratio`): the optimizer the trainer gets from `make_optimizer` has the
    lora_B matrices at ratio x the rate, the A matrices at the rate; none without the option."""
    from transformers import AutoModelForCausalLM

    m = get_method("lora")
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    ctx = MethodContext(task=CAUSAL_LM, model_type="llama", total_steps=1)
    assert m.make_optimizer(m.apply(copy.deepcopy(model), m.parse_options({}), ctx), m.parse_options({}), 1e-4, 0) is None
    opts = m.parse_options({"loraplus_lr_ratio": 16})
    wrapped = m.apply(model, opts, ctx)
    opt = m.make_optimizer(wrapped, opts, 1e-4, 0.01)
    names = {id(p): n for n, p in wrapped.named_parameters()}
    rates = {("lora_B" if "lora_B" in names[id(p)] else "lora_A"): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates == {"lora_A": 1e-4, "lora_B": pytest.approx(16e-4)}
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in wrapped.parameters())


def test_refusals_say_why(pristine: dict[str, Any], paths: dict[str, Path]) -> None:
    """A 4-bit base for a tuner without a bitsandbytes layer, a data-driven init without batches,
    and widths a method cannot take are refused with the reason, before training."""
    with pytest.raises(MethodNotApplicable, match="no bitsandbytes 4-bit layer"):
        validate_entry(MethodEntry(name="loha", options={"quantize": "4bit"}), CAUSAL_LM)
    with pytest.raises(ConfigError, match="needs quantize: 4bit"):
        validate_entry(MethodEntry(name="lora", options={"init": "loftq"}), CAUSAL_LM)
    with pytest.raises(ConfigError, match="rewrites the base"):
        validate_entry(MethodEntry(name="qlora", options={"init": "pissa"}), CAUSAL_LM)
    model = pristine[CAUSAL_LM]
    for name, opts, why in (("lora", {"init": "eva"}, "needs|provides none"),
                            ("miss", {"r": 128}, "exceeds the layer's input width"),
                            ("road", {"group_size": 64}, "must divide each output width"),
                            ("psoft", {"r": 48}, "exceeds a layer's width")):
        m = get_method(name)
        with pytest.raises(MethodNotApplicable, match=why):
            m.apply(copy.deepcopy(model), m.parse_options(opts), _ctx(CAUSAL_LM, model, paths[CAUSAL_LM], None))
