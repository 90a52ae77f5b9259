"""How metrics are computed: which library and settings produce each number in the report.

The prose is kept here as plain text, one list item per metric (markup allowed), grouped by
the tasks it applies to; only the BERTScore item is filled in, with the encoder each run was
scored with. Say how a new metric is computed here, next to where its library says it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftlab.report.collect import ReportData
from peftlab.report.sections.common import esc, note, section

ID, TITLE = "metrics", "How metrics are computed"

GENERATION = (
    "<b>ROUGE-1/2/L</b> (precision, recall, F1): Google's <code>rouge-score</code>, Porter stemmer on, default "
    "tokenizer; multi-reference rows take the best reference; mean over test rows, 0-100.",
    "<b>BLEU</b>: <code>sacrebleu</code> corpus BLEU, 13a tokenizer, exp smoothing (sacrebleu defaults), "
    "multi-reference where rows have several references, 0-100.",
)
BERTSCORE = (
    "<b>BERTScore</b> (precision, recall, F1): <code>{library}</code> with encoder <code>{model}</code>, layer "
    "{layers}, no idf weighting, no baseline rescaling (raw scores: compare runs with each other, not with published "
    "numbers); empty outputs score 0; mean over test rows, 0-100. Runs: {runs}."
)
BERTSCORE_MIXED = ("<b>Warning</b>: runs were scored with different BERTScore encoders or layers; their BERTScores "
                   "are not comparable.")
BERTSCORE_NONE = "<b>BERTScore</b>: not computed for this report."
GENERATION_AFTER = (
    "<b>Per-row RL</b> in the outputs table: ROUGE-L F1 of that output (rouge-score, stemmer on).",
    "<b>Generation health</b>: peftlab's own counts (<code>peftlab.evaluate.health</code>).",
)
CLASSIFICATION = (
    "<b>Accuracy, macro-F1, per-class precision/recall/F1</b>: scikit-learn, 0-100.",
    "<b>Confusion matrices</b>: <code>sklearn.metrics.confusion_matrix</code> of the predicted and true label ids in "
    "each run's predictions.jsonl.",
)
EVERY_TASK = (
    "<b>Test loss</b> (eval_loss): mean cross-entropy on the test split, weighted by target tokens (generation) or "
    "examples (classification).",
    "<b>Costs</b>: trainable parameters from the wrapped model, peak memory of the run (peak resident memory of its "
    "process on CPU, peak allocated memory on CUDA), wall time of training and evaluation, size on disk of the saved "
    "adapter (or full model).",
    "<b>Pareto frontier</b>: a run is on it when no other run has a higher main metric at a lower or equal cost.",
)


@dataclass
class Encoder:
    library: str
    model: str
    layers: str
    runs: list[str]


@dataclass
class MetricsView:
    generative: bool
    classification: bool
    encoders: list[Encoder] = field(default_factory=list)  # BERTScore settings, with the runs scored so
    problems: list[str] = field(default_factory=list)  # what went wrong while scoring (shown as errors)


def view(data: ReportData, problems: list[str]) -> MetricsView:
    enc: dict[tuple[str, str, str], list[str]] = {}
    for v in data.runs:
        b = (v.run.info or {}).get("bertscore")
        if b:
            enc.setdefault((str(b.get("library")), str(b.get("model")), str(b.get("num_layers"))), []).append(v.label)
    return MetricsView(data.generative, data.classification,
                       [Encoder(lib, model, layers, labels) for (lib, model, layers), labels in enc.items()],
                       list(problems))


def items(m: MetricsView) -> list[str]:
    """The list items (markup) that apply to this report."""
    out: list[str] = []
    if m.generative:
        out += GENERATION
        out += [BERTSCORE.format(library=esc(e.library), model=esc(e.model), layers=esc(e.layers),
                                 runs=esc(", ".join(e.runs))) for e in m.encoders]
        if len(m.encoders) > 1:
            out.append(BERTSCORE_MIXED)
        elif not m.encoders:
            out.append(BERTSCORE_NONE)
        out += GENERATION_AFTER
    if m.classification:
        out += CLASSIFICATION
    return out + list(EVERY_TASK)


def render(m: MetricsView) -> str:
    lis = "".join(f"<li>{i}</li>" for i in items(m))
    probs = "".join(note(esc(p), "err") for p in m.problems)
    return section(ID, "How metrics are computed", f"<ul>{lis}</ul>{probs}")
