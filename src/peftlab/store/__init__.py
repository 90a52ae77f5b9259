"""The store: SQLite database of experiments, runs, curves, logs and data sets, plus run artifacts.

Every SQL statement of peftlab lives in this package, one module per table:
    db.py           the connection, the schema, transactions, safe artifact paths
    runs.py         runs and their state transitions (claim, finish, interrupt, cancel, requeue)
    experiments.py  experiments
    curves.py       curves and logs
    datasets.py     the web service's data sets
    manage.py       deleting runs and experiments (with their folders), renaming experiments

    from peftlab.store import Store, Run
"""

from peftlab.store.curves import CurvesTable
from peftlab.store.datasets import DatasetsTable
from peftlab.store.experiments import ExperimentsTable
from peftlab.store.manage import ManageError, ManageTable
from peftlab.store.runs import TERMINAL, Run, RunsTable, pid_alive


class Store(ExperimentsTable, RunsTable, CurvesTable, DatasetsTable, ManageTable):
    """One store folder: `Store(root)` opens (and creates) it; every table's methods are here."""


__all__ = ["TERMINAL", "ManageError", "Run", "Store", "pid_alive"]
