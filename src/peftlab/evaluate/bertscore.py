"""BERTScore for generation tasks, from the maintained `bert-score` package (Zhang et al., 2020).

Library and settings, stated once here and recorded with every score:

- `bert_score.BERTScorer(model_type=<local encoder folder>, num_layers=<n>, idf=False,
  rescale_with_baseline=False, batch_size=32)`. bert-score takes a local folder as
  `model_type` (it hands it to `AutoModel.from_pretrained`), so it works offline.
- Encoder: `evaluation.bertscore_model` of the experiment (a folder, or a name found on
  PEFTLAB_MODEL_PATH / shared/models), default the `all-minilm-l6-v2` folder
  (sentence-transformers/all-MiniLM-L6-v2).
- Layer: bert-score's tuned layer when it knows the model by name (its `model2layers`
  table); otherwise the encoder's last hidden layer, which is the layer a
  sentence-transformers model was trained to make similar for paraphrases.
- No idf weighting and no baseline rescaling: baselines exist only for hub model names, not
  for a local folder, so the scores are raw. Their range depends on the encoder and layer
  (with all-MiniLM-L6-v2's last layer, unrelated text scores about 5-15 and close
  paraphrases 80+; BERT-style middle layers score unrelated text 30-50): compare runs with
  each other, never with numbers computed with another encoder or layer.
- Reported as precision, recall and F1 on a 0-100 scale (like ROUGE here), the mean over
  test rows. Rows with several references take bert-score's own multi-reference rule (the
  reference with the best F1).
- Empty strings: bert-score 0.3.13 crashes on an empty candidate or reference under
  transformers 5 (its empty-sentence path calls `tokenizer.build_inputs_with_special_tokens`,
  which transformers 5 tokenizers no longer have). bert-score's documented result for an
  empty candidate or reference is 0, so those rows are scored 0 here and only non-empty
  pairs go to bert-score.

`bertscore()` scores lists of texts (what the engine can call after predicting);
`bertscore_run()` scores a stored run from its predictions.jsonl and caches the result in
the run's metrics (with the settings in `info['bertscore']`), so it is computed once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.tasks.spec import GENERATIVE_TASKS

DEFAULT_ENCODER = "all-minilm-l6-v2"
METRIC_KEYS = ("bertscore_precision", "bertscore_recall", "bertscore_f1")


def resolve_encoder(name: str | None = None, base: Path | None = None) -> Path:
    """The local folder of the BERTScore encoder (default: all-MiniLM-L6-v2)."""
    from peftlab.paths import resolve

    wanted = name or DEFAULT_ENCODER
    path = resolve(wanted, "models", base)
    if path is None or not (path / "config.json").is_file():
        raise PeftlabError(
            f"BERTScore encoder {wanted!r} not found locally (searched the experiment folder, the current folder, "
            "PEFTLAB_MODEL_PATH and shared/models); set evaluation.bertscore_model to a model folder"
        )
    return path


def default_layers(path: Path) -> int:
    """bert-score's tuned layer for models it knows by name, else the encoder's last layer."""
    from bert_score.utils import model2layers

    if path.name in model2layers:
        return int(model2layers[path.name])
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if isinstance(cfg.get(key), int):
            return int(cfg[key])
    raise PeftlabError(f"cannot tell how many layers the BERTScore encoder {path} has; pass num_layers")


def portable_name(name: str | None, path: Path) -> str:
    """The encoder as a reader elsewhere can name it: the name the experiment gave (a hub id, or a
    name found on the model path), or the folder's own name when it gave an absolute path or none.
    Never this machine's absolute path: reports show it, and they are mailed."""
    return name if name and not Path(name).expanduser().is_absolute() else path.name


def settings(path: Path, num_layers: int | None = None, name: str | None = None) -> dict[str, Any]:
    """What produced a score: recorded next to it, and the cache key (no model load needed).
    `model` is portable (`portable_name`); `model_path`, the folder used here, stays in the store."""
    import importlib.metadata as md

    layers = num_layers or default_layers(path)
    version = md.version("bert-score")
    return {
        "library": f"bert-score {version}",
        "model": portable_name(name, path),
        "model_path": str(path),
        "model_name": path.name,
        "num_layers": layers,
        "idf": False,
        "rescale_with_baseline": False,
        "key": f"{path}|L{layers}|no-idf|raw|bert-score {version}",
    }


