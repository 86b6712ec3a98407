"""`python -m cunet` runs the command line."""

import sys

from cunet.cli import main

sys.exit(main())
