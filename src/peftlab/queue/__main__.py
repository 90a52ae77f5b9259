"""`python -m peftlab.queue STORE [--concurrency N]`: run a store's queued runs, no web server."""

import sys

from peftlab.queue.scheduler import main

sys.exit(main())
