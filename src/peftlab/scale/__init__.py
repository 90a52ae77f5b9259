"""Scaling out: runs on a Ray cluster, and one run over several devices.

    devices.py       training.devices / strategy: the refusals before any run starts, and the
                     Trainer settings of a run over several devices (DDP, FSDP, DeepSpeed)
    events.py        the event stream: the private store a remote run writes to (`EventStore`),
                     its replay into the driver's store, and run folders packed as bytes
    placement.py     what one run asks the cluster for (GPUs, CPUs, memory from the estimate),
                     and the refusals of runs no node can hold
    task.py          the Ray task: one run against a private temporary store, its events,
                     checkpoints and run folder shipped back through Ray
    ray_executor.py  the driver's side: as many runs in flight as the cluster holds, events
                     replayed into the store, a run whose worker died retried from its last
                     checkpoint, the status line
    progress.py      the compact status line of the runs in flight

The driver's store stays the one record: workers never open it, and need no shared folder.
Ray is an optional extra (`pip install 'peftlab[ray]'`): nothing here imports it at module level.
"""
