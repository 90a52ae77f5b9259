"""Inference on finished runs, without HTTP: the engine behind the web service's playground and
export, and behind whatever else serves a run (an OpenAI-compatible endpoint, `peftlab predict`).

    loading.py     a run's base model, adapter folder and type, inputs formatted as in training
    playground.py  Playground: one base model in memory, adapters loaded into it and switched
                   per request
    export.py      an adapter as a zip; merge an adapter into its base, checked on probe inputs

    from peftlab.infer.playground import Playground
    from peftlab.infer import export        # export.merge(store, run, out), export.adapter_zip(store, run)

Loading a whole finished run (base + adapter, merged as the test evaluation did) is
`peftlab.models.trained.load_trained`.
"""
