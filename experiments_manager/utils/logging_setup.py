"""How the command line shows our log lines: one neutral module, so library code (a sweep trial, a Flower
client app) sets logging up as the CLI does without importing the CLI."""

import logging
import os


def configure_logging() -> None:
    """Our INFO lines on stderr; TensorFlow's C++ and Python chatter at warnings only.

    Idempotent: a process that calls it again (a sweep trial, a Flower actor serving client after client)
    keeps one handler, so every line prints once.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # "Assets written to ..." at every export
    # Flower prints its lines with its own handler; passed on to a root handler another library set up, each printed
    # twice ('INFO :  ...' then 'INFO:flwr:...')
    logging.getLogger("flwr").propagate = False
    ours = logging.getLogger("experiments_manager")
    ours.setLevel(logging.INFO)
    ours.propagate = False
    if any(getattr(handler, "experiments_manager_cli", False) for handler in ours.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    setattr(handler, "experiments_manager_cli", True)  # how a second call finds it
    ours.addHandler(handler)
