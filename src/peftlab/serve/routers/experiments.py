"""Experiments: the models and methods to choose from, the estimate before launch, and the
experiments themselves (create = validate as `peftlab run` does and queue one run per method)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from peftlab.config.overrides import apply_overrides, overrides_from
from peftlab.data.sources import FORMATS
from peftlab.errors import DataError, PeftlabError
from peftlab.queue import jobs
from peftlab.serve.deps import DatasetsDep, SchedulerDep, StoreDep, find_experiment
from peftlab.serve.schemas import ExperimentRequest, FormatRequest, RenameRequest
from peftlab.store import Store
from peftlab.store.intake import Datasets
from peftlab.tasks.spec import CAUSAL_LM, TASK_NAMES, spec
from peftlab.train.plan import Plan

router = APIRouter(tags=["experiments"])


def _confine(body: dict[str, Any], datasets: Datasets) -> None:
    """Every path a request carries, in any field, must name a file the service may read: data
    files (and a BERTScore encoder or model folder) inside the data/model folders, symlinks
    followed; anything else is refused before it is opened (a `data` section "as is" used to read
    any file the server could, and echo its columns and rows back)."""
    from peftlab.paths import resolve, search_dirs

    data = body.get("data") or {}
    for key in ("train", "validation", "test"):
        spec_ = data.get(key)
        if spec_ is None:
            continue
        if not isinstance(spec_, str):
            raise DataError(f"data.{key}: a file path or a hub dataset id, got {type(spec_).__name__}")
        local = spec_.startswith((".", "/", "~")) or "\x00" in spec_ or Path(spec_).suffix.lower() in FORMATS
        try:
            found = resolve(spec_, "data") if "\x00" not in spec_ else None
        except (OSError, ValueError):
            found = None
        if local or found is not None:
            # the file the engine itself will open (its own search order), which must lie inside the
            # service's folders; the request's string is kept, so its config hash is the CLI's
            datasets.check_path(str(found) if found is not None else spec_)
    val = body.get("model")
    path = val.get("path") if isinstance(val, dict) else val
    if not isinstance(path, str) or "\x00" in path:
        raise PeftlabError("model: not a model name or path")
    try:
        found = resolve(path, "models")
    except (OSError, ValueError):
        found = None
    if found is not None:
        real = found.resolve()
        roots = [d.resolve() for d in search_dirs("models")]
        if not any(real == d or d in real.parents for d in roots):
            raise PeftlabError(f"model: {path}: only models inside the model folders "
                               f"({', '.join(str(d) for d in roots) or 'none'}) can be used by the service")
    if (body.get("evaluation") or {}).get("bertscore_model") is not None:
        raise PeftlabError("evaluation.bertscore_model: the service scores BERTScore with its own encoder; "
                           "remove the key (set it in an experiment file for the CLI)")


def build_config(req: ExperimentRequest, store: Store, datasets: Datasets | None = None) -> dict[str, Any]:
    """The experiment file (as a dict) the request describes; with `datasets`, every path in it
    checked against the folders the service may read (`_confine`)."""
    if req.dataset and req.data:
        raise PeftlabError("give either `dataset` (an uploaded data set) or `data` (a data section), not both")
    if req.dataset:
        ds = store.dataset(req.dataset)
        if ds is None:
            raise PeftlabError(f"dataset {req.dataset!r} not found; upload it first (see /api/datasets)")
        m = {**ds["mapping"], **(req.mapping.model_dump(exclude_none=True) if req.mapping else {})}
        data: dict[str, Any] = {"train": ds["files"]["train"]}
        for k in ("validation", "test"):
            if ds["files"][k]:
                data[k] = ds["files"][k]
        if m.get("prompt"):
            data["prompt"] = m["prompt"]
        elif m.get("input"):
            data["input"] = m["input"] if isinstance(m["input"], str) or len(m["input"]) != 1 else m["input"][0]
        s = spec(req.task)
        if m.get(s.target_key):
            data[s.target_key] = m[s.target_key]
        if m.get("system_prompt"):
            data["system_prompt"] = m["system_prompt"]
        if s.image_input:
            data.pop("input", None)
            data.pop("prompt", None)
            if m.get("image"):
                data["image"] = m["image"]
    elif req.data:
        data = dict(req.data)
    else:
        raise PeftlabError("no data: give `dataset` (upload one on the Datasets page) or a `data` section")
    methods = [m.model_dump(exclude_none=True) for m in req.methods]
    body = {"name": req.name, "model": req.model, "task": req.task, "data": data, "methods": methods,
            "training": dict(req.training), "evaluation": dict(req.evaluation)}
    flags = {k: getattr(req, k) for k in ("max_steps", "epochs", "batch_size", "max_train_examples", "max_eval_examples",
                                          "max_validation_examples", "seed", "tune", "budget")}
    body = apply_overrides(body, overrides_from(flags))
    if req.seeds and req.seeds > 1:
        first = int(body["training"].get("seed", 42))
        body["seeds"] = [first + i for i in range(req.seeds)]
    if datasets is not None:
        _confine(body, datasets)
    return body


def method_catalogue(task: str | None) -> list[dict[str, Any]]:
    from peftlab.methods import REGISTRY
    from peftlab.report.collect import method_color

    out = []
    for m in REGISTRY.values():
        opts = {}
        for fname, f in m.options.model_fields.items():
            default = f.get_default(call_default_factory=True)
            ann = f.annotation
            kind = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
            opts[fname] = {"default": default, "type": kind,
                           "description": f.description}
        out.append({"name": m.name, "summary": m.summary, "tasks": sorted(m.tasks), "trains": m.trains,
                    "applicable": task is None or task in m.tasks,
                    "learning_rate": m.learning_rate(task or TASK_NAMES[0]) if m.trains else None,
                    "learning_rates": m.learning_rates, "options": opts, "color": method_color(m.name),
                    "mergeable": m.mergeable, "family": m.family})
    return out


def local_models() -> list[dict[str, Any]]:
    from peftlab.paths import search_dirs
    from peftlab.train.estimate import model_shape

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in search_dirs("models"):
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.name in seen or p.name.startswith("."):
                continue
            if (p.is_dir() and ((p / "config.json").is_file() or any(p.glob("*.gguf")))) or p.suffix == ".gguf":
                seen.add(p.name)
                shape = model_shape(str(p))
                out.append({"name": p.name, "path": str(p), "folder": str(d), "params": shape["params"],
                            **model_fit(p)})
    return out


def model_fit(p: Path) -> dict[str, Any]:
    """What a model folder is (architecture, kind) and the tasks it fits (`peftlab.models.fit`),
    with the reason for each task it does not. A bare .gguf file is a causal LM."""
    from peftlab.models.fit import architecture, fit, kind

    cfg_path = p / "config.json"
    config: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    if not config.get("model_type"):
        gguf = p.suffix == ".gguf" or (p.is_dir() and any(p.glob("*.gguf")))
        fits = {t: "" if (gguf and t == CAUSAL_LM) else "a GGUF file loads as a causal LM only" if gguf
                else "unknown model type (no config.json model_type)" for t in TASK_NAMES}
        return {"architecture": None, "kind": "decoder" if gguf else "unknown",
                "tasks": [t for t, why in fits.items() if not why], "unfit": {t: w for t, w in fits.items() if w}}
    results = {t: fit(config, t, p.name) for t in TASK_NAMES}
    return {"architecture": architecture(config), "kind": kind(config),
            "tasks": [t for t, (ok, _) in results.items() if ok],
            "unfit": {t: why for t, (ok, why) in results.items() if not ok}}


def _plan(req: ExperimentRequest, store: Store, datasets: Datasets) -> Plan:
    return jobs.make_plan(build_config(req, store, datasets))


@router.get("/api/models")
def models() -> dict[str, Any]:
    from peftlab.paths import search_dirs

    return {"folders": [str(d) for d in search_dirs("models")], "models": local_models(),
            "note": "a hub id (org/name) also works where the hub can be reached"}


@router.get("/api/methods")
def methods(task: str | None = Query(None, description="Mark which methods apply to this task.")) -> list[dict]:
    if task is not None and task not in TASK_NAMES:
        raise HTTPException(400, f"unknown task {task!r}; tasks: {', '.join(TASK_NAMES)}")
    return method_catalogue(task)


@router.post("/api/estimate")
def estimate(req: ExperimentRequest, store: StoreDep, datasets: DatasetsDep) -> dict[str, Any]:
    """Memory and time per method before launch (a rough model; `how` says how it is computed);
    with `tune` or `seeds`, also the runs that makes and their total time (`plan`)."""
    import torch

    from peftlab.data.prepare import prepare_data
    from peftlab.models import resolve_model
    from peftlab.train.estimate import estimate as est
    from peftlab.train.preflight import _task

    p = _plan(req, store, datasets)
    cfg = p.cfg
    data = prepare_data(cfg.data, cfg.task, cfg.training.seed, None)
    rm = resolve_model(cfg.model, None)
    task = _task(cfg, rm, data)  # the preflight's check: a model that does not fit the task is refused here
    out = est(cfg, rm, data, task, cuda=torch.cuda.is_available(), store=store)
    out["data"] = data.counts()
    if cfg.tuning is not None or cfg.seeds:
        from peftlab.tune.estimate import plan_cost

        out["plan"] = plan_cost(p, store)
    if cfg.tuning is not None and cfg.tuning.budget is not None:
        from peftlab.tune.estimate import describe_race

        out["race"] = describe_race(p, store)  # the rungs and finals the budget buys
    return out


@router.post("/api/experiments/yaml")
def experiment_yaml(req: ExperimentRequest, store: StoreDep, datasets: DatasetsDep) -> dict[str, Any]:
    """The experiment file the request describes (checked as `peftlab run` checks one; nothing is
    queued) and the command that runs it."""
    p = _plan(req, store, datasets)
    cmd = f"peftlab --store {store.root.resolve()} run {p.cfg.name}.yaml"
    return {"name": p.cfg.name, "yaml": p.yaml_text, "cli": cmd, "filename": f"{p.cfg.name}.yaml"}


@router.post("/api/experiments/resolved")
def experiment_resolved(req: ExperimentRequest, store: StoreDep, datasets: DatasetsDep) -> dict[str, Any]:
    """What each run will actually use, as the engine resolves it (`peftlab.serve.resolved`): learning
    rate, trainable parameters, and the adapter's settings (rank, alpha, target modules, ...)."""
    from peftlab.serve.resolved import resolved_settings

    return {"name": req.name, "runs": resolved_settings(_plan(req, store, datasets).cfg)}


