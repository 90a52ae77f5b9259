"""`python -m peftlab.cli`: the same as the `peftlab` command (the web service launches runs so)."""

import sys

from peftlab.cli import main

sys.exit(main())
