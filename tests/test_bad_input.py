"""Bad input: every kind gives ONE clear error (file, line or key, and how to fix it) before
any training starts, and nothing already in the store changes.

Each case builds an experiment named like one already in the store (with a finished run and
its artifacts); the error must come from `plan` or the preflight of `run_experiment`, and a
dump of the database and the file tree must be identical afterwards.
"""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, MINILM, STORIES, needs_shared, tiny_causal, write_experiment

from peftlab.config.schema import ModelConfig
from peftlab.errors import ConfigError, DataError, MethodNotApplicable, ModelError, PeftlabError
from peftlab.models import load_model, resolve_model
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared

STATISTA = DATA / "statista" / "train.jsonl"
PHRASEBANK = DATA / "financial_phrasebank" / "train.jsonl"
PNEUMONIA = DATA / "pneumoniamnist" / "train.jsonl"


def _rows(path: Path, n: int) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _causal(tmp: Path, train: Path | str | None = None, **data: Any) -> dict[str, Any]:
    """The tiny causal experiment with its own train file (validation/test carved from it)."""
    exp = tiny_causal(["lora"])
    if train is None:
        train = _jsonl(tmp / "train.jsonl", _rows(STATISTA, 40))
    exp["data"] = {"train": str(train), "prompt": "Table: {table}\nTitle:", "target": "title",
                   "max_train_examples": 32, **data}
    return exp


def _classification(tmp: Path, train: list[dict], test: list[dict] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"train": str(_jsonl(tmp / "train.jsonl", train)), "input": "text", "label": "label"}
    if test is not None:
        data["test"] = str(_jsonl(tmp / "test.jsonl", test))
    return {"name": "tiny", "model": str(MINILM), "task": "classification", "data": data, "methods": ["lora"],
            "training": {"max_steps": 2}}


# -- the store that must not change ---------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store holding a finished run of experiment 'tiny', as a user's store would."""
    s = Store(tmp_path / "store")
    s.save_experiment("tiny", "causal-lm", str(STORIES), {"name": "tiny"}, "name: tiny\n", None)
    run, _ = s.upsert_run("tiny", "lora", "lora", "0123456789abcdef", {"experiment": {}, "entry": {}})
    s.claim(run.id)
    s.log_points(run.id, 1, {"train_loss": 2.5})
    s.finish(run.id, "done", metrics={"rougeL": 0.25}, info={"data": {"train": 32}})
    adapter = s.run_dir("tiny", "lora") / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    return s


def snapshot(store: Store) -> tuple[list[str], list[tuple[str, int]]]:
    c = sqlite3.connect(store.path)
    try:
        dump = list(c.iterdump())
    finally:
        c.close()
    files = sorted((str(p.relative_to(store.root)), p.stat().st_size) for p in store.root.rglob("*")
                   if p.is_file() and not p.name.startswith("peftlab.db"))
    return dump, files


def attempt(tmp: Path, store: Store, body: dict[str, Any] | str) -> PeftlabError:
    """Plan and run the experiment; it must fail with a PeftlabError and change nothing."""
    before = snapshot(store)
    path = tmp / "exp.yaml"
    if isinstance(body, str):
        path.write_text(body, encoding="utf-8")
    else:
        write_experiment(tmp, body)
    with pytest.raises(PeftlabError) as info:
        run_experiment(plan(path), store, isolation="inprocess", echo=lambda *a: None)
    assert snapshot(store) == before, "a refused experiment changed the store"
    msg = str(info.value)
    assert "Traceback" not in msg and msg.strip()
    print(f"{type(info.value).__name__}: {msg}")  # shown with -s: the exact message a user gets
    return info.value


# -- data files -----------------------------------------------------------------------------

def _malformed_jsonl(tmp: Path) -> dict:
    rows: list[Any] = _rows(STATISTA, 40)
    rows[2] = '{"table": "0 Year: 2019", "title": "unterminated}'
    return _causal(tmp, _jsonl(tmp / "train.jsonl", rows))


