"""One APIRouter per resource; a new endpoint goes into its resource's module (OpenAPI tag):

    service.py      the page, /api/health, /api/config, /api/tickets          (service)
    datasets.py     uploads, server-side files, column mapping                  (datasets)
    experiments.py  models, methods, estimate, create and read experiments      (experiments)
    results.py      leaderboard, HTML report, outputs, curves of an experiment  (results)
    runs.py         the jobs: list, detail, logs, curves, cancel, retry, worker (jobs)
    playground.py   the outputs of several runs side by side                    (playground)
    export.py       adapter zip, merged model (checked), merged zip             (export)
    openai.py       /v1/models, /v1/chat/completions, /v1/completions           (openai)

Routers hold HTTP only: they get the store, scheduler, playground, data sets and settings
through `peftlab.serve.deps`, call the engine (store, queue, infer, train), and let errors
through to the one status table in `peftlab.serve.app`.
"""

from peftlab.serve.routers import datasets, experiments, export, openai, playground, results, runs, service

ROUTERS = [r.router for r in (service, datasets, experiments, results, runs, playground, export, openai)]
