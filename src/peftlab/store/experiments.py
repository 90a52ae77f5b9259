"""The `experiments` table: one row per experiment file (its config, YAML and base folder)."""

from __future__ import annotations

import json
import time
from typing import Any

from peftlab.store.db import Database


class ExperimentsTable(Database):
    def save_experiment(
        self, name: str, task: str, model: str, config: dict[str, Any], yaml_text: str | None, base_dir: str | None
    ) -> None:
        now = time.time()
        with self.tx() as c:
            c.execute(
                """INSERT INTO experiments(name, task, model, config_yaml, config_json, base_dir, created_at, updated_at)
                   VALUES (?,?,?,?,?,?,?,?)
                   ON CONFLICT(name) DO UPDATE SET task=excluded.task, model=excluded.model,
                     config_yaml=excluded.config_yaml, config_json=excluded.config_json,
                     base_dir=excluded.base_dir, updated_at=excluded.updated_at""",
                (name, task, model, yaml_text, json.dumps(config), base_dir, now, now),
            )

    def experiment(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM experiments WHERE name=?", (name,))
        if not rows:
            return None
        d = dict(rows[0])
        d["config"] = json.loads(d.pop("config_json"))
        return d

    def experiments(self) -> list[dict[str, Any]]:
        rows = self._query(
            """SELECT e.name, e.task, e.model, e.created_at, e.updated_at,
                      COUNT(r.id) AS runs, SUM(r.status='done') AS done
               FROM experiments e LEFT JOIN runs r ON r.experiment = e.name
               GROUP BY e.name ORDER BY e.updated_at DESC"""
        )
        return [dict(r) for r in rows]