@functools.lru_cache(maxsize=2)
def _scorer(path: str, num_layers: int) -> Any:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=path, num_layers=num_layers, idf=False, rescale_with_baseline=False,
                        batch_size=32, device="cpu" if not _cuda() else None)
    # bert-score truncates to the tokenizer's model_max_length; never let that exceed the
    # encoder's position embeddings (some tokenizer configs say 1e30).
    limit = getattr(scorer._model.config, "max_position_embeddings", None)
    if limit and scorer._tokenizer.model_max_length > limit:
        scorer._tokenizer.model_max_length = limit
    return scorer


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def bertscore(
    outputs: Sequence[str],
    references: Sequence[str | Sequence[str]],
    model: str | Path | None = None,
    num_layers: int | None = None,
    base: Path | None = None,
) -> dict[str, float]:
    """Mean BERTScore precision/recall/F1 (0-100) of `outputs` against `references`.

    `references[i]` is one string or a list of strings (multi-reference). `model` is an
    encoder folder or name (default all-MiniLM-L6-v2).
    """
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    path = Path(model) if model and Path(model).is_dir() else resolve_encoder(str(model) if model else None, base)
    layers = num_layers or default_layers(path)
    n = len(outputs)
    if n == 0:
        return dict.fromkeys(METRIC_KEYS, 0.0)
    cands: list[str] = []
    refs: list[list[str]] = []
    for out, ref in zip(outputs, references, strict=True):
        group = [ref] if isinstance(ref, str) else list(ref)
        group = [r for r in group if r.strip()]
        if out.strip() and group:  # empty candidate or no non-empty reference: 0 (see module doc)
            cands.append(out)
            refs.append(group)
    sums = [0.0, 0.0, 0.0]
    if cands:
        scorer = _scorer(str(path), layers)
        p, r, f = scorer.score(cands, refs)
        sums = [float(p.sum()), float(r.sum()), float(f.sum())]
    return {k: 100.0 * s / n for k, s in zip(METRIC_KEYS, sums, strict=True)}


def _run_encoder(run: Any, override: str | None) -> tuple[str | None, Path | None]:
    exp = (run.config or {}).get("experiment", {})
    name = override or (exp.get("evaluation") or {}).get("bertscore_model")
    base = (run.config or {}).get("base_dir")
    return name, Path(base) if base else None


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _cache_matches(cached: dict[str, Any], path: Path, num_layers: int | None) -> bool:
    """Same encoder, layer and bert-score version, decided without importing bert-score (slow)."""
    import importlib.metadata as md

    # records made before `model_path` kept the absolute path under `model`
    return (cached.get("model_path", cached.get("model")) == str(path) and cached.get("library") == f"bert-score {md.version('bert-score')}"
            and (num_layers is None or cached.get("num_layers") == num_layers))


def bertscore_run(store: Any, run: Any, model: str | None = None, num_layers: int | None = None,
                  force: bool = False) -> dict[str, float] | None:
    """BERTScore of a finished generation run, computed from its predictions.jsonl once.

    The scores are merged into the run's metrics and the settings into info['bertscore'];
    a later call with the same encoder and layer reads them back instead of recomputing.
    Returns None for runs it does not apply to (not done, not generation, no predictions).
    """
    task = ((run.config or {}).get("experiment") or {}).get("task")
    info = run.info or {}
    pred_path = run.file("predictions")
    if run.status != "done" or task not in GENERATIVE_TASKS or pred_path is None or not pred_path.is_file():
        return None
    name, base = _run_encoder(run, model)
    path = resolve_encoder(name, base)
    metrics = dict(run.metrics or {})
    cached = info.get("bertscore") or {}
    have = all(k in metrics for k in METRIC_KEYS)
    if not force and have and _cache_matches(cached, path, num_layers):
        if "model_path" not in cached:  # an older record: name the encoder portably, keep the scores
            new_info = {**info, "bertscore": {**cached, "model": portable_name(name, path), "model_path": str(path)}}
            store.update(run.id, info=new_info)
            run.info = new_info
        return {k: metrics[k] for k in METRIC_KEYS}
    how = settings(path, num_layers, name)
    if not force and have and cached.get("key") == how["key"]:
        return {k: metrics[k] for k in METRIC_KEYS}
    preds = read_predictions(pred_path)
    scores = bertscore([p.get("output") or "" for p in preds], [p.get("reference") or "" for p in preds],
                       path, how["num_layers"])
    metrics.update(scores)
    new_info = {**info, "bertscore": {**how, "examples": len(preds)}}
    store.update(run.id, metrics=metrics, info=new_info)
    run.metrics, run.info = metrics, new_info
    return scores
