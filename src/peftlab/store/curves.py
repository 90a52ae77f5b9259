"""The `curves` and `logs` tables: a run's logged values per step and its log messages."""

from __future__ import annotations

import time
from typing import Any

from peftlab.store.db import Database


class CurvesTable(Database):
    def log_points(self, run_id: int, step: int, values: dict[str, float]) -> None:
        """Values at one step; also the run's heartbeat (it is alive)."""
        with self.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO curves(run_id, step, name, value) VALUES (?,?,?,?)",
                [(run_id, step, k, float(v)) for k, v in values.items()],
            )
            c.execute("UPDATE runs SET heartbeat=? WHERE id=?", (time.time(), run_id))

    def curves(self, run_id: int) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for r in self._query("SELECT step, name, value FROM curves WHERE run_id=? ORDER BY step", (run_id,)):
            out.setdefault(r["name"], []).append((r["step"], r["value"]))
        return out

    def log(self, run_id: int, message: str, level: str = "info", ts: float | None = None) -> None:
        """A log message; `ts`: when it was said (a remote worker's message, replayed later)."""
        with self.tx() as c:
            c.execute("INSERT INTO logs(run_id, ts, level, message) VALUES (?,?,?,?)",
                      (run_id, time.time() if ts is None else ts, level, message))

    def logs(self, run_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT ts, level, message FROM logs WHERE run_id=? ORDER BY ts", (run_id,))]
