"""Data files whose shape or values would silently mislead: numeric labels written two ways, JSON
in the wrong layout, prompt placeholders that allocate, files that decode to far more than they
weigh. Each is caught before any model loads, with what to do about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftlab.config.schema import DataConfig
from peftlab.data.prepare import prepare_data, template_fields
from peftlab.data.sources import ReadLimits, read_rows
from peftlab.errors import ConfigError, DataError


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_numeric_labels_written_two_ways_are_one_class(tmp_path: Path) -> None:
    rows = [{"text": f"row {i}", "label": v} for i, v in enumerate([0, 1, 0.0, 1.0, 1, 0, "1", "0.0"] * 3)]
    f = _jsonl(tmp_path / "d.jsonl", rows)
    data = prepare_data(DataConfig(train=str(f), input="text", label="label"), "classification")
    assert data.labels == ["0", "1"]
    assert {e.label for e in data.train + data.validation + data.test} <= {0, 1}
    assert any("merged into one class" in n and "1 and 1.0" in n for n in data.notes), data.notes
    assert any(n.startswith("2 classes: 0, 1") for n in data.notes)


def test_text_labels_keep_their_text(tmp_path: Path) -> None:
    rows = [{"text": f"row {i}", "label": v} for i, v in enumerate(["pos", "neg", "1", "1.0"] * 4)]
    f = _jsonl(tmp_path / "d.jsonl", rows)
    data = prepare_data(DataConfig(train=str(f), input="text", label="label"), "classification")
    assert data.labels == ["1", "1.0", "neg", "pos"]  # a text column: "1" and "1.0" are different strings


@pytest.mark.parametrize(("name", "body", "says"), [
    ("array.jsonl", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}], indent=2),
     "one JSON array spread over several lines"),
    ("wrapped.json", json.dumps({"version": 1, "data": [{"text": "a", "label": 1}] * 3}, indent=2),
     "key 'data' holds a list of 3 items"),
    ("object.jsonl", json.dumps({"text": "a", "label": 1}, indent=2), "one JSON object spread over several lines"),
])
def test_json_in_the_wrong_layout_is_named(tmp_path: Path, name: str, body: str, says: str) -> None:
    f = tmp_path / name
    f.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=says) as e:
        read_rows(str(f), on_bad_rows="skip")  # skipping would have dropped every line
    assert str(f) in str(e.value) and "on_bad_rows" not in str(e.value)


@pytest.mark.parametrize("template", ["T: {t:>300000000}", "T: {t!r}", "T: {t!s:^9}"])
def test_placeholders_with_format_specs_are_refused(template: str) -> None:
    with pytest.raises(ConfigError, match="plain \\{column\\} placeholders"):
        template_fields(template)


def test_parquet_bomb_is_refused_from_its_footer(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"text": ["same text"] * 1_000_000, "label": [0] * 1_000_000}), f, compression="zstd")
    assert f.stat().st_size < 200_000  # small on the wire
    with pytest.raises(DataError, match="1,000,000 rows, more than the 100,000"):
        read_rows(str(f), limits=ReadLimits(max_rows=100_000))
    with pytest.raises(DataError, match="2,000,000 values, more than the 1,000,000"):
        read_rows(str(f), limits=ReadLimits(max_cells=1_000_000))
    small = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), small)
    assert len(read_rows(str(small), limits=ReadLimits(max_rows=10, max_cells=100)).rows) == 2
