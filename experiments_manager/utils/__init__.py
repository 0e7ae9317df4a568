"""Neutral helpers every capability may use; they import nothing else of the package but each other.

- `errors.py`: `UserInputError`, the `error:` lines and the exit codes 2 and 75.
- `logging_setup.py`: log lines as the command line shows them.
- `signals.py`: the stop signals, temporary handlers, the parent watch.
- `atomic.py`: files replaced atomically (never seen half-written).
- `epochs.py`: epoch numbering from 1 wherever a user reads it.
- `deferred_imports.py`: what Keras imports for optional features (scikit-learn, pyplot) run on first use.
- `cpus.py`: the CPUs this process may run on (its affinity: a Slurm job's, not its node's).
"""
