"""Inference on finished runs, without HTTP: the engine behind the web service's playground and
export, and behind whatever else serves a run (an OpenAI-compatible endpoint, `peftlab predict`).

    loading.py     a run's base model, adapter folder and type, inputs formatted as in training
    pool.py        ModelPool: one copy of each base model, adapters (and the heads they trained)
                   loaded into it and switched per run, full fine-tuned runs on their own
                   weights, least-recently-used under a memory limit
    playground.py  Playground: one input, several runs side by side (on the pool)
    export.py      an adapter as a zip; merge an adapter into its base, checked on probe inputs

    from peftlab.infer.playground import Playground
    from peftlab.infer import export        # export.merge(store, run, out), export.adapter_zip(store, run)

Loading a whole finished run (base + adapter, merged as the test evaluation did) is
`peftlab.models.trained.load_trained`.
"""
