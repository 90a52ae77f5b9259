"""Export a run: its adapter as a zip, or a merged model that passed the merge check (the
engine is `peftlab.infer.export`, which `peftlab export` runs too)."""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from peftlab.errors import PeftlabError
from peftlab.serve.deps import PlaygroundDep, StoreDep, find_experiment, find_run
from peftlab.serve.schemas import GgufRequest, MergeRequest

router = APIRouter(tags=["export"])

# peftlab.infer.export loads torch, transformers and peft: imported in the routes, so that the
# service starts in a second.


def merge_trait(method: str) -> tuple[bool, str | None]:
    """Whether the run's method can be merged into the base (its `mergeable` trait), and why not."""
    from peftlab.methods import REGISTRY

    m = REGISTRY.get(method)
    why = f"{method}: not a method of this peftlab version" if m is None else m.merge_refusal
    return why is None, why


@router.get("/api/runs/{run_id}/export")
def export_state(run_id: int, store: StoreDep) -> dict[str, Any]:
    return _state(store, find_run(store, run_id))


@router.get("/api/experiments/{name}/exports")
def experiment_exports(name: str, store: StoreDep) -> dict[str, Any]:
    """The export state of every run of the experiment: the run its report recommends first (the
    one answer, `report.recommend`), then the other final runs, then the tuning trials (which keep
    no adapter: each only scored a setting on the validation split)."""
    from peftlab.report.leaderboard import is_trial
    from peftlab.serve.routers.results import recommendation

    find_experiment(store, name)
    rec = recommendation(store, name)
    runs = sorted(store.runs(name), key=lambda r: (is_trial(r), r.name != rec["representative"]))  # stable
    return {"experiment": name, "recommended": rec["representative"], "recommended_row": rec["run"],
            "runs": [_state(store, r) for r in runs]}


def _state(store: Any, r: Any) -> dict[str, Any]:
    """A run's export state. The sizes are those of the files a download gives (the zips with
    their model card, built here and kept: a download then starts at once)."""
    from peftlab.infer import export as ex
    from peftlab.methods import REGISTRY
    from peftlab.report.leaderboard import is_trial

    run_id = r.id
    mergeable, why = merge_trait(r.method)
    trial = is_trial(r)
    m = REGISTRY.get(r.method)
    final = (r.config or {}).get("variant") or r.name.rsplit(".t", 1)[0]
    if trial:  # by design: the tuner keeps a trial's scores, not its weights
        adapter = {"available": False, "why": f"a tuning trial keeps no adapter: it only scored a setting on the "
                                              f"validation split; the best setting was retrained as the run "
                                              f"{final!r}, which has one"}
    elif r.status != "done" and m is not None and not m.is_baseline:
        adapter = {"available": False, "why": f"not finished ({r.status}): its {'model' if m.is_full else 'adapter'} "
                                              "can be downloaded once the run is done"}
    else:
        try:
            src = ex.artifact(r)
            kind = "model" if src.name == "model" else "adapter"
            z = ex.adapter_zip(store, r)
            adapter = {"available": True, "kind": src.name, "bytes": _card_zip(store, r, z, kind).stat().st_size,
                       "filename": z.name, "url": f"/api/runs/{run_id}/adapter.zip"}
        except PeftlabError as e:
            adapter = {"available": False, "why": str(e)}
    merged = ex.merged_state(store, r) if adapter["available"] else {"state": "none"}
    if merged["state"] == "passed":
        z = ex.merged_zip(store, r)
        merged.update(url=f"/api/runs/{run_id}/merged.zip", bytes=_card_zip(store, r, z, "merged").stat().st_size,
                      filename=z.name)
    return {"run_id": run_id, "run": r.name, "method": r.method, "status": r.status, "trial": trial,
            "final_run": final if trial else r.name, "adapter": adapter, "merged": merged,
            "mergeable": mergeable, "merge_why": why, "metrics": r.metrics, **_gguf(store, r, adapter["available"]),
            "cli": f"peftlab export {r.experiment} {r.name}{' --merge' if mergeable else ''} -o DIR"}


def _gguf(store: Any, r: Any, available: bool) -> dict[str, Any]:
    """Whether the run can become a GGUF (and why not), and its GGUF export so far."""
    from peftlab.infer import gguf, gguf_tools

    if not available:
        return {"gguf_ok": False, "gguf_why": None, "gguf": {"state": "none"}}
    try:
        gguf.exportable(r)
        if not gguf_tools.installed():
            raise PeftlabError("GGUF export needs llama.cpp's Python bindings: pip install 'peftlab[gguf]'")
    except PeftlabError as e:
        return {"gguf_ok": False, "gguf_why": str(e), "gguf": {"state": "none"}}
    return {"gguf_ok": True, "gguf_why": None, "gguf": gguf.gguf_state(store, r)}


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
        raise HTTPException(409, "This run has no checked merged model yet: use Merge and check on the Export page "
                                 f"first (POST /api/runs/{run_id}/export/merged)")
    z = ex.merged_zip(store, r)
    out = _card_zip(store, r, z, "merged")
    return FileResponse(out, media_type="application/zip", filename=z.name)


@router.post("/api/runs/{run_id}/export/gguf")
def export_gguf(run_id: int, store: StoreDep, playground: PlaygroundDep, req: GgufRequest | None = None) -> dict[str, Any]:
    """Merge, convert to GGUF, quantize and check each type in llama.cpp (`infer.gguf`, as
    `peftlab export --gguf`); the files that passed and the check are returned. Minutes for a
    100M-parameter model on a CPU."""
    from peftlab.infer import gguf, gguf_tools

    r = find_run(store, run_id)
    req = req or GgufRequest()
    quants = gguf_tools.quant_list(",".join(req.quant))
    d = gguf.gguf_dir(store, r)
    with playground.lock:  # one model-sized job at a time in the service process
        shutil.rmtree(d, ignore_errors=True)
        try:
            gguf.export_gguf(store, r, d, quants, n_probes=req.n_probes)
        except PeftlabError as e:
            st = gguf.gguf_state(store, r)
            if st["state"] == "failed":
                return {**st, "error": str(e)}
            raise
    return gguf.gguf_state(store, r)


@router.get("/api/runs/{run_id}/gguf/{filename}", response_class=FileResponse)
def gguf_file(run_id: int, filename: str, store: StoreDep) -> FileResponse:
    """One file of the run's checked GGUF export: a .gguf, a Modelfile or the check."""
    from peftlab.infer import gguf

    r = find_run(store, run_id)
    st = gguf.gguf_state(store, r)
    if filename not in st.get("files", []) and filename != gguf.CHECK_FILE:
        raise HTTPException(404, f"{filename}: not a file of this run's GGUF export (export it first on the Export page)")
    path = gguf.gguf_dir(store, r) / filename
    if not path.is_file():
        raise HTTPException(404, f"{filename}: not a file of this run's GGUF export")
    kind = "application/json" if filename.endswith(".json") else "application/octet-stream"
    return FileResponse(path, media_type=kind, filename=filename)
