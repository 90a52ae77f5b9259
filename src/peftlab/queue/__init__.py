"""The run queue and its scheduler, usable without HTTP.

    jobs.py       policy: make_plan (an experiment dict, validated as the CLI does), enqueue,
                  cancel (signals), retry, auto-resume after a crash (at most MAX_AUTO_RESUMES)
    scheduler.py  the Scheduler: claims queued runs and starts each as
                  `python -m peftlab.train.worker STORE RUN_ID`, N at a time

    python -m peftlab.queue STORE [--concurrency N]     # run the queue on its own

The queue *is* the store's `runs` table; the state transitions and their SQL are the store's
(`peftlab.store.runs`). A change to when a run is queued, resumed or stopped goes here; a
change to how a state is written goes to the store.
"""
