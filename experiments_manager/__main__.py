"""`python -m experiments_manager` runs the command line."""

import sys

from experiments_manager.cli import main

sys.exit(main())
