"""`python -m orchestrator.cli`: the same command as the `orchestrator` script."""

import sys

from . import main

sys.exit(main())
