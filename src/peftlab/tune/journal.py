"""The tuning journal (`STORE/tuning.journal`, Optuna's append-only journal file) checked before
it is used, and written so that a torn record cannot spoil the records after it.

A crash or a full disk can cut the last record short (no newline, half a JSON object) or leave
garbage at the end. Optuna's reader skips a bad last line, but its writer appends the next record
onto it, so the line becomes a bad record in the middle of the file, and every later read fails
with a traceback (JSONDecodeError, UnicodeDecodeError) on every later `--tune` run of the store.

- A damaged last line (the only damage a torn append can leave: one write of whole records,
  the last of them cut short) is moved aside to `tuning.journal.damaged`, the complete records
  before it are kept, and the user is told.
- Damage anywhere else (a bad line with good records after it, several bad lines at the end) is
  refused with a PeftlabError naming the file and what to do; nothing is changed.
- Every append first makes sure the file ends with a whole line (under the journal's lock), so a
  record torn by another process since the check is moved aside before anything is appended.

The store's runs (SQLite) are never touched: a trial whose record was lost is asked again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError

log = logging.getLogger("peftlab.tune")
DAMAGED_SUFFIX = ".damaged"


class JournalError(PeftlabError):
    """The tuning journal is damaged where it cannot be repaired without losing what follows."""


def _good(line: bytes) -> bool:
    if not line.endswith(b"\n"):
        return False
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(rec, dict) and "op_code" in rec


def _set_aside(path: Path, keep: int, tail: bytes) -> str:
    """Move the bytes after `keep` to `<path>.damaged` (appended, so earlier damage is kept too)
    and cut the journal there. Returns what was done, for the user."""
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    with open(aside, "ab") as f:
        f.write(tail if tail.endswith(b"\n") else tail + b"\n")
        f.flush()
        os.fsync(f.fileno())
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    msg = (f"{path}: its last record was cut short or damaged ({len(tail)} bytes, a crash or a full disk); "
           f"moved it to {aside} and kept the complete records before it (a trial it recorded is asked again)")
    log.warning(msg)
    return msg


def repair(path: Path) -> str | None:
    """Check the journal; move a damaged last line aside (returning what was done) or raise
    JournalError for damage elsewhere. Call with the journal's lock held."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    bad = [i for i, ln in enumerate(lines) if not _good(ln)]
    if not bad:
        return None
    if bad == [len(lines) - 1]:
        keep = len(data) - len(lines[-1])
        return _set_aside(path, keep, lines[-1])
    first = bad[0]
    where = f"line {first + 1} of {len(lines)}"
    raise JournalError(
        f"{path}: the tuning journal is damaged at {where} ({len(bad)} damaged line(s), not only a torn last "
        "record), so the tuning studies in it cannot be read. Your finished runs are not affected. To tune "
        f"again, move the journal aside (mv {path} {path}.old): the studies then start afresh and their "
        "trials run again")


def _ends_whole(path: Path) -> str | None:
    """Before an append: a last line without its newline (torn since the check) is set aside."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        data = f.read()
    keep = data.rfind(b"\n") + 1
    return _set_aside(path, keep, data[keep:])


def open_storage(path: Path, echo: Callable[[str], Any] | None = None) -> Any:
    """Optuna's JournalStorage on `path`, checked (and repaired) first; `echo` says a repair."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    class CheckedJournalFile(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with get_lock_file(self._lock):
                said = _ends_whole(Path(self._file_path))
                if said and echo:
                    echo(f"warning: {said}")
                text = "\n".join(json.dumps(x, separators=(",", ":")) for x in logs) + "\n"
                with open(self._file_path, "ab") as f:
                    f.write(text.encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())

    lock = JournalFileSymlinkLock(str(path))
    if path.is_file():
        with get_lock_file(lock):
            said = repair(path)
        if said and echo:
            echo(f"warning: {said}")
    return JournalStorage(CheckedJournalFile(str(path), lock_obj=lock))
