"""The store: SQLite database of experiments, runs, curves and logs, plus run artifacts."""

from peftlab.store.db import TERMINAL, Run, Store

__all__ = ["TERMINAL", "Run", "Store"]