def _misspelt_csv_column(tmp: Path) -> dict:
    lines = ["table,titel"] + [f'"{r["table"][:60]}","{r["title"]}"' for r in _rows(STATISTA, 40)]
    (tmp / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _causal(tmp, tmp / "train.csv")


def _missing_csv_column(tmp: Path) -> dict:
    lines = ["table"] + [f'"{r["table"][:60]}"' for r in _rows(STATISTA, 40)]
    (tmp / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _causal(tmp, tmp / "train.csv")


def _not_parquet(tmp: Path) -> dict:
    (tmp / "train.parquet").write_text("table,title\na,b\n", encoding="utf-8")
    return _causal(tmp, tmp / "train.parquet")


def _not_utf8_jsonl(tmp: Path) -> dict:
    path = _jsonl(tmp / "train.jsonl", _rows(STATISTA, 40))
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"title", b"t\xe9tle", 1)  # Latin-1 e-acute
    path.write_bytes(b"\n".join(lines))
    return _causal(tmp, path)


def _not_utf8_csv(tmp: Path) -> dict:
    (tmp / "train.csv").write_bytes(b"table,title\n" + b"caf\xe9 prices,Coffee\n" * 30)
    return _causal(tmp, tmp / "train.csv")


def _empty_file(tmp: Path) -> dict:
    (tmp / "train.jsonl").write_text("\n\n", encoding="utf-8")
    return _causal(tmp, tmp / "train.jsonl")


def _header_only_csv(tmp: Path) -> dict:
    (tmp / "train.csv").write_text("table,title\n", encoding="utf-8")
    return _causal(tmp, tmp / "train.csv")


def _missing_file(tmp: Path) -> dict:
    return _causal(tmp, tmp / "no-such-file.jsonl")


def _empty_target(tmp: Path) -> dict:
    rows = _rows(STATISTA, 40)
    rows[6]["title"] = "   "
    return _causal(tmp, _jsonl(tmp / "train.jsonl", rows))


def _missing_target(tmp: Path) -> dict:
    rows = _rows(STATISTA, 40)
    del rows[9]["title"]
    return _causal(tmp, _jsonl(tmp / "train.jsonl", rows))


def _unseen_test_label(tmp: Path) -> dict:
    rows = _rows(PHRASEBANK, 30)
    test = [dict(r) for r in rows[:5]]
    test[3]["label"] = "bullish"
    return _classification(tmp, rows, test)


def _single_class(tmp: Path) -> dict:
    rows = [dict(r, label="neutral") for r in _rows(PHRASEBANK, 30)]
    return _classification(tmp, rows)


def _long_rows_error(tmp: Path) -> dict:
    return _causal(tmp, on_long_rows="error")


def _bad_template(tmp: Path) -> dict:
    return _causal(tmp, prompt="Table: {table.rows}\nTitle:")


def _bad_image(tmp: Path, vit: Path) -> dict:
    rows = _rows(PNEUMONIA, 30)
    rows[5]["image_png_b64"] = base64.b64encode(b"\x89PNG\r\n\x1a\n not really a png").decode()
    data = {"train": str(_jsonl(tmp / "train.jsonl", rows)), "image": "image_png_b64", "label": "label_name"}
    return {"name": "tiny", "model": str(vit), "task": "image-classification", "data": data,
            "methods": ["lora"], "training": {"max_steps": 2}}


DATA_CASES: dict[str, tuple[Callable[..., dict], type[PeftlabError], list[str]]] = {
    "malformed-jsonl-line": (_malformed_jsonl, DataError,
                             ["train.jsonl:3:", "malformed JSON", "on_bad_rows: skip"]),
    "csv-misspelt-column": (_misspelt_csv_column, DataError,
                            ["train.csv", "column 'title' (from data.target) not found", "Did you mean 'titel'?"]),
    "csv-missing-column": (_missing_csv_column, DataError,
                           ["train.csv", "column 'title' (from data.target) not found", "Columns in the file: table"]),
    "parquet-not-parquet": (_not_parquet, DataError, ["train.parquet", "not a Parquet file"]),
    "jsonl-not-utf8": (_not_utf8_jsonl, DataError, ["train.jsonl:5:", "not UTF-8", "re-save the file as UTF-8"]),
    "csv-not-utf8": (_not_utf8_csv, DataError, ["train.csv:2:", "not UTF-8"]),
    "empty-file": (_empty_file, DataError, ["train.jsonl", "the file is empty"]),
    "csv-header-only": (_header_only_csv, DataError, ["train.csv", "no data rows", "add examples"]),
    "missing-data-file": (_missing_file, DataError, ["no-such-file.jsonl", "data file not found"]),
    "empty-target": (_empty_target, DataError, ["train.jsonl:7:", "empty or missing target 'title'"]),
    "missing-target": (_missing_target, DataError, ["train.jsonl:10:", "empty or missing target 'title'"]),
    "unseen-test-label": (_unseen_test_label, DataError,
                          ["test labels ['bullish'] never occur in training", "test.jsonl:4"]),
    "single-class": (_single_class, DataError, ["train.jsonl", "single class ('neutral')"]),
    "long-rows-on_long_rows-error": (_long_rows_error, DataError,
                                     ["train.jsonl:", "longer than training.max_source_length (48 tokens)",
                                      "on_long_rows: truncate"]),
    "prompt-template": (_bad_template, ConfigError, ["exp.yaml:6: data.prompt", "{table.rows}"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case: str, tmp_path: Path, store: Store) -> None:
    make, kind, expected = DATA_CASES[case]
    err = attempt(tmp_path, store, make(tmp_path))
    assert isinstance(err, kind), f"{type(err).__name__}: {err}"
    for part in expected:
        assert part in str(err), f"{part!r} not in: {err}"


def test_image_that_does_not_decode(tmp_path: Path, store: Store, tiny_vit: Path) -> None:
    err = attempt(tmp_path, store, _bad_image(tmp_path, tiny_vit))
    assert isinstance(err, DataError)
    assert "train.jsonl:6:" in str(err) and "image column 'image_png_b64'" in str(err)
    assert "do not decode as an image" in str(err)


# -- the experiment file --------------------------------------------------------------------

def _yaml(tmp: Path, replace: dict[str, str]) -> str:
    write_experiment(tmp, tiny_causal(["lora"]))
    text = (tmp / "exp.yaml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


CONFIG_CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "yaml-syntax": ({"task: causal-lm": "task: causal-lm\n  oops: [1,"}, ["exp.yaml:4:", "YAML syntax error"]),
    "unknown-key": ({"max_steps: 6": "max_step: 6"},
                    ["exp.yaml:", "unknown key 'training.max_step'", "Did you mean 'max_steps'?"]),
    "unknown-section": ({"evaluation:": "evalution:"}, ["unknown key 'evalution'", "Did you mean 'evaluation'?"]),
    "wrong-type": ({"batch_size: 8": "batch_size: eight"},
                   ["training.batch_size = 'eight'", "must be a whole number"]),
    "negative-learning-rate": ({"max_steps: 6": "max_steps: 6\n  learning_rate: -0.001"},
                               ["training.learning_rate = -0.001", "must be above 0"]),
    "infinite-learning-rate": ({"max_steps: 6": "max_steps: 6\n  learning_rate: .inf"},
                               ["training.learning_rate = inf", "finite"]),
    "rank-0": ({"- lora": "- {name: lora, r: 0}"}, ["methods[0] (lora)", "r = 0", "use 1 or more"]),
    "unknown-method": ({"- lora": "- lroa"}, ["unknown method 'lroa'", "Did you mean 'lora'?"]),
    "duplicate-key": ({"  target: title": "  target: title\n  target: table"},
                      ["key 'data.target' appears twice"]),
    "unsafe-name": ({"name: tiny": "name: ../tiny"}, ["name = '../tiny'", "letters, digits"]),
    "missing-target-key": ({"  target: title\n": ""}, ["data.target", "needs the target column"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(case: str, tmp_path: Path, store: Store) -> None:
    replace, expected = CONFIG_CASES[case]
    err = attempt(tmp_path, store, _yaml(tmp_path, replace))
    assert isinstance(err, ConfigError), f"{type(err).__name__}: {err}"
    assert str(tmp_path / "exp.yaml") in str(err)
    for part in expected:
        assert part in str(err), f"{part!r} not in: {err}"


def test_loader_keeps_the_line_of_each_key(tmp_path: Path) -> None:
    """The loader returns the lines it read, so an error found later (data, a method applied in
    the preflight) names its line without the file being parsed again; a plan built without the
    loader (the web API's) gets the lines of its YAML text."""
    from peftlab.config import parse_experiment
    from peftlab.train.runner import Plan

    text = _yaml(tmp_path, {})
    line = text.splitlines().index
    loaded = parse_experiment(text, source="exp.yaml")
    assert loaded.where("data.target") == f"exp.yaml:{line('  target: title') + 1}"
    assert loaded.where(("methods", 0)) == loaded.method_where("lora") == f"exp.yaml:{line('- lora') + 1}"
    assert loaded.where("training.learning_rate") == loaded.method_where("ia3") == "exp.yaml"  # not in the file
    api = Plan(loaded.cfg, None, text)
    assert api.method_where("lora") == f"experiment:{line('- lora') + 1}"
    assert api.where("data.target") == "experiment"


# -- models and methods ---------------------------------------------------------------------

def test_model_path_that_does_not_exist(tmp_path: Path, store: Store) -> None:
    exp = _causal(tmp_path)
    exp["model"] = str(tmp_path / "no-such-model")
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, ModelError) and "no-such-model" in str(err) and "not found" in str(err)


def test_gguf_that_is_not_gguf(tmp_path: Path, store: Store) -> None:
    (tmp_path / "model.gguf").write_bytes(b"PK\x03\x04 this is a zip file, not gguf" * 10)
    exp = _causal(tmp_path)
    exp["model"] = str(tmp_path / "model.gguf")
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, ModelError) and "model.gguf" in str(err) and "not a GGUF file" in str(err)


def test_target_modules_not_in_model_fail_before_training(tmp_path: Path, store: Store) -> None:
    exp = _causal(tmp_path)
    exp["methods"] = ["zero-shot", {"name": "lora", "label": "lora-attn", "target_modules": ["q_proj", "query"]}]
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, ModelError)
    msg = str(err)
    assert "exp.yaml:" in msg and "lora-attn (lora)" in msg and "['query'] not found" in msg
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in msg  # the modules the model does have


def test_method_not_applicable_to_task(tmp_path: Path, store: Store, tiny_vit: Path) -> None:
    exp = _bad_image(tmp_path, tiny_vit)
    exp["methods"] = ["prompt-tuning"]
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, ConfigError)
    assert "does not apply to task 'image-classification'" in str(err) and "prompt-tuning" in str(err)


def test_method_that_cannot_apply_with_these_settings(tmp_path: Path, store: Store) -> None:
    exp = _causal(tmp_path)
    exp["methods"] = [{"name": "adalora", "tinit_fraction": 0.5, "tfinal_fraction": 0.5}]
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, MethodNotApplicable)
    assert "adalora" in str(err) and "needs room to prune" in str(err)


def test_pickled_weights_never_load_by_default(tmp_path: Path, store: Store) -> None:
    """A folder with only a pytorch_model.bin is refused: unpickling can run any code."""
    model = tmp_path / "pickled"
    model.mkdir()
    for f in STORIES.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, model / f.name)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    (model / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    exp = _causal(tmp_path)
    exp["model"] = str(model)
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, ModelError)
    assert "pickled (pytorch_model.bin)" in str(err) and "allow_pickle: true" in str(err)
    assert not marker.exists()
    # With safetensors beside it, the safetensors load and the pickle is never opened.
    shutil.copy(STORIES / "model.safetensors", model / "model.safetensors")
    cfg = ModelConfig(path=str(model))
    rm = resolve_model(cfg)
    assert load_model(rm, cfg, "causal-lm").num_parameters() > 0
    assert not marker.exists()
    # Opting in is explicit (and then the folder is accepted without safetensors).
    (model / "model.safetensors").unlink()
    assert resolve_model(ModelConfig(path=str(model), allow_pickle=True)).path == str(model)


