"""The data sets table (`serve_datasets`): the web service's uploads and server-side files,
their split files, column mapping and intake notes. Looked up by id (its primary key).

What a file holds (columns, problems, a mapping guess) is `peftlab.data.analyze`; taking a
file in (checks, safe names, allowed folders) is `peftlab.store.intake`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from peftlab.store.db import Database


def _public(r: Any) -> dict[str, Any]:
    return {"id": r["id"], "name": r["name"], "origin": r["origin"],
            "files": {"train": r["train"], "validation": r["validation"], "test": r["test"]},
            "mapping": json.loads(r["mapping_json"] or "{}"), "info": json.loads(r["info_json"]),
            "created_at": r["created_at"]}


class DatasetsTable(Database):
    @property
    def uploads(self) -> Path:
        """Where uploaded files are kept: uploads/<id>/ (uploads/.incoming/ while checked)."""
        return self.root / "uploads"

    def save_dataset(self, ds_id: str, name: str, origin: str, files: dict[str, str | None],
                     mapping: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        with self.tx() as c:
            c.execute(
                """INSERT INTO serve_datasets(id, name, origin, train, validation, test, mapping_json, info_json,
                   created_at) VALUES (?,?,?,?,?,?,?,?,?)""",
                (ds_id, name[:200], origin, files["train"], files["validation"], files["test"],
                 json.dumps(mapping), json.dumps(info), time.time()),
            )
        out = self.dataset(ds_id)
        assert out is not None
        return out

    def dataset(self, ds_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM serve_datasets WHERE id=?", (ds_id,))
        return _public(rows[0]) if rows else None

    def datasets(self) -> list[dict[str, Any]]:
        return [_public(r) for r in self._query("SELECT * FROM serve_datasets ORDER BY created_at DESC")]

    def set_dataset_mapping(self, ds_id: str, mapping: dict[str, Any]) -> bool:
        with self.tx() as c:
            return c.execute("UPDATE serve_datasets SET mapping_json=? WHERE id=?",
                             (json.dumps(mapping), ds_id)).rowcount > 0

    def rename_dataset(self, ds_id: str, name: str) -> str | None:
        """Give the data set `name`; returns the id of another data set that has that name
        already (nothing is changed then), else None."""
        with self.tx() as c:
            clash = c.execute("SELECT id FROM serve_datasets WHERE name=? AND id<>?", (name, ds_id)).fetchone()
            if clash:
                return str(clash[0])
            c.execute("UPDATE serve_datasets SET name=? WHERE id=?", (name, ds_id))
            return None

    def delete_dataset(self, ds_id: str) -> bool:
        with self.tx() as c:
            return c.execute("DELETE FROM serve_datasets WHERE id=?", (ds_id,)).rowcount > 0
