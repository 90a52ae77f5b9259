"""`peftlab serve`: the fine-tuning service (datasets, experiments, jobs, results, playground, export,
and an OpenAI-compatible API over the finished runs).

HTTP only: the app factory (app.py), one router per resource (routers/), the request models
(schemas.py), the dependencies routers get from the app (deps.py), auth, download tickets and
the upload limit (security.py), and the pages (static/). An endpoint goes into its router;
what it calls is engine code elsewhere: run-state SQL in `peftlab.store`, queue policy and
the scheduler in `peftlab.queue`, the playground, the serving engine and export in `peftlab.infer`.

The web service works on the same store as the CLI. Runs are queued in the store and
executed by worker processes (`python -m peftlab.train.worker STORE RUN_ID`) that the
scheduler (`peftlab.queue.scheduler`) starts, never inside a web request.
"""
