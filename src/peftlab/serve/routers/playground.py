"""The playground: one input, the outputs of several runs side by side, each what the run's own
test evaluation answers (the engine is `peftlab.infer.playground.Playground` on the model pool
`peftlab.infer.pool`: one copy of each base model, adapters and their heads switched per run)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from peftlab.errors import PeftlabError
from peftlab.serve.deps import EngineDep, PlaygroundDep, StoreDep, find_experiment
from peftlab.serve.schemas import PlaygroundRequest

router = APIRouter(tags=["playground"])


@router.get("/api/playground/{name}/runs")
def playground_runs(name: str, store: StoreDep, playground: PlaygroundDep) -> dict[str, Any]:
    find_experiment(store, name)
    return {"experiment": name, "runs": playground.runs_for(name), "chat": playground.chat(name),
            "status": playground.status()}


@router.post("/api/playground")
def play(req: PlaygroundRequest, store: StoreDep, playground: PlaygroundDep, engine: EngineDep) -> dict[str, Any]:
    """Greedy (as each run's test evaluation) or beam search through the runs' tasks; sampling and
    conversations through the serving engine."""
    find_experiment(store, req.experiment)
    if req.messages is None and not (req.text or "").strip() and not any(
            str(v if v is not None else "").strip() for v in (req.inputs or {}).values()):
        raise PeftlabError("The input is empty: type the text the runs should answer (the value of the input "
                           "column, or of each input column)")
    sampled = bool(req.do_sample) and (req.temperature or 0) > 0
    if sampled and (req.num_beams or 1) > 1:
        raise PeftlabError("Sampling (a temperature above 0) and beam search (Beams above 1) do not combine: set "
                           "Temperature to 0 or Beams to 1")
    if req.messages is not None and (req.num_beams or 1) > 1:
        raise PeftlabError("A conversation is answered greedily or sampled, not with beam search: set Beams to 1")
    if sampled or req.messages is not None:
        messages = ({run: [t.model_dump() for t in turns] for run, turns in req.messages.items()}
                    if req.messages is not None else None)
        return playground.sample(engine, req.experiment, req.runs, text=req.text, inputs=req.inputs,
                                 messages=messages, max_new_tokens=req.max_new_tokens,
                                 temperature=req.temperature if sampled else 0.0,
                                 top_p=req.top_p or 1.0, seed=req.seed)
    return playground.generate(req.experiment, req.runs, req.text, req.inputs, req.max_new_tokens, req.num_beams)
