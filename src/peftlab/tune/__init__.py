"""Equal-budget tuning and seeds: which runs an experiment makes (`plan.py`), each method's search
space (`space.py`), the Optuna studies kept in the store (`study.py`), the tuning phase
(`driver.py`) and its cost before launch (`estimate.py`). The statistics over the resulting runs
are `peftlab.stats` and `peftlab.report.significance`."""
