"""Run the storekit command line: ``python -m storekit``."""

import sys

from .cli import main

sys.exit(main())
