"""A damaged tuning journal (#30): a torn last record is moved aside and the complete records
kept; damage elsewhere is refused with a message naming the file; a rerun never appends onto a
partial line; the store's runs are never touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftlab.config.schema import TuningConfig
from peftlab.tune.journal import JournalError
from peftlab.tune.space import Param
from peftlab.tune.study import JOURNAL, open_study

SPACE = {"learning_rate": Param("learning_rate", low=1e-5, high=1e-2, log=True)}
TUNING = TuningConfig(trials=4, seed=1)


def _study(root: Path, said: list[str] | None = None):  # noqa: ANN202 - an optuna Study
    return open_study(root, "exp/lora/abc", TUNING, maximize=True, echo=(said.append if said is not None else None))


def _trials(root: Path, n: int, said: list[str] | None = None) -> list:
    study = _study(root, said)
    while len([t for t in study.trials if t.state.is_finished()]) < n:
        running = [t for t in study.trials if not t.state.is_finished()]
        number = running[0].number if running else study.ask({k: p.distribution() for k, p in SPACE.items()}).number
        study.tell(number, float(number))
    return study.trials


def _all_records_good(path: Path) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    for line in data.splitlines():
        assert "op_code" in json.loads(line.decode("utf-8"))


def test_a_torn_last_record_is_set_aside_and_the_study_goes_on(tmp_path: Path) -> None:
    _trials(tmp_path, 2)
    journal = tmp_path / JOURNAL
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-7])  # the last record cut short by a crash
    said: list[str] = []
    trials = _trials(tmp_path, 4, said)  # the rerun: no traceback, and it appends onto a whole line
    assert len(said) == 1 and "cut short or damaged" in said[0] and "tuning.journal.damaged" in said[0]
    aside = tmp_path / (JOURNAL + ".damaged")
    assert aside.read_bytes() == whole[whole.rstrip(b"\n").rfind(b"\n") + 1:-7] + b"\n"
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and all(t.state.is_finished() for t in trials)
    _all_records_good(journal)
    again: list[str] = []
    assert len(_trials(tmp_path, 4, again)) == 4 and again == []  # a third run reads it cleanly


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00 not utf-8\n", b'{"op_code": 5, "worker_id": \n', b"\x00" * 64])
def test_garbage_at_the_end_is_set_aside(tmp_path: Path, garbage: bytes) -> None:
    _trials(tmp_path, 2)
    journal = tmp_path / JOURNAL
    good = journal.read_bytes()
    journal.write_bytes(good + garbage)
    said: list[str] = []
    assert len(_trials(tmp_path, 3, said)) == 3 and len(said) == 1
    assert journal.read_bytes().startswith(good)
    _all_records_good(journal)


def test_a_journal_damaged_in_the_middle_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    _trials(tmp_path, 2)
    journal = tmp_path / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    # what the old writer left: a torn record with the next run's record appended onto it
    broken = b"".join(lines[:3]) + lines[3][:20] + b"".join(lines[3:])
    journal.write_bytes(broken)
    with pytest.raises(JournalError) as err:
        _study(tmp_path)
    msg = str(err.value)
    assert str(journal) in msg and "line 4 of" in msg and f"mv {journal}" in msg and "finished runs" in msg
    assert journal.read_bytes() == broken and not (tmp_path / (JOURNAL + ".damaged")).exists()


def test_a_record_torn_after_the_check_is_set_aside_before_the_next_append(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask({k: p.distribution() for k, p in SPACE.items()})
    journal = tmp_path / JOURNAL
    with open(journal, "ab") as f:  # another process died mid-append since the journal was opened
        f.write(b'{"op_code":6,"worker_id":"x","trial_id"')
    study.tell(trial.number, 1.0)
    _all_records_good(journal)
    assert [t.state.is_finished() for t in _study(tmp_path).trials] == [True]


def test_peftlab_run_refuses_a_damaged_journal_without_a_traceback(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from conftest import STORIES, tiny_causal, write_experiment

    if not STORIES.is_dir():
        pytest.skip("../shared/models not present")
    from peftlab.cli import main
    from peftlab.store import Store

    store = tmp_path / "store"
    store.mkdir()
    (store / JOURNAL).write_bytes(b'{"op_code":0,"worker_id":"a","study_name":"x","directions":[1]}\n'
                                  b"\xff\xfe garbage\n" b'{"op_code":0,"worker_id":"a","study_name":"y","directions":[1]}\n')
    body = tiny_causal(["lora"], max_steps=2)
    body["data"]["max_validation_examples"] = 12
    body["tuning"] = {"trials": 1}
    assert main(["--store", str(store), "run", str(write_experiment(tmp_path, body))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"error: {store / JOURNAL}: the tuning journal is damaged at line 2" in err
    assert [r.status for r in Store(store).runs("tiny")] == []  # nothing ran, nothing was changed
