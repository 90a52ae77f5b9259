"""The web service: a REST API (OpenAPI schema at /openapi.json, docs at /docs, served from this
machine: `serve.docs`) and the pages that use it (/, plain HTML/JS from serve/static, no build
step, nothing from a CDN).

    peftlab serve [--host 127.0.0.1] [--port 8000] [--token T] [--concurrency 1] [--max-upload-mb 100]

Safe by default: binds 127.0.0.1; with a token (--token or PEFTLAB_TOKEN) every /api call
needs `Authorization: Bearer <token>` (downloads may instead carry a short-lived signed
`ticket` from POST /api/tickets, since a browser link cannot set a header); uploads are
size-limited and read with the engine's reader before they are kept; names from users
never become paths; models load without remote code or pickles (the engine's default).
Errors a person can fix come back as HTTP 4xx with a message saying what to change.

An OpenAI-compatible endpoint (/v1/models, /v1/chat/completions, /v1/completions) serves every
finished run as the model EXPERIMENT/RUN, with the same token.

This module is the factory only: it builds the store, scheduler, model pool, playground, serving
engine and data sets once (on `app.state`, handed to routers by `serve.deps`), installs `serve.security`, maps
errors to statuses in one table (ERROR_STATUS), and mounts the routers of `serve.routers`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from peftlab import __version__
from peftlab.errors import ConfigError, DataError, NotFound, PeftlabError
from peftlab.infer.engine import Engine
from peftlab.infer.playground import Playground
from peftlab.infer.pool import ModelPool
from peftlab.infer.threads import set_threads
from peftlab.queue.jobs import JobError
from peftlab.queue.scheduler import Scheduler
from peftlab.serve import docs, security, v1_errors
from peftlab.serve.routers import ROUTERS
from peftlab.serve.routers.service import STATIC
from peftlab.serve.schemas import Settings
from peftlab.store import Store
from peftlab.store.intake import Datasets

__all__ = ["ERROR_STATUS", "Settings", "create_app", "serve"]
log = logging.getLogger("peftlab.serve")
CLOSE_SECONDS = 5.0  # at shutdown, the running batch's longest wait to stop at its next token

# Engine errors -> HTTP status; the most specific class wins. HTTP-level refusals (a bad
# ticket path, auth, upload size, an empty upload, an unknown task filter) are raised as
# HTTPException where they happen.
ERROR_STATUS: dict[type[Exception], int] = {
    NotFound: 404,  # no such experiment, run or data set
    JobError: 409,  # not possible in the run's current state
    ConfigError: 422,
    DataError: 422,
    PeftlabError: 422,  # any other error a person can fix
}


def _handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handle


def create_app(settings: Settings) -> FastAPI:
    store = Store(settings.store)
    executor = None
    if settings.executor == "ray" and settings.start_worker:  # queued runs drain onto a Ray cluster
        from peftlab.scale.ray_executor import RayExecutor

        executor = RayExecutor(settings.ray_address, max_retries=settings.ray_max_retries)
    scheduler = Scheduler(store, settings.concurrency, settings.poll_seconds, executor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.start_worker:
            scheduler.start()
        yield
        await run_in_threadpool(app.state.engine.close, CLOSE_SECONDS)  # stops the running batch
        if settings.start_worker:
            await run_in_threadpool(scheduler.stop)

    app = FastAPI(title="peftlab", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Compare PEFT methods on your data: upload data, queue a comparison, follow the "
                              "runs, read the results, try the runs side by side and export the winner.")
    app.state.store = store
    app.state.scheduler = scheduler
    pool = ModelPool(settings.model_memory_mb)  # the models: one pool for the playground and /v1
    app.state.playground = Playground(store, pool)
    app.state.engine = Engine(store, pool, batching=settings.batching, max_batch=settings.max_batch,
                              max_queued=settings.max_queued, threads=settings.threads)
    app.state.datasets = Datasets(store, [Path(d) for d in settings.data_dirs])
    app.state.settings = settings
    app.state.tickets = security.Tickets()
    security.install(app, settings.token, app.state.tickets, int(settings.max_upload_mb * 2**20),
                     settings.allowed_hosts)
    for exc, status in ERROR_STATUS.items():
        app.add_exception_handler(exc, _handler(status))
    # on /v1 every refusal in OpenAI's shape (bodies that do not parse, unknown routes and methods)
    app.add_exception_handler(RequestValidationError, v1_errors.validation_error)
    app.add_exception_handler(StarletteHTTPException, v1_errors.http_error)
    app.add_exception_handler(Exception, v1_errors.server_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs.install(app)  # /docs with its assets served from here, nothing from a CDN
    for router in ROUTERS:
        app.include_router(router)
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        log.warning("listening on %s without a token: anyone who can reach this port can use the service "
                    "(use --token or PEFTLAB_TOKEN)", host)
    if settings.allowed_hosts is None and host not in ("127.0.0.1", "localhost", "::1"):
        settings = settings.model_copy(update={"allowed_hosts": ["*"]})
        log.warning("listening on %s: every Host name is answered; pass --allowed-host NAME (the names people "
                    "use to reach it) to refuse the others (DNS rebinding)", host)
    set_threads(settings.threads)
    app = create_app(settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    hint = "?token=<your token>" if settings.token else ""
    print(f"peftlab serve: http://{shown}:{port}/{hint}  (store {Path(settings.store).resolve()}, "
          f"{settings.concurrency or 'all'} run(s) at a time{'' if settings.start_worker else ', no worker'}"
          f"{', on Ray' if settings.executor == 'ray' else ''})", flush=True)
    engine = app.state.engine

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            """SIGTERM/SIGINT: uvicorn stops accepting at once; the requests in flight have
            --shutdown-timeout seconds, then the engine answers what is left 503 (a running
            batch stops at its next token), and uvicorn ends the connections a little later."""
            if not self.should_exit:
                log.info("stopping: requests in flight have %g s to finish", settings.shutdown_timeout)
                timer = threading.Timer(settings.shutdown_timeout, engine.close, kwargs={"timeout": 0})
                timer.daemon = True
                timer.start()
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                          timeout_graceful_shutdown=settings.shutdown_timeout + 2)).run()

