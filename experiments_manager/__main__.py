"""`python -m experiments_manager` runs the command line."""

from experiments_manager.cli import run_and_exit

run_and_exit()
