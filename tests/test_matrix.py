"""The method x task matrix on tiny models: every method that applies to a task trains
(loss falls), saves an adapter that reloads and reproduces the same outputs; zero-shot
trains nothing; methods that do not apply are refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA, MINILM, STORIES, needs_shared, write_experiment

from peftlab.config.schema import MethodEntry
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.methods import REGISTRY, validate_entry
from peftlab.models.trained import load_trained
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared

# The methods peftlab started with, and one representative of each family added since: every method
# on every task runs directly, without the pipeline, in tests/test_method_matrix*.py. oft (merged
# evaluation), beft (unmerged on bias-free models), cpt and cartridge (the cache-head paths) stay here.
ORIGINAL = ("zero-shot", "full", "lora", "dora", "adalora", "ia3", "prefix-tuning", "prompt-tuning", "p-tuning", "qlora")
FAMILY_REPRESENTATIVES = ("loha", "vera", "road", "osf", "supertuning", "oft", "beft", "cpt", "cartridge", "shadow")
METHODS = [m for m in REGISTRY if m in ORIGINAL or m in FAMILY_REPRESENTATIVES]


def _experiment(task: str, model: Path, method: str) -> dict:
    # Every step sees the same 8 rows (batch = train set), so the loss curve is smooth.
    # fp32: the reload check compares outputs exactly (see conftest.tiny_causal)
    steps = {"max_steps": 12, "batch_size": 8, "logging_steps": 1, "max_source_length": 40, "max_target_length": 12,
             "precision": "fp32"}
    if task in ("causal-lm", "seq2seq"):
        data = {"train": str(DATA / "statista" / "train.jsonl"), "validation": str(DATA / "statista" / "validation.jsonl"),
                "test": str(DATA / "statista" / "test.jsonl"), "prompt": "Table: {table}\nTitle:", "target": "title"}
    elif task == "classification":
        data = {"train": str(DATA / "financial_phrasebank" / "train.jsonl"),
                "validation": str(DATA / "financial_phrasebank" / "validation.jsonl"),
                "test": str(DATA / "financial_phrasebank" / "test.jsonl"), "input": "text", "label": "label"}
    else:
        data = {"train": str(DATA / "pneumoniamnist" / "train.jsonl"),
                "validation": str(DATA / "pneumoniamnist" / "validation.jsonl"),
                "test": str(DATA / "pneumoniamnist" / "test.jsonl"), "image": "image_png_b64", "label": "label_name"}
    data.update(max_train_examples=8, max_validation_examples=4, max_test_examples=6)
    return {"name": f"m-{task}-{method}", "model": str(model), "task": task, "data": data,
            "methods": [method], "training": steps, "evaluation": {"max_new_tokens": 6, "batch_size": 4}}


def _cases() -> list:
    cases = []
    for task, model in (("causal-lm", "stories"), ("seq2seq", "t5"), ("seq2seq", "bart"),
                        ("classification", "bert"), ("classification", "minilm"), ("image-classification", "vit")):
        for m in METHODS:
            applies = _applies(m, task)
            # BART shares the seq2seq path with T5, and real MiniLM the classification path with
            # the tiny BERT: a subset of each keeps the suite fast.
            if model == "bart" and m not in ("lora", "prefix-tuning", "full", "zero-shot"):
                continue
            if model == "minilm" and m not in ("lora", "ia3", "zero-shot"):
                continue
            # the families added since run every task in the direct harnesses (test_method_matrix*.py);
            # through the pipeline each runs on the causal LM and one image model cell per family at most
            if m in FAMILY_REPRESENTATIVES and model in ("bart", "minilm", "t5"):
                continue
            if m in FAMILY_REPRESENTATIVES and model == "vit" and m not in ("loha", "oft"):
                continue
            marks = [] if applies else [pytest.mark.xfail(raises=ConfigError, strict=True)]
            cases.append(pytest.param(task, model, m, id=f"{task}-{model}-{m}", marks=marks))
    return cases


def _applies(method: str, task: str) -> bool:
    """Whether peftlab accepts the method for the task: prompt methods are refused for images, and
    on a peft/transformers pair known to break them (peftlab.compat) where it breaks them."""
    try:
        validate_entry(MethodEntry(name=method), task)
    except MethodNotApplicable:
        return False
    return True


@pytest.fixture
def model_path(request: pytest.FixtureRequest) -> callable:
    def get(name: str) -> Path:
        return {"stories": STORIES, "minilm": MINILM}.get(name) or request.getfixturevalue(f"tiny_{name}")
    return get


@pytest.mark.parametrize(("task", "model", "method"), _cases())
def test_method_task(tmp_path: Path, model_path: callable, task: str, model: str, method: str) -> None:
    exp = write_experiment(tmp_path, _experiment(task, model_path(model), method))
    store = Store(tmp_path / "store")
    p = plan(exp)  # refuses methods that do not apply (ConfigError) before anything loads
    [run] = run_experiment(p, store, isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    cost, metrics = run.cost, run.metrics
    assert "eval_loss" in metrics
    main = "rougeL" if task in ("causal-lm", "seq2seq") else "macro_f1"
    assert main in metrics
    with open(run.file("predictions"), encoding="utf-8") as f:
        preds = [json.loads(line) for line in f]
    assert len(preds) == 6
    # evaluation time = the model's part (test loss + outputs) + metric scoring
    assert 0 < cost["predict_seconds"] <= cost["eval_seconds"]
    # the estimate shown before launch counts the trainable parameters the run really trained
    assert _estimated_trainable(p) == cost["trainable_params"]

    if method == "zero-shot":
        assert cost["trainable_params"] == 0 and cost["train_seconds"] == 0 and cost["adapter_bytes"] == 0
        assert store.curves(run.id) == {}
        return

    assert cost["trainable_params"] > 0 and cost["adapter_bytes"] > 0
    if method != "full":
        assert cost["trainable_percent"] < 100
    losses = [v for _, v in store.curves(run.id)["train_loss"]]
    assert len(losses) >= 6
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first, f"loss did not fall: {losses}"

    # The saved artifact reloads (plain PeftModel.from_pretrained) and reproduces the outputs.
    trained = load_trained(run)
    if method != "full":
        from peft import PeftModel

        assert isinstance(trained.model, PeftModel)
    again = trained.task.predict(trained.model, _test_examples(p, trained), desc="reload")
    assert [x.output for x in again] == [x["output"] for x in preds]


def _estimated_trainable(p) -> int | None:
    from peftlab.tasks.build import load_task
    from peftlab.train.estimate import trainable_params
    from peftlab.train.runner import preflight

    checked = preflight(p)
    task = load_task(p.cfg, checked.model, checked.data.labels)
    return trainable_params(p.cfg, checked.model, checked.data, task, p.cfg.methods[0])[0]


def _test_examples(p, trained):
    from peftlab.data.prepare import prepare_data

    return prepare_data(p.cfg.data, p.cfg.task, p.cfg.training.seed, p.base_dir).test


def test_qlora_holds_4bit_weights(tmp_path: Path) -> None:
    import torch
    from bitsandbytes.nn import Linear4bit

    from peftlab.config.schema import ModelConfig
    from peftlab.methods import MethodContext, get_method
    from peftlab.models import load_model, resolve_model

    m = get_method("qlora")
    kw = m.load_kwargs(m.parse_options({}), MethodContext(task="causal-lm", model_type="llama", total_steps=1))
    model = load_model(resolve_model(ModelConfig(path=str(STORIES))), ModelConfig(path=str(STORIES)), "causal-lm", **kw)
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, Linear4bit)
    assert q.weight.dtype == torch.uint8  # packed 4-bit storage: two weights per byte
    assert q.weight.numel() * 2 == q.in_features * q.out_features
    n4 = sum(isinstance(mod, Linear4bit) for mod in model.modules())
    assert n4 == 5 * 7  # every linear layer of the 5 blocks


def test_prompt_methods_refused_for_images(tmp_path: Path, tiny_vit: Path) -> None:
    exp = write_experiment(tmp_path, _experiment("image-classification", tiny_vit, "prompt-tuning"))
    with pytest.raises(ConfigError, match="does not apply to task 'image-classification'"):
        plan(exp)


def test_bf16_autocast_run(tmp_path: Path) -> None:
    """`precision: bf16` (what `auto` picks on CPUs with AMX or AVX512-BF16, and on GPUs): the run
    trains with bf16 autocast, its losses stay finite, and it evaluates and saves as usual."""
    import math

    body = _experiment("causal-lm", STORIES, "lora")
    body["training"].update(precision="bf16", max_steps=4)
    store = Store(tmp_path / "store")
    [run] = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    assert run.resolved["precision"] == "bf16"
    assert all(math.isfinite(v) for _, v in store.curves(run.id)["train_loss"])
    assert math.isfinite(run.metrics["eval_loss"]) and run.cost["adapter_bytes"] > 0


def test_qlora_trains_on_after_a_validation_pass(tmp_path: Path, tiny_bert: Path) -> None:
    """bitsandbytes 0.50 on CPUs with AVX512-BF16 repacked a 4-bit layer for inference at the first
    validation and training failed at the next step; the trainer puts the training layout back."""
    body = _experiment("classification", tiny_bert, "qlora")
    body["training"].update(max_steps=4, eval_every=2)
    [run] = run_experiment(plan(write_experiment(tmp_path, body)), Store(tmp_path / "store"), isolation="inprocess",
                           echo=lambda *_: None)
    assert run.status == "done", run.error
    assert len(run.metrics) > 0 and [s for s, _ in Store(tmp_path / "store").curves(run.id)["train_loss"]] == [1, 2, 3, 4]
