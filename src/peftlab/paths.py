"""Resolve model and data names to local paths at run time.

Search order for a relative name: as given (relative to the experiment file, then the
current directory), then each folder on PEFTLAB_MODEL_PATH / PEFTLAB_DATA_PATH
(colon-separated), then `shared/models` / `shared/data` in the current directory or any
parent, and beside any parent (the layout of a checkout with `../shared` next to it).
Nothing is copied: the files stay where they are.
"""

from __future__ import annotations

import os
from pathlib import Path


def _shared_dirs(kind: str, start: Path) -> list[Path]:
    out = []
    for d in [start, *start.parents]:
        for cand in (d / "shared" / kind, d.parent / "shared" / kind):
            if cand.is_dir() and cand not in out:
                out.append(cand)
    return out


def search_dirs(kind: str, base: Path | None = None) -> list[Path]:
    """Folders searched for `kind` ('models' or 'data')."""
    env = os.environ.get(f"PEFTLAB_{kind.upper().rstrip('S')}_PATH", "")
    dirs = [Path(p) for p in env.split(os.pathsep) if p]
    for start in filter(None, [base, Path.cwd()]):
        dirs += [d for d in _shared_dirs(kind, start.resolve()) if d not in dirs]
    return dirs


def resolve(name: str, kind: str, base: Path | None = None) -> Path | None:
    """Return the local path for `name`, or None if it is not found locally."""
    p = Path(name).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for root in filter(None, [base, Path.cwd()]):
        if (root / p).exists():
            return (root / p).resolve()
    for d in search_dirs(kind, base):
        if (d / p).exists():
            return (d / p).resolve()
    return None
