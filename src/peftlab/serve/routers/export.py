"""Export a run: its adapter as a zip, or a merged model that passed the merge check (the
engine is `peftlab.infer.export`, which `peftlab export` runs too)."""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from peftlab.errors import PeftlabError
from peftlab.serve.deps import PlaygroundDep, StoreDep, find_run
from peftlab.serve.schemas import MergeRequest

router = APIRouter(tags=["export"])

# peftlab.infer.export loads torch, transformers and peft: imported in the routes, so that the
# service starts in a second.


@router.get("/api/runs/{run_id}/export")
def export_state(run_id: int, store: StoreDep) -> dict[str, Any]:
    from peftlab.infer import export as ex

    r = find_run(store, run_id)
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


@router.get("/api/runs/{run_id}/adapter.zip", response_class=FileResponse)
def adapter_zip(run_id: int, store: StoreDep) -> FileResponse:
    from peftlab.infer import export as ex

    z = ex.adapter_zip(store, find_run(store, run_id))
    return FileResponse(z, media_type="application/zip", filename=z.name)


@router.post("/api/runs/{run_id}/export/merged")
def export_merged(run_id: int, store: StoreDep, playground: PlaygroundDep,
                  req: MergeRequest | None = None) -> dict[str, Any]:
    """Merge the adapter into the base, check it on probe inputs, keep it only if the check passes.
    Runs in this request (seconds for small models); the result and the check are returned."""
    from peftlab.infer import export as ex

    r = find_run(store, run_id)
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


@router.get("/api/runs/{run_id}/merged.zip", response_class=FileResponse)
def merged_zip(run_id: int, store: StoreDep) -> FileResponse:
    from peftlab.infer import export as ex

    r = find_run(store, run_id)
    if ex.merged_state(store, r)["state"] != "passed":
        raise HTTPException(409, "no checked merged model for this run yet: merge it first (POST "
                                 f"/api/runs/{run_id}/export/merged)")
    z = ex.merged_zip(store, r)
    return FileResponse(z, media_type="application/zip", filename=z.name)
