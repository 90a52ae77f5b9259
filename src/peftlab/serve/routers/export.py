"""Export a run: its adapter as a zip, or a merged model that passed the merge check (the
engine is `peftlab.infer.export`, which `peftlab export` runs too)."""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from peftlab.errors import PeftlabError
from peftlab.serve.deps import PlaygroundDep, StoreDep, find_experiment, find_run
from peftlab.serve.schemas import MergeRequest

router = APIRouter(tags=["export"])

# peftlab.infer.export loads torch, transformers and peft: imported in the routes, so that the
# service starts in a second.


def merge_trait(method: str) -> tuple[bool, str | None]:
    """Whether the run's method can be merged into the base (its `mergeable` trait), and why not."""
    from peftlab.methods import REGISTRY

    m = REGISTRY.get(method)
    if m is None:
        return False, f"{method}: not a method of this peftlab version"
    if m.is_baseline:
        return False, f"{method} trains nothing: the base model itself is the result"
    if m.is_full:
        return False, "a fully fine-tuned run is already a whole model: download it as it is"
    if not m.mergeable:
        return False, (f"{method} adds virtual tokens (or modules) instead of weight deltas, so it cannot be merged "
                       "into the weights; download the adapter and load it with PeftModel.from_pretrained")
    return True, None


@router.get("/api/runs/{run_id}/export")
def export_state(run_id: int, store: StoreDep) -> dict[str, Any]:
    return _state(store, find_run(store, run_id))


@router.get("/api/experiments/{name}/exports")
def experiment_exports(name: str, store: StoreDep) -> dict[str, Any]:
    """The export state of every run of the experiment, and the run its report recommends."""
    from peftlab.serve.routers.results import recommendation

    find_experiment(store, name)
    runs = store.runs(name)
    rec = recommendation(store, name)
    return {"experiment": name, "recommended": rec["representative"], "recommended_row": rec["run"],
            "runs": [_state(store, r) for r in runs]}


def _state(store: Any, r: Any) -> dict[str, Any]:
    from peftlab.infer import export as ex

    run_id = r.id
    mergeable, why = merge_trait(r.method)
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
    return {"run_id": run_id, "run": r.name, "method": r.method, "status": r.status, "adapter": adapter,
            "merged": merged, "mergeable": mergeable, "merge_why": why, "metrics": r.metrics,
            "cli": f"peftlab export {r.experiment} {r.name}{' --merge' if mergeable else ''} -o DIR"}


def _card_zip(store: Any, r: Any, src: Any, kind: str) -> Any:
    """The engine's zip with a model card and a portable base model name (`infer.card`), the same
    card `peftlab export` writes."""
    from peftlab.infer import card

    dest = src.with_name(src.stem + "-card.zip")
    return card.portable_zip(src, dest, card.card_for(store, r, kind), card.portable_base(r))


@router.get("/api/runs/{run_id}/adapter.zip", response_class=FileResponse)
def adapter_zip(run_id: int, store: StoreDep) -> FileResponse:
    from peftlab.infer import export as ex

    r = find_run(store, run_id)
    z = ex.adapter_zip(store, r)
    out = _card_zip(store, r, z, "model" if ex.artifact(r).name == "model" else "adapter")
    return FileResponse(out, media_type="application/zip", filename=z.name)


@router.post("/api/runs/{run_id}/export/merged")
def export_merged(run_id: int, store: StoreDep, playground: PlaygroundDep,
                  req: MergeRequest | None = None) -> dict[str, Any]:
    """Merge the adapter into the base, check it on probe inputs, keep it only if the check passes.
    Runs in this request (seconds for small models); the result and the check are returned."""
    from peftlab.infer import export as ex

    r = find_run(store, run_id)
    mergeable, why = merge_trait(r.method)
    if not mergeable:
        raise PeftlabError(why or "this run cannot be merged")
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
    return FileResponse(_card_zip(store, r, z, "merged"), media_type="application/zip", filename=z.name)
