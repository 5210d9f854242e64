"""``python -m bayesmix.cli``."""

import sys

from bayesmix.cli import main

sys.exit(main())