def test_remote_code_never_runs_by_default(tmp_path: Path, store: Store) -> None:
    model = tmp_path / "custom"
    shutil.copytree(STORIES, model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="custom-llama",
                  auto_map={"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"})
    (model / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "PWNED"
    (model / "custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    exp = _causal(tmp_path)
    exp["model"] = str(model)
    err = attempt(tmp_path, store, exp)
    assert isinstance(err, ModelError)
    assert "ships its own Python code" in str(err) and "trust_remote_code: true" in str(err)
    assert not marker.exists()


# -- what is not an error: skipped and truncated rows are counted, listed and warned about ------

def test_skipped_and_truncated_rows_are_recorded(tmp_path: Path) -> None:
    rows: list[Any] = _rows(STATISTA, 40)
    rows[3] = "{not json"
    rows[11]["title"] = ""
    exp = _causal(tmp_path, _jsonl(tmp_path / "train.jsonl", rows), on_bad_rows="skip")
    exp["training"]["max_steps"] = 2
    said: list[str] = []
    store = Store(tmp_path / "store")
    (run,) = run_experiment(plan(write_experiment(tmp_path, exp)), store, isolation="inprocess", echo=said.append)
    assert run.status == "done", run.error
    data = run.info["data"]
    assert data["skipped_rows"] == 2
    assert data["skipped"][0].startswith(f"{tmp_path / 'train.jsonl'}:4: malformed JSON")
    assert data["skipped"][1].startswith(f"{tmp_path / 'train.jsonl'}:12: empty or missing target")
    assert data["truncated_train_rows"] > 0  # statista tables are far longer than 48 tokens
    text = "\n".join(said)
    assert "warning: 2 bad rows skipped" in text
    assert f"{data['truncated_train_rows']} of {data['train']} training rows were longer" in text
    assert any(lg["level"] == "warning" and "truncated" in lg["message"] for lg in store.logs(run.id))


def test_bad_override_is_a_config_error(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, tiny_causal(["lora"]))
    with pytest.raises(ConfigError, match="training.max_steps is not a section"):
        plan(path, overrides={"training.max_steps.value": 3})
    with pytest.raises(ConfigError, match="unknown key 'training.max_step'. Did you mean 'max_steps'"):
        plan(path, overrides={"training.max_step": 3})
    # `model: path` is short for `model: {path: ...}`: a nested override still works.
    assert plan(path, overrides={"model.allow_pickle": True}).cfg.model.allow_pickle is True


def test_cli_prints_one_error_line_and_exits_2(tmp_path: Path, store: Store, capsys: pytest.CaptureFixture) -> None:
    from peftlab.cli import main

    before = snapshot(store)
    path = write_experiment(tmp_path, _malformed_jsonl(tmp_path))
    assert main(["--store", str(store.root), "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'train.jsonl'}:3: malformed JSON") and err.count("\n") == 1
    assert "Traceback" not in err
    assert snapshot(store) == before
