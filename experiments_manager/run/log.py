"""A run's console output kept in its folder: `train.log`, appended by each attempt (train, resume, extension).

Each attempt's part starts with a header line, `--- <time>: <command line>` (a sweep trial's log starts each
attempt with the same kind of line: `attempt_header`). Within the block of `console_copied`, the file receives:

- the engine's log lines (a handler on the `experiments_manager` logger, as the console shows them);
- what Python writes to `sys.stdout`: Keras' epoch lines (`Epoch 3/10` and the metrics line; on a terminal the
  last state of each progress bar, not every redraw, without colours), Keras' "early stopping" and LR-on-plateau
  messages, the settings' own `print`s;
- the `error: ...` lines of a run that failed on bad input, or the traceback of a crash.

The end-of-training summary is appended by the command that prints it (`append`). Not in the file: what is
written to the file descriptors directly (TensorFlow's C++ messages, a subprocess' output) and Python warnings.
The terminal gets everything as before: the file is a copy taken after the console has been written to, at the
Python level (no file descriptor is redirected, so nothing is lost if the process dies by a signal; each line is
flushed as it completes). This module does not import TensorFlow.

Example:

```python
with console_copied(experiment.root, ["experiments-manager", "train", "-u", "mysettings.py"]):
    Trainer(experiment, settings).run()
```
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, TextIO

from experiments_manager.run.names import now
from experiments_manager.utils.environment_failures import environment_failure_line
from experiments_manager.utils.errors import ERROR_PREFIX, UserInputError

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

TRAIN_LOG_NAME = "train.log"
_OUR_LOGGER = "experiments_manager"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # a terminal's colours and cursor moves: not kept in the file


def attempt_header(what: str) -> str:
    """The line that starts one attempt's output in a log file: `--- <ISO time>: <what>` and a newline.

    Example:

    ```python
    attempt_header("experiments-manager train --resume exp")   # '--- 2026-11-23T10:00:00+01:00: experiments-...\\n'
    ```
    """
    return f"--- {now()}: {what}\n"


def append(folder: PathLike, text: str) -> None:
    """Appends `text` (a line or several) to the `train.log` of the run in `folder`; an unwritable file is skipped.

    Example:

    ```python
    append(experiment.root, "status:            finished")
    ```
    """
    try:
        with open(Path(folder) / TRAIN_LOG_NAME, "a", encoding="utf-8", errors="replace") as log:
            log.write(text if text.endswith("\n") else text + "\n")
    except OSError:
        pass  # a copy of the console: the run does not depend on it


@contextlib.contextmanager
def console_copied(folder: PathLike, command: Iterable[str],
                   fenced: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Within the block, the console output of this process (see the module's docstring) is appended to
    `<folder>/train.log`, after a header naming `command`.

    Args:
        folder: the run's folder.
        command: the command line of this attempt (run.json's `command`).
        fenced: True once this process must write nothing more to the folder (`Lease.fenced`: it lost the
            lease); its lines then reach the console only (default: never).

    Yields:
        the path of train.log.
    """
    path = Path(folder) / TRAIN_LOG_NAME
    log = open(path, "a", encoding="utf-8", errors="replace")
    log.write(attempt_header(shlex.join(str(part) for part in command)))
    log.flush()
    copy = _LineCopy(log, fenced)
    handler = _CopiedLogLines(copy)
    ours = logging.getLogger(_OUR_LOGGER)
    ours.addHandler(handler)
    stdout = sys.stdout
    sys.stdout = _Tee(stdout, copy)
    try:
        yield path
    except UserInputError as error:
        copy.write_lines("".join(f"{ERROR_PREFIX}{problem}\n" for problem in error.problems))
        raise
    except Exception as error:  # the machine's failure in one line, or a crash's traceback (as the console shows)
        line = environment_failure_line(error) if isinstance(error, OSError) else None
        copy.write_lines(f"{ERROR_PREFIX}{line}\n" if line else "".join(traceback.format_exception(error)))
        raise
    finally:
        if isinstance(sys.stdout, _Tee) and sys.stdout.copy is copy:
            sys.stdout = stdout
        ours.removeHandler(handler)
        copy.close()


class _LineCopy:
    """Complete lines written to the log file (thread-safe). Of what is written to stdout, a carriage return starts
    the line again and a backspace takes a character back, so a progress bar redrawn in place leaves its last state,
    without its colours; a log line is written whole at once, the stdout line in progress staying pending."""

    def __init__(self, log: TextIO, fenced: Callable[[], bool]) -> None:
        self._log = log
        self._fenced = fenced
        self._line = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """What was written to stdout."""
        with self._lock:
            for char in text:
                if char == "\n":
                    self._write(self._line + "\n")
                    self._line = ""
                elif char == "\r":
                    self._line = ""
                elif char == "\b":
                    self._line = self._line[:-1]
                else:
                    self._line += char

    def write_lines(self, text: str) -> None:
        """Whole lines (a log record, an error), beside the stdout line in progress."""
        with self._lock:
            self._write(text if text.endswith("\n") else text + "\n")

    def _write(self, text: str) -> None:
        if self._log.closed or self._fenced():
            return
        try:
            self._log.write(_ANSI.sub("", text))
            self._log.flush()
        except (OSError, ValueError):
            pass  # a full disk: the console has it

    def close(self) -> None:
        with self._lock:
            if self._line:
                self._write(self._line + "\n")
                self._line = ""
            try:
                self._log.close()
            except OSError:
                pass


class _Tee:
    """`sys.stdout` within the block: writes to the console first (what the user sees is never held back),
    then to the log's copy; everything else (isatty, fileno, encoding) is the console's."""

    def __init__(self, console: TextIO, copy: _LineCopy) -> None:
        self.console = console
        self.copy = copy

    def write(self, text: str) -> int:
        written = self.console.write(text)
        self.copy.write(str(text))
        return written

    def flush(self) -> None:
        self.console.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


class _CopiedLogLines(logging.Handler):
    """Our log lines, as the console shows them (the message alone)."""

    def __init__(self, copy: _LineCopy) -> None:
        super().__init__(logging.INFO)
        self.copy = copy
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.copy.write_lines(self.format(record))
        except Exception:  # noqa: BLE001 - logging must not break training
            self.handleError(record)
