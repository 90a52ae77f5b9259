"""The web service: a REST API (OpenAPI schema at /openapi.json, docs at /docs) and the pages
that use it (/, plain HTML/JS from serve/static, no build step, nothing from a CDN).

    peftlab serve [--host 127.0.0.1] [--port 8000] [--token T] [--concurrency 1] [--max-upload-mb 100]

Safe by default: binds 127.0.0.1; with a token (--token or PEFTLAB_TOKEN) every /api call
needs `Authorization: Bearer <token>` (downloads may instead carry a short-lived signed
`ticket` from POST /api/tickets, since a browser link cannot set a header); uploads are
size-limited and read with the engine's reader before they are kept; names from users
never become paths; models load without remote code or pickles (the engine's default).
Errors a person can fix come back as HTTP 4xx with a message saying what to change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from peftlab import __version__
from peftlab.config.overrides import apply_overrides, overrides_from
from peftlab.config.schema import MethodEntry
from peftlab.errors import NotFound, PeftlabError
from peftlab.infer.playground import Playground
from peftlab.queue import jobs
from peftlab.queue.jobs import make_plan
from peftlab.queue.scheduler import Scheduler
from peftlab.serve.datasets import Datasets
from peftlab.store import Store
from peftlab.tasks.spec import TASK_NAMES, TaskName, spec

log = logging.getLogger("peftlab.serve")
STATIC = Path(__file__).parent / "static"
TICKET_SECONDS = 300


class Settings(BaseModel):
    store: str
    token: str | None = None
    concurrency: int = Field(1, ge=1)
    max_upload_mb: float = Field(100.0, gt=0)
    start_worker: bool = True
    poll_seconds: float = 1.0
    data_dirs: list[str] = Field(default_factory=list)


# -- request bodies -----------------------------------------------------------
class PathDataset(BaseModel):
    path: str = Field(description="A data file inside the data folders (absolute, or relative to one).")
    name: str | None = None
    validation: str | None = None
    test: str | None = None


class Mapping(BaseModel):
    input: list[str] | str | None = Field(None, description="Input column(s).")
    prompt: str | None = Field(None, description="Template with {column} placeholders (instead of input).")
    target: str | None = Field(None, description="Target column (generation tasks).")
    label: str | None = Field(None, description="Label column (classification).")
    image: str | None = Field(None, description="Image column: base64, data URL or file path (image tasks).")


class ExperimentRequest(BaseModel):
    name: str = Field(description="Experiment name: letters, digits, . _ - (it becomes a folder name).")
    model: str = Field(description="A model folder name from /api/models, a path, or a hub id.")
    task: TaskName = TASK_NAMES[0]
    dataset: str | None = Field(None, description="Data set id from /api/datasets.")
    data: dict[str, Any] | None = Field(None, description="Or: the experiment file's `data` section as is.")
    mapping: Mapping | None = Field(None, description="Column mapping (default: the data set's).")
    methods: list[MethodEntry] = Field(min_length=1)
    max_steps: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    max_train_examples: int | None = Field(None, gt=0)
    max_eval_examples: int | None = Field(None, gt=0, description="Limit on test examples.")
    training: dict[str, Any] = Field(default_factory=dict, description="Other `training` keys.")
    evaluation: dict[str, Any] = Field(default_factory=dict, description="`evaluation` keys.")
    force: bool = Field(False, description="Redo runs already done with the same configuration.")


class PlaygroundRequest(BaseModel):
    experiment: str
    runs: list[str] | None = Field(None, description="Run names (default: every finished run).")
    text: str | None = Field(None, description="The input (the value of the input column).")
    inputs: dict[str, Any] | None = Field(None, description="A value per input column, for several.")
    max_new_tokens: int | None = Field(None, ge=1, le=256)


class MergeRequest(BaseModel):
    probes: list[str] | None = Field(None, description="Probe inputs (default: the run's first test inputs).")
    n_probes: int = Field(4, ge=1, le=32)


class TicketRequest(BaseModel):
    path: str = Field(description="The download path, e.g. /api/runs/3/adapter.zip")


# -- helpers ------------------------------------------------------------------
def _err(status: int, msg: str) -> HTTPException:
    return HTTPException(status_code=status, detail=msg)


def build_config(req: ExperimentRequest, datasets: Datasets) -> dict[str, Any]:
    """The experiment file (as a dict) the request describes."""
    if req.dataset and req.data:
        raise PeftlabError("give either `dataset` (an uploaded data set) or `data` (a data section), not both")
    if req.dataset:
        try:
            ds = datasets.get(req.dataset)
        except KeyError:
            raise PeftlabError(f"dataset {req.dataset!r} not found; upload it first (see /api/datasets)") from None
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
    flags = {k: getattr(req, k) for k in ("max_steps", "epochs", "batch_size", "max_train_examples", "max_eval_examples")}
    return apply_overrides(body, overrides_from(flags))


def method_catalogue(task: str | None) -> list[dict[str, Any]]:
    from peftlab.methods import REGISTRY

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
                    "learning_rates": m.learning_rates, "options": opts})
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
                cfg_path = p / "config.json"
                arch = None
                if cfg_path.is_file():
                    arch = (json.loads(cfg_path.read_text(encoding="utf-8")).get("architectures") or [None])[0]
                out.append({"name": p.name, "path": str(p), "folder": str(d), "params": shape["params"],
                            "architecture": arch})
    return out


class _UploadLimit:
    """ASGI middleware: refuse request bodies over the limit on the upload endpoint with 413,
    by Content-Length up front or by counting the bytes as they arrive."""

    def __init__(self, app: Any, limit_bytes: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.limit = limit_bytes
        self.paths = paths

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        msg = (f"upload too large: the limit is {self.limit / 2**20:.0f} MB (start the service with "
               "--max-upload-mb to change it), or point at a server-side file instead")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit + 64 * 1024:
            await JSONResponse({"detail": msg}, status_code=413)(scope, receive, send)
            return
        seen = 0
        over = False

        async def counting_receive() -> dict:
            nonlocal seen, over
            m = await receive()
            if m["type"] == "http.request":
                seen += len(m.get("body", b""))
                if seen > self.limit + 64 * 1024:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return m

        started = False

        async def guarded_send(m: dict) -> None:
            nonlocal started
            if over:
                if m["type"] == "http.response.start" and not started:
                    started = True
                    body = json.dumps({"detail": msg}).encode()
                    await send({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                return
            await send(m)

        await self.app(scope, counting_receive, guarded_send)


def create_app(settings: Settings) -> FastAPI:
    store = Store(settings.store)
    datasets = Datasets(store, [Path(d) for d in settings.data_dirs])
    playground = Playground(store)
    scheduler = Scheduler(store, settings.concurrency, settings.poll_seconds)
    secret = secrets.token_bytes(32)
    limit = int(settings.max_upload_mb * 2**20)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.start_worker:
            scheduler.start()
        yield
        if settings.start_worker:
            await run_in_threadpool(scheduler.stop)

    app = FastAPI(title="peftlab", version=__version__, lifespan=lifespan,
                  description="Compare PEFT methods on your data: upload data, queue a comparison, follow the "
                              "runs, read the results, try the runs side by side and export the winner.")
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.playground = playground
    app.state.datasets = datasets
    app.state.settings = settings

    # -- auth -----------------------------------------------------------------
    def _ticket(path: str, expires: int) -> str:
        return hmac.new(secret, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()

    @app.middleware("http")
    async def auth(request: Request, call_next: Callable) -> Any:
        path = request.url.path
        if settings.token and path.startswith("/api/"):
            header = request.headers.get("authorization", "")
            ok = header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), settings.token.encode())
            if not ok and request.method == "GET" and path.endswith((".zip", ".html")):
                t, exp = request.query_params.get("ticket", ""), request.query_params.get("expires", "")
                ok = exp.isdigit() and int(exp) >= time.time() and hmac.compare_digest(t, _ticket(path, int(exp)))
            if not ok:
                why = "missing" if not header else "wrong"
                return JSONResponse({"detail": f"authentication required: the Authorization header is {why}; send "
                                               "'Authorization: Bearer <token>' with the token the service was "
                                               "started with"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    app.add_middleware(_UploadLimit, limit_bytes=limit, paths=("/api/datasets",))

    @app.exception_handler(PeftlabError)
    async def _peftlab_error(request: Request, exc: PeftlabError) -> JSONResponse:
        status = 409 if isinstance(exc, jobs.JobError) else 404 if isinstance(exc, NotFound) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # -- pages ----------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg")

    # -- service --------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "store": str(store.root), "worker": scheduler.status()}

    @app.get("/api/config", tags=["service"])
    def config() -> dict[str, Any]:
        import torch

        return {"auth": bool(settings.token), "max_upload_mb": settings.max_upload_mb,
                "concurrency": settings.concurrency, "worker": settings.start_worker, "tasks": list(TASK_NAMES),
                "cuda": torch.cuda.is_available(), "version": __version__}

    @app.get("/api/worker", tags=["jobs"])
    def worker_status() -> dict[str, Any]:
        return scheduler.status()

    @app.post("/api/tickets", tags=["service"])
    def ticket(req: TicketRequest) -> dict[str, Any]:
        """A signed link for one download path, valid 5 minutes (for browser downloads with a token)."""
        if not req.path.startswith("/api/") or not req.path.endswith((".zip", ".html")):
            raise _err(400, "tickets are for download paths under /api/ ending in .zip or .html")
        expires = int(time.time()) + TICKET_SECONDS
        return {"url": f"{req.path}?expires={expires}&ticket={_ticket(req.path, expires)}", "expires": expires}

    # -- data sets ------------------------------------------------------------
    @app.get("/api/datasets", tags=["datasets"])
    def list_datasets() -> list[dict[str, Any]]:
        return datasets.list()

    @app.post("/api/datasets", status_code=201, tags=["datasets"])
    async def upload_dataset(file: UploadFile = File(..., description="A .csv, .jsonl or .parquet file."),
                             name: str | None = Form(None)) -> dict[str, Any]:
        filename = file.filename or "upload"
        fd, tmp_name = tempfile.mkstemp(prefix="peftlab-upload-", suffix=Path(filename).suffix[:10])
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise _err(413, f"upload too large: the limit is {settings.max_upload_mb:g} MB "
                                        "(--max-upload-mb)")
                    out.write(chunk)
            if size == 0:
                raise _err(400, f"{filename}: the file is empty")
            try:
                return await run_in_threadpool(datasets.add_upload, filename, Path(tmp_name), name)
            except PeftlabError as e:
                raise _err(400, str(e)) from None
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    @app.post("/api/datasets/from-path", status_code=201, tags=["datasets"])
    def dataset_from_path(req: PathDataset) -> dict[str, Any]:
        try:
            return datasets.add_path(req.path, req.name, req.validation, req.test)
        except PeftlabError as e:
            raise _err(400, str(e)) from None

    @app.get("/api/data-files", tags=["datasets"])
    def data_files() -> dict[str, Any]:
        return {"folders": [str(d) for d in datasets.allowed_dirs()], "files": datasets.server_files()}

    def _dataset(ds_id: str, max_source_tokens: int = 256) -> dict[str, Any]:
        try:
            return datasets.detail(ds_id, max_source_tokens)
        except KeyError:
            raise _err(404, f"no dataset {ds_id!r}") from None

    @app.get("/api/datasets/{ds_id}", tags=["datasets"])
    def get_dataset(ds_id: str, max_source_tokens: int = Query(256, gt=0)) -> dict[str, Any]:
        return _dataset(ds_id, max_source_tokens)

    @app.put("/api/datasets/{ds_id}/mapping", tags=["datasets"])
    def set_mapping(ds_id: str, mapping: Mapping) -> dict[str, Any]:
        _dataset(ds_id)
        try:
            datasets.set_mapping(ds_id, mapping.model_dump())
        except PeftlabError as e:
            raise _err(400, str(e)) from None
        return _dataset(ds_id)

    @app.delete("/api/datasets/{ds_id}", status_code=204, tags=["datasets"])
    def delete_dataset(ds_id: str) -> None:
        _dataset(ds_id)
        datasets.delete(ds_id)

    # -- models and methods ---------------------------------------------------
    @app.get("/api/models", tags=["experiments"])
    def models() -> dict[str, Any]:
        from peftlab.paths import search_dirs

        return {"folders": [str(d) for d in search_dirs("models")], "models": local_models(),
                "note": "a hub id (org/name) also works where the hub can be reached"}

    @app.get("/api/methods", tags=["experiments"])
    def methods(task: str | None = Query(None, description="Mark which methods apply to this task.")) -> list[dict]:
        if task is not None and task not in TASK_NAMES:
            raise _err(400, f"unknown task {task!r}; tasks: {', '.join(TASK_NAMES)}")
        return method_catalogue(task)

    # -- experiments ----------------------------------------------------------
    def _plan(req: ExperimentRequest) -> Any:
        return make_plan(build_config(req, datasets))

    @app.post("/api/estimate", tags=["experiments"])
    def estimate(req: ExperimentRequest) -> dict[str, Any]:
        """Memory and time per method before launch (a rough model; `how` says how it is computed)."""
        import torch

        from peftlab.data.prepare import prepare_data
        from peftlab.models import resolve_model
        from peftlab.tasks.build import load_task
        from peftlab.train.estimate import estimate as est

        p = _plan(req)
        cfg = p.cfg
        data = prepare_data(cfg.data, cfg.task, cfg.training.seed, None)
        rm = resolve_model(cfg.model, None)
        task = load_task(cfg, rm, data.labels)
        out = est(cfg, rm, data, task, cuda=torch.cuda.is_available(), store=store)
        out["data"] = data.counts()
        return out

    @app.post("/api/experiments", status_code=201, tags=["experiments"])
    def create_experiment(req: ExperimentRequest) -> dict[str, Any]:
        """Validate (schema, methods, data, model) and queue one run per method. Nothing trains here."""
        from peftlab.train.runner import preflight

        p = _plan(req)
        preflight(p)
        runs = jobs.enqueue(p, store, force=req.force)
        return {"experiment": p.cfg.name, "runs": [jobs.run_summary(r) for r in runs],
                "yaml": p.yaml_text}

    @app.get("/api/experiments", tags=["experiments"])
    def experiments() -> list[dict[str, Any]]:
        return store.experiments()

    def _exp(name: str) -> dict[str, Any]:
        e = store.experiment(name)
        if e is None:
            raise _err(404, f"no experiment {name!r}")
        return e

    @app.get("/api/experiments/{name}", tags=["experiments"])
    def experiment(name: str) -> dict[str, Any]:
        e = _exp(name)
        return {"name": e["name"], "task": e["task"], "model": e["model"], "config": e["config"],
                "yaml": e["config_yaml"], "created_at": e["created_at"], "updated_at": e["updated_at"],
                "runs": [jobs.run_summary(r) for r in store.runs(name)]}

    @app.get("/api/experiments/{name}/leaderboard", tags=["results"])
    def leaderboard(name: str) -> dict[str, Any]:
        from peftlab.serve.results import leaderboard as lb

        _exp(name)
        return lb(store, name)

    @app.get("/api/experiments/{name}/report.html", tags=["results"], response_class=HTMLResponse)
    def report(name: str) -> HTMLResponse:
        """The experiment's HTML report (the one `peftlab report` writes), re-rendered when a run changes."""
        from peftlab.serve.results import report_html

        _exp(name)
        return HTMLResponse(report_html(store, name), headers={"Cache-Control": "no-store"})

    @app.get("/api/experiments/{name}/outputs", tags=["results"])
    def outputs(name: str, limit: int = Query(10, ge=1, le=200), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        from peftlab.serve.results import outputs as outs

        _exp(name)
        return outs(store, name, limit, offset)

    @app.get("/api/experiments/{name}/curves", tags=["results"])
    def experiment_curves(name: str) -> dict[str, Any]:
        from peftlab.serve.results import curves

        _exp(name)
        return curves(store, name)

    # -- runs (the jobs) --------------------------------------------------------
    def _run(run_id: int) -> Any:
        r = store.run(run_id)
        if r is None:
            raise _err(404, f"no run {run_id}")
        return r

    @app.get("/api/runs", tags=["jobs"])
    def list_runs(experiment: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        rs = store.runs(experiment)
        if status:
            wanted = set(status.split(","))
            rs = [r for r in rs if r.status in wanted]
        return [jobs.run_summary(r) for r in rs]

    @app.get("/api/runs/{run_id}", tags=["jobs"])
    def get_run(run_id: int) -> dict[str, Any]:
        r = _run(run_id)
        return {**jobs.run_summary(r), "config": r.config, "resolved": r.resolved, "info": r.info}

    @app.get("/api/runs/{run_id}/logs", tags=["jobs"])
    def run_logs(run_id: int, tail: int = Query(200, ge=1, le=5000)) -> dict[str, Any]:
        r = _run(run_id)
        worker_log = store.run_dir(r.experiment, r.name) / "worker.log"
        lines: list[str] = []
        if worker_log.is_file():
            with open(worker_log, "rb") as f:
                f.seek(max(0, worker_log.stat().st_size - 64 * 1024))
                text = f.read().decode("utf-8", "replace").replace("\r", "\n")
            lines = [ln for ln in text.split("\n") if ln.strip()][-tail:]
        return {"run_id": run_id, "logs": store.logs(run_id)[-tail:], "worker_output": lines}

    @app.get("/api/runs/{run_id}/curves", tags=["jobs"])
    def run_curves(run_id: int) -> dict[str, Any]:
        _run(run_id)
        return {k: [[s, v] for s, v in pts] for k, pts in store.curves(run_id).items()}

    @app.post("/api/runs/{run_id}/cancel", tags=["jobs"])
    def cancel(run_id: int) -> dict[str, Any]:
        _run(run_id)
        return jobs.run_summary(jobs.cancel(store, run_id))

    @app.post("/api/runs/{run_id}/retry", tags=["jobs"])
    def retry(run_id: int, force: bool = False) -> dict[str, Any]:
        _run(run_id)
        return jobs.run_summary(jobs.retry(store, run_id, force))

    # -- playground -----------------------------------------------------------
    @app.get("/api/playground/{name}/runs", tags=["playground"])
    def playground_runs(name: str) -> dict[str, Any]:
        _exp(name)
        return {"experiment": name, "runs": playground.runs_for(name), "status": playground.status()}

    @app.post("/api/playground", tags=["playground"])
    def play(req: PlaygroundRequest) -> dict[str, Any]:
        _exp(req.experiment)
        try:
            return playground.generate(req.experiment, req.runs, req.text, req.inputs, req.max_new_tokens)
        except NotFound as e:
            raise _err(404, str(e)) from None

    # -- export ---------------------------------------------------------------
    @app.get("/api/runs/{run_id}/export", tags=["export"])
    def export_state(run_id: int) -> dict[str, Any]:
        from peftlab.infer import export as ex

        r = _run(run_id)
        try:
            src = ex.artifact(r)
            adapter = {"available": True, "kind": src.name, "bytes": sum(p.stat().st_size for p in src.rglob("*")
                                                                         if p.is_file()),
                       "url": f"/api/runs/{run_id}/adapter.zip"}
        except PeftlabError as e:
            adapter = {"available": False, "why": str(e)}
        merged = ex.merged_state(store, r) if adapter["available"] else {"state": "none"}
        if merged["state"] == "passed":
            merged["url"] = f"/api/runs/{run_id}/merged.zip"
        return {"run_id": run_id, "run": r.name, "method": r.method, "adapter": adapter, "merged": merged,
                "cli": f"peftlab export {r.experiment} {r.name} --merge -o DIR"}

    @app.get("/api/runs/{run_id}/adapter.zip", tags=["export"], response_class=FileResponse)
    def adapter_zip(run_id: int) -> FileResponse:
        from peftlab.infer import export as ex

        r = _run(run_id)
        z = ex.adapter_zip(store, r)
        return FileResponse(z, media_type="application/zip", filename=z.name)

    @app.post("/api/runs/{run_id}/export/merged", tags=["export"])
    def export_merged(run_id: int, req: MergeRequest | None = None) -> dict[str, Any]:
        """Merge the adapter into the base, check it on probe inputs, keep it only if the check passes.
        Runs in this request (seconds for small models); the result and the check are returned."""
        from peftlab.infer import export as ex

        r = _run(run_id)
        st = ex.merged_state(store, r)
        if st["state"] == "passed" and not (req and req.probes):
            return {**st, "url": f"/api/runs/{run_id}/merged.zip"}
        d = ex.merged_dir(store, r)
        shutil.rmtree(d, ignore_errors=True)
        req = req or MergeRequest()
        with playground.lock:  # one model-sized job at a time in the service process
            try:
                ex.merge(store, r, d, req.probes, req.n_probes)
            except PeftlabError as e:
                st = ex.merged_state(store, r)
                if st["state"] == "failed":
                    return {**st, "error": str(e)}
                raise
        return {**ex.merged_state(store, r), "url": f"/api/runs/{run_id}/merged.zip"}

    @app.get("/api/runs/{run_id}/merged.zip", tags=["export"], response_class=FileResponse)
    def merged_zip(run_id: int) -> FileResponse:
        from peftlab.infer import export as ex

        r = _run(run_id)
        st = ex.merged_state(store, r)
        if st["state"] != "passed":
            raise _err(409, "no checked merged model for this run yet: merge it first (POST "
                            f"/api/runs/{run_id}/export/merged)")
        z = ex.merged_zip(store, r)
        return FileResponse(z, media_type="application/zip", filename=z.name)

    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        log.warning("listening on %s without a token: anyone who can reach this port can use the service "
                    "(use --token or PEFTLAB_TOKEN)", host)
    app = create_app(settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    hint = "?token=<your token>" if settings.token else ""
    print(f"peftlab serve: http://{shown}:{port}/{hint}  (store {Path(settings.store).resolve()}, "
          f"{settings.concurrency} run(s) at a time{'' if settings.start_worker else ', no worker'})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
