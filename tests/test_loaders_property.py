"""Property-based tests: generated (often malformed) files thrown at the data loaders.

`read_rows` and `prepare_data` must either load a file correctly or fail with the documented
error types (DataError for the data, ConfigError for a data.* setting), never with an
unrelated exception. Example counts are modest: the whole module runs in well under a minute.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftlab.config.schema import DataConfig
from peftlab.data.prepare import prepare_data, template_fields
from peftlab.data.sources import read_rows
from peftlab.errors import ConfigError, DataError

# The autouse fixture in conftest only sets environment variables, so it is safe to share
# across generated examples.
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
_counter = itertools.count()

# Keys the data configs below use, so generated rows sometimes have the right columns.
KEYS = st.sampled_from(["text", "label", "target", "image", "tex", "Label", "__line__", "", "a b", "ü"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["pos", "neg", "neu", " ", ""]),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=8)


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


LINES = st.one_of(
    st.dictionaries(KEYS, JSON_VALUES, max_size=5).map(_dump),   # objects, right or wrong columns
    JSON_VALUES.map(_dump),                                      # any JSON value (arrays, strings, ...)
    st.text(max_size=40),                                        # not JSON at all
    st.sampled_from(['{"text": "a", "label": "pos"', '{"text": "\\ud800", "label": "pos"}', "[" * 3000,
                     '{"text": NaN, "label": Infinity}', "\ufeff{}", '{"text": "x", "label": "pos"}']),
)
RAW_LINES = st.one_of(LINES.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=40))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


def _write(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"f{next(_counter)}{suffix}"
    path.write_bytes(data)
    return path


def _expect_documented(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run the loader; a documented error is fine, anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except (DataError, ConfigError) as e:
        assert str(e).strip()
        return None


def _configs(path: Path) -> list[tuple[str, DataConfig]]:
    base = {"train": str(path)}
    return [
        ("causal-lm", DataConfig(**base, prompt="Q: {text}\nA:", target="target")),
        ("seq2seq", DataConfig(**base, input="text", target="label", on_bad_rows="skip")),
        ("classification", DataConfig(**base, input=["text", "target"], label="label")),
        ("classification", DataConfig(**base, input="text", label="label", on_bad_rows="skip")),
        ("image-classification", DataConfig(**base, image="image", label="label", on_bad_rows="skip")),
    ]


def _check_prepared(path: Path) -> None:
    for task, cfg in _configs(path):
        data = _expect_documented(prepare_data, cfg, task, 0, path.parent)
        if data is None:
            continue
        assert data.train and data.validation and data.test
        for ex in (*data.train, *data.validation, *data.test):
            if task in ("causal-lm", "seq2seq"):
                assert ex.target and ex.target.strip() and ex.references
            else:
                assert isinstance(ex.label, int) and 0 <= ex.label < len(data.labels or [])
            assert isinstance(ex.source, str)
            ex.source.encode("utf-8")  # text a tokenizer can take: no lone surrogates


@SETTINGS
@given(lines=st.lists(RAW_LINES, max_size=12), crlf=st.booleans(), mode=st.sampled_from(["error", "skip"]))
def test_jsonl(folder: Path, lines: list[bytes], crlf: bool, mode: str) -> None:
    path = _write(folder, ".jsonl", (b"\r\n" if crlf else b"\n").join(lines))
    rs = _expect_documented(read_rows, str(path), None, mode)
    if rs is not None:
        raw = path.read_bytes()
        raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
        nonblank = sum(1 for x in raw.split(b"\n") if x.strip())
        assert len(rs.rows) + len(rs.skipped) == nonblank
        assert all(isinstance(r, dict) and isinstance(r["__line__"], int) for r in rs.rows)
        if mode == "error":
            assert not rs.skipped
    _check_prepared(path)


@SETTINGS
@given(header=st.lists(KEYS, min_size=0, max_size=4),
       rows=st.lists(st.lists(st.text(max_size=12), max_size=5), max_size=10),
       corrupt=st.one_of(st.none(), st.binary(min_size=1, max_size=8)), where=st.integers(0, 200),
       mode=st.sampled_from(["error", "skip"]))
def test_csv(folder: Path, header: list[str], rows: list[list[str]], corrupt: bytes | None, where: int,
             mode: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8", "surrogatepass")
    if corrupt is not None:
        at = where % (len(data) + 1)
        data = data[:at] + corrupt + data[at:]
    path = _write(folder, ".csv", data)
    rs = _expect_documented(read_rows, str(path), None, mode)
    if rs is not None:
        for r in rs.rows:
            assert set(r) - {"__line__"} == {h.strip() for h in header} - {"__line__"}
    _check_prepared(path)


@SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".parquet", ".jsonl", ".json", ".csv", ".pq"]))
def test_random_bytes(folder: Path, data: bytes, suffix: str) -> None:
    path = _write(folder, suffix, data)
    _expect_documented(read_rows, str(path), None, "skip")
    _check_prepared(path)


def _parquet_bytes(columns: dict[str, list[Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


PARQUET_COLUMNS = st.dictionaries(
    st.sampled_from(["text", "label", "target", "image", "other"]),
    st.one_of(st.lists(st.one_of(st.none(), st.text(max_size=10)), min_size=4, max_size=4),
              st.lists(st.one_of(st.none(), st.integers(-3, 3)), min_size=4, max_size=4),
              st.lists(st.floats(allow_nan=True), min_size=4, max_size=4)),
    min_size=1, max_size=4,
)


@SETTINGS
@given(columns=PARQUET_COLUMNS, cut=st.integers(0, 2000), flip=st.one_of(st.none(), st.integers(0, 2000)))
def test_parquet(folder: Path, columns: dict[str, list[Any]], cut: int, flip: int | None) -> None:
    data = _parquet_bytes(columns)
    intact = cut >= len(data) and flip is None
    if flip is not None:
        i = flip % len(data)
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    data = data[:cut] if cut < len(data) else data
    path = _write(folder, ".parquet", data)
    rs = _expect_documented(read_rows, str(path))
    if intact:  # an undamaged file always loads, every row and column
        assert rs is not None and len(rs.rows) == 4
        assert all(set(r) == {*columns, "__line__"} for r in rs.rows)
    _check_prepared(path)


@SETTINGS
@given(values=st.lists(st.one_of(
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=40),
    st.sampled_from(["data:image/png;base64", "data:", "x.png", "../../etc/passwd.png", "a" * 300 + ".png",
                     base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30).decode()]),
), min_size=1, max_size=8))
def test_images(folder: Path, values: list[str]) -> None:
    from PIL import Image

    good = io.BytesIO()
    Image.new("L", (4, 4), 128).save(good, format="PNG")
    good_b64 = base64.b64encode(good.getvalue()).decode()
    rows = [{"image": good_b64, "label": i % 2} for i in range(6)] + [{"image": v, "label": 0} for v in values]
    path = _write(folder, ".jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    cfg = DataConfig(train=str(path), image="image", label="label", on_bad_rows="skip")
    data = _expect_documented(prepare_data, cfg, "image-classification", 0, folder)
    assert data is not None  # the six good rows always load; bad images are skipped and listed
    n = len(data.train) + len(data.validation) + len(data.test)
    assert n + len(data.skipped) == len(rows)
    cfg = DataConfig(train=str(path), image="image", label="label", on_bad_rows="error")
    _expect_documented(prepare_data, cfg, "image-classification", 0, folder)


@SETTINGS
@given(template=st.text(alphabet=st.sampled_from(list("{}!:.[]0ab tx")), max_size=16))
def test_prompt_templates(folder: Path, template: str) -> None:
    rows = [{"text": f"t{i}", "a": i, "target": "y"} for i in range(10)]
    path = _write(folder, ".jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    if not template:
        return
    fields = _expect_documented(template_fields, template)
    cfg = DataConfig(train=str(path), prompt=template, target="target")
    data = _expect_documented(prepare_data, cfg, "causal-lm", 0, folder)
    if data is not None:
        assert fields is not None and set(fields) <= {"text", "a", "target"}
        assert all(isinstance(e.source, str) for e in data.train)
