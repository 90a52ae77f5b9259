"""`python -m peftlab` is the `peftlab` command."""

import sys

from peftlab.cli import main

sys.exit(main())
