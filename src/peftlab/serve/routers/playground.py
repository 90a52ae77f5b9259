"""The playground: one input, the outputs of several runs side by side, each what the run's own
test evaluation answers (the engine is `peftlab.infer.playground.Playground` on the model pool
`peftlab.infer.pool`: one copy of each base model, adapters and their heads switched per run)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from peftlab.serve.deps import PlaygroundDep, StoreDep, find_experiment
from peftlab.serve.schemas import PlaygroundRequest

router = APIRouter(tags=["playground"])


@router.get("/api/playground/{name}/runs")
def playground_runs(name: str, store: StoreDep, playground: PlaygroundDep) -> dict[str, Any]:
    find_experiment(store, name)
    return {"experiment": name, "runs": playground.runs_for(name), "status": playground.status()}


@router.post("/api/playground")
def play(req: PlaygroundRequest, store: StoreDep, playground: PlaygroundDep) -> dict[str, Any]:
    find_experiment(store, req.experiment)
    return playground.generate(req.experiment, req.runs, req.text, req.inputs, req.max_new_tokens)