@router.post("/api/experiments", status_code=201)
def create_experiment(req: ExperimentRequest, store: StoreDep, datasets: DatasetsDep,
                      scheduler: SchedulerDep) -> dict[str, Any]:
    """Validate (schema, methods, data, model) and queue the runs (one per method, or per method and
    seed); with `tune`, start a driver process that tunes, then runs the finals. Nothing trains here.
    The answer says what happened to each run: queued, requeued, reused (done already with these
    settings) or running."""
    from peftlab.serve import launch
    from peftlab.train.preflight import preflight
    from peftlab.tune.plan import check_tuned_data, check_tuning

    p = _plan(req, store, datasets)
    check_tuning(p)
    checked = preflight(p, read_test=p.cfg.tuning is None)
    check_tuned_data(p, checked.data)  # what the tuner would refuse is refused here, with its message
    if p.cfg.tuning is not None:
        return launch.spawn_driver(p, store, req.force, req.replace, handoff=scheduler.status()["running"])
    return launch.queue(p, store, req.force, req.replace)


@router.get("/api/experiments")
def experiments(store: StoreDep) -> list[dict[str, Any]]:
    return store.experiments()


@router.get("/api/experiments/{name}")
def experiment(name: str, store: StoreDep) -> dict[str, Any]:
    e = find_experiment(store, name)
    from peftlab.methods import REGISTRY
    from peftlab.serve.launch import driver_state
    from peftlab.tune.plan import load_plan

    def summary(r: Any) -> dict[str, Any]:
        m = REGISTRY.get(r.method)
        return {**jobs.run_summary(r), "mergeable": bool(m and m.mergeable), "trains": bool(m and m.trains)}

    return {"name": e["name"], "task": e["task"], "model": e["model"], "config": e["config"],
            "yaml": e["config_yaml"], "created_at": e["created_at"], "updated_at": e["updated_at"],
            "runs": [summary(r) for r in store.runs(name)], "driver": driver_state(store, name),
            "plan": load_plan(store.root, name)}


