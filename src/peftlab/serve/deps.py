"""What a router gets from the app: the objects `create_app` builds once and keeps on
`app.state`, as FastAPI dependencies (`store: StoreDep` in an endpoint's signature), and the
lookups that turn a missing experiment or run into `NotFound` (HTTP 404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from peftlab.errors import NotFound
from peftlab.infer.engine import Engine
from peftlab.infer.playground import Playground
from peftlab.queue.scheduler import Scheduler
from peftlab.serve.schemas import Settings
from peftlab.serve.security import Tickets
from peftlab.store import Run, Store
from peftlab.store.intake import Datasets


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def get_playground(request: Request) -> Playground:
    return request.app.state.playground


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_datasets(request: Request) -> Datasets:
    return request.app.state.datasets


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_tickets(request: Request) -> Tickets:
    return request.app.state.tickets


StoreDep = Annotated[Store, Depends(get_store)]
SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]
PlaygroundDep = Annotated[Playground, Depends(get_playground)]
EngineDep = Annotated[Engine, Depends(get_engine)]
DatasetsDep = Annotated[Datasets, Depends(get_datasets)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TicketsDep = Annotated[Tickets, Depends(get_tickets)]


def find_experiment(store: Store, name: str) -> dict[str, Any]:
    e = store.experiment(name)
    if e is None:
        raise NotFound(f"no experiment {name!r}")
    return e


def find_run(store: Store, run_id: int) -> Run:
    r = store.run(run_id)
    if r is None:
        raise NotFound(f"no run {run_id}")
    return r
