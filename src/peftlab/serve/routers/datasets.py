"""Data sets: upload a file or point at a server-side one, read its analysis, set its mapping.

The intake (checks, safe names, allowed folders) is `peftlab.store.intake`; the analysis is
`peftlab.data.analyze`. Here: the upload stream (limit, empty file) and the routes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from peftlab.serve.deps import DatasetsDep, SettingsDep, StoreDep
from peftlab.serve.schemas import DatasetRename, ExperimentRequest, Mapping, PathDataset, PreviewRequest
from peftlab.tasks.spec import CAUSAL_LM, spec

router = APIRouter(tags=["datasets"])


@router.get("/api/datasets")
def list_datasets(datasets: DatasetsDep) -> list[dict[str, Any]]:
    """The data sets, each with `format`: what a run reads (`columns` when the mapping names columns,
    else what `data.format: auto` detects) and `format_reason`."""
    return [{**d, **data_format(d)} for d in datasets.list()]


def data_format(d: dict[str, Any]) -> dict[str, str]:
    from peftlab.data.analyze import _read
    from peftlab.data.formats import detect_format
    from peftlab.errors import PeftlabError

    if any(d["mapping"].get(k) for k in ("input", "prompt", "target", "label", "image")):
        return {"format": "columns", "format_reason": "columns are mapped"}
    try:
        rows = _read(d["files"]["train"])
    except (OSError, ValueError, PeftlabError) as e:
        return {"format": "columns", "format_reason": f"the file cannot be read: {e}"}
    fmt, why = detect_format({k for r in rows[:1000] for k in r if k != "__line__"}, rows[:20])
    return {"format": fmt, "format_reason": why}


@router.post("/api/datasets", status_code=201)
async def upload_dataset(datasets: DatasetsDep, settings: SettingsDep,
                         file: UploadFile = File(..., description="A .csv, .jsonl or .parquet file."),
                         name: str | None = Form(None)) -> dict[str, Any]:
    limit = int(settings.max_upload_mb * 2**20)
    filename = file.filename or "upload"
    fd, tmp_name = tempfile.mkstemp(prefix="peftlab-upload-", suffix=Path(filename).suffix[:10])
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"upload too large: the limit is {settings.max_upload_mb:g} MB "
                                             "(--max-upload-mb)")
                out.write(chunk)
        if size == 0:
            raise HTTPException(400, f"{filename}: the file is empty")
        return await run_in_threadpool(datasets.add_upload, filename, Path(tmp_name), name)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


GENERIC_STEMS = {"train", "training", "validation", "valid", "val", "dev", "test", "data", "dataset", "all"}


def default_name(path: Path) -> str:
    """A server-side file's data set name: its folder's for a file named like a split
    (statista/train.jsonl -> statista), else the file's."""
    stem = path.stem.lower()
    if (stem in GENERIC_STEMS or stem.split("-")[0] in GENERIC_STEMS) and path.parent.name:
        return path.parent.name
    return path.name


@router.post("/api/datasets/from-path", status_code=201)
def dataset_from_path(req: PathDataset, datasets: DatasetsDep) -> dict[str, Any]:
    name = req.name or default_name(datasets.check_path(req.path))
    return datasets.add_path(req.path, name, req.validation, req.test)


@router.get("/api/data-files")
def data_files(datasets: DatasetsDep) -> dict[str, Any]:
    return {"folders": [str(d) for d in datasets.allowed_dirs()], "files": datasets.server_files()}


@router.get("/api/datasets/{ds_id}")
def get_dataset(ds_id: str, datasets: DatasetsDep, max_source_tokens: int = Query(256, gt=0),
                model: str | None = Query(None, description="Render the sample conversation with this model's chat "
                                          "template (a model in the model folders, as /api/models lists them).")
                ) -> dict[str, Any]:
    """The data set, its analysis (with `format`, the data format `auto` detects, and `conversation`,
    its first row as a run builds it) and, with `model`, `analysis.rendered`: that conversation
    as the model sees it in training (template text, the trained replies marked)."""
    d = datasets.detail(ds_id, max_source_tokens)
    a = d["analysis"]
    a["rendered"] = None
    if model is not None and a.get("conversation"):
        from peftlab.data.analyze import render_conversation

        a["rendered"] = {"model": model, **render_conversation(a["conversation"], _tokenizer(model, datasets))}
    return d


_TOKENIZERS: dict[str, Any] = {}  # model path -> tokenizer: a page reloads the analysis often


def _tokenizer(model: str, datasets: Any) -> Any:
    """A model's tokenizer, for a model the service may use (`_confine`: inside the model folders)."""
    from peftlab.config.schema import ModelConfig
    from peftlab.models import load_tokenizer, resolve_model
    from peftlab.models.loading import ResolvedModel
    from peftlab.paths import resolve
    from peftlab.serve.routers.experiments import _confine
    from peftlab.tasks.spec import CAUSAL_LM

    _confine({"model": model}, datasets)
    cfg = ModelConfig(path=model)
    folder = resolve(model, "models")
    if folder is not None and folder.is_dir() and any((folder / f).is_file() for f in ("tokenizer.json",
                                                                                      "tokenizer_config.json")):
        rm = ResolvedModel(str(folder), True)  # the tokenizer alone: no GGUF dequantized for a page
    else:
        rm = resolve_model(cfg, None)
    if rm.path not in _TOKENIZERS:
        if len(_TOKENIZERS) >= 8:
            _TOKENIZERS.clear()
        _TOKENIZERS[rm.path] = load_tokenizer(rm, cfg, CAUSAL_LM)
    return _TOKENIZERS[rm.path]


