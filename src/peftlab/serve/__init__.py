"""`peftlab serve`: the fine-tuning service (datasets, experiments, jobs, results, playground, export).

The web service works on the same store as the CLI. Runs are queued in the store and
executed by worker processes (`python -m peftlab.train.worker STORE RUN_ID`) that a
scheduler (`peftlab.queue.scheduler`) starts, never inside a web request.
"""
