"""The page itself, health, configuration, and signed download tickets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from peftlab import __version__
from peftlab.serve.deps import EngineDep, SchedulerDep, SettingsDep, StoreDep, TicketsDep
from peftlab.serve.schemas import TicketRequest
from peftlab.serve.security import DOWNLOADS
from peftlab.tasks.spec import TASK_NAMES

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["service"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg")


@router.get("/api/health")
def health(store: StoreDep, scheduler: SchedulerDep, engine: EngineDep) -> dict[str, Any]:
    return {"ok": True, "version": __version__, "store": str(store.root), "worker": scheduler.status(),
            "inference": engine.status()}


@router.get("/api/config")
def config(settings: SettingsDep) -> dict[str, Any]:
    import torch

    return {"auth": bool(settings.token), "max_upload_mb": settings.max_upload_mb,
            "concurrency": settings.concurrency, "worker": settings.start_worker, "tasks": list(TASK_NAMES),
            "cuda": torch.cuda.is_available(), "version": __version__}


@router.post("/api/tickets")
def ticket(req: TicketRequest, tickets: TicketsDep) -> dict[str, Any]:
    """A signed link for one download path, valid 5 minutes (for browser downloads with a token)."""
    if not req.path.startswith("/api/") or not req.path.endswith(DOWNLOADS):
        raise HTTPException(400, "tickets are for download paths under /api/ ending in .zip or .html")
    return tickets.issue(req.path)