@router.put("/api/datasets/{ds_id}/mapping")
def set_mapping(ds_id: str, mapping: Mapping, datasets: DatasetsDep) -> dict[str, Any]:
    datasets.set_mapping(ds_id, mapping.model_dump())
    return datasets.detail(ds_id)


@router.post("/api/datasets/{ds_id}/preview")
def preview(ds_id: str, req: PreviewRequest, datasets: DatasetsDep, store: StoreDep) -> dict[str, Any]:
    """The first rows as the model will see them: the mapping's template (or input columns)
    applied by the engine, through the model's tokenizer and chat template, with token counts."""
    from peftlab.data.analyze import _read
    from peftlab.data.formats import detect_format
    from peftlab.errors import DataError
    from peftlab.serve.formatting import preview_rows
    from peftlab.serve.routers.experiments import build_config
    from peftlab.train.plan import Plan

    d = datasets.get(ds_id)
    mapping = req.mapping.model_dump() if req.mapping else dict(d["mapping"])
    task = req.task or d["mapping"].get("task") or CAUSAL_LM
    system_prompt = req.system_prompt if req.system_prompt is not None else mapping.get("system_prompt")
    if not any(mapping.get(k) for k in ("input", "prompt", "target", "label", "image")):
        rows = _read(d["files"]["train"])
        fmt, why = detect_format({k for r in rows[:1000] for k in r if k != "__line__"}, rows[:20])
        if fmt != "columns":  # conversations: what `data.format: auto` trains on
            if task != CAUSAL_LM:
                raise DataError(f"Task: this file holds {fmt} conversations ({why}), which train a causal-lm "
                                f"(chat) model; choose the task causal-lm, or map columns for {task}")
            out = chat_preview(rows, d["files"]["train"], fmt, _tokenizer(req.model, datasets),
                               req.max_source_length + req.max_target_length, system_prompt or None, req.rows)
            return {**out, "format": fmt, "format_reason": why, "task": task, "model": req.model}
    # "" and [] (not None): the request's choice replaces the stored one, template or columns
    if mapping.get("prompt"):
        mapping["input"] = []
    elif mapping.get("input"):
        mapping["prompt"] = ""
    elif not spec(task).image_input:
        raise DataError("choose input columns or write a prompt template to preview")
    body = ExperimentRequest(name="preview", model=req.model, task=task, dataset=ds_id,
                             mapping=Mapping(**{k: v for k, v in mapping.items() if k in Mapping.model_fields}),
                             methods=[{"name": "zero-shot"}],
                             training={"max_source_length": req.max_source_length,
                                       "max_target_length": req.max_target_length},
                             max_eval_examples=None)
    cfg_dict = build_config(body, store, datasets)
    if system_prompt:
        cfg_dict["data"]["system_prompt"] = system_prompt
    from peftlab.queue.jobs import make_plan

    p: Plan = make_plan(cfg_dict)
    rows = _read(d["files"]["train"])[: req.rows]
    out = preview_rows(p.cfg, rows, Path(d["files"]["train"]).name)
    return {**out, "task": task, "model": req.model}


@router.delete("/api/datasets/{ds_id}", status_code=204)
def delete_dataset(ds_id: str, datasets: DatasetsDep) -> None:
    datasets.delete(ds_id)


CHAT_COUNT = 2000  # conversations counted for truncation (the first ones of the file)


def chat_preview(rows: list[dict[str, Any]], source: str, fmt: str, tok: Any, max_len: int,
                 system_prompt: str | None, shown: int) -> dict[str, Any]:
    """Conversations as training encodes them (`encode_conversation`, max_source_length +
    max_target_length tokens): the first `shown` rendered in segments (trained: the replies that
    carry the loss), and for the first CHAT_COUNT the token count and whether it is cut."""
    from peftlab.data.chat_encoding import _Encoder, render_segments
    from peftlab.data.formats import Conversation, convert_rows

    convs, bad = convert_rows(rows[:CHAT_COUNT], fmt, Path(source).name, on_bad_rows="skip")
    enc = _Encoder(tok, None)
    out, lengths = [], []
    for i, conv in enumerate(convs):
        own = conv.system is not None
        if not own and system_prompt:
            conv = Conversation(system_prompt, conv.turns, conv.where)
        n = enc.length(conv, False)
        lengths.append({"where": conv.where, "tokens": n, "truncated": n > max_len})
        if i < shown:
            segs = render_segments(tok, conv, max_len)
            out.append({"where": conv.where, "tokens": n, "truncated": n > max_len, "turns": len(conv.turns),
                        "system": "the row's own" if own else "the setting" if system_prompt else None,
                        "segments": segs, "kept_tokens": min(n, max_len)})
    cut = [x for x in lengths if x["truncated"]]
    return {"chat": True, "conversations": out, "lengths": lengths, "truncated": len(cut), "counted": len(lengths),
            "rows": len(rows), "max_length": max_len, "bad": bad[:5], "bad_count": len(bad),
            "system_prompt": system_prompt, "chat_template": bool(getattr(tok, "chat_template", None))}


@router.post("/api/datasets/{ds_id}/rename")
def rename_dataset(ds_id: str, req: DatasetRename, datasets: DatasetsDep) -> dict[str, Any]:
    """Rename a data set (409 when another one has that name)."""
    from peftlab.store.intake import NameTaken

    try:
        return datasets.rename(ds_id, req.name)
    except NameTaken as e:
        raise HTTPException(409, str(e)) from None