@router.delete("/api/experiments/{name}")
def delete_experiment(name: str, store: StoreDep) -> dict[str, Any]:
    """Delete the experiment, its runs and their files (refused while a run of it is running or queued)."""
    from peftlab.store import ManageError

    find_experiment(store, name)
    try:
        out = store.delete_experiment(name)
    except ManageError as e:
        raise HTTPException(409, str(e)) from None
    _delete_studies(store, name)
    from peftlab.tune.plan import plan_file

    plan_file(store.root, name).unlink(missing_ok=True)
    return out


def _delete_studies(store: Store, name: str) -> None:
    """The experiment's tuning studies (a new experiment of the same name must not resume them)."""
    if not (store.root / "tuning.journal").is_file():
        return
    import optuna

    from peftlab.tune.study import storage

    st = storage(store.root)
    for s in optuna.get_all_study_summaries(st):
        if s.study_name.startswith(f"{name}/"):
            optuna.delete_study(study_name=s.study_name, storage=st)


@router.post("/api/experiments/{name}/rename")
def rename_experiment(name: str, req: RenameRequest, store: StoreDep) -> dict[str, Any]:
    """Rename the experiment: its runs and folders follow (refused while a run of it is running or
    queued, or when the name is taken)."""
    import yaml

    from peftlab.config import ExperimentConfig
    from peftlab.config.schema import MethodEntry
    from peftlab.store import ManageError
    from peftlab.train.plan import config_hash

    find_experiment(store, name)

    def rehash(run_cfg: dict[str, Any]) -> str:
        return config_hash(ExperimentConfig.model_validate(run_cfg["experiment"]),
                           MethodEntry.model_validate(run_cfg["entry"]))

    def text(config: dict[str, Any]) -> str:
        e = store.experiment(name) or {}
        try:
            body = yaml.safe_load(e.get("config_yaml") or "") or {}
        except yaml.YAMLError:
            body = {}
        if not isinstance(body, dict) or not body:
            body = config
        body["name"] = req.name
        return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)

    try:
        out = store.rename_experiment(name, req.name, rehash, text)
    except ManageError as e:
        raise HTTPException(409, str(e)) from None
    from peftlab.tune.plan import plan_file

    old, new = plan_file(store.root, name), plan_file(store.root, req.name)
    if old.is_file():  # the plan's run names are the same under the new name
        old.replace(new)
    return out


@router.post("/api/experiments/{name}/format")
def format_input(name: str, req: FormatRequest, store: StoreDep) -> dict[str, Any]:
    """An input as the experiment's runs see it: its template applied, through the model's tokenizer
    and chat template (special tokens shown), with the token count."""
    from peftlab.config import ExperimentConfig
    from peftlab.serve.formatting import format_input as fmt

    e = find_experiment(store, name)
    cfg = ExperimentConfig.model_validate(e["config"])
    return fmt(cfg, req.text, req.inputs, Path(e["base_dir"]) if e.get("base_dir") else None)
