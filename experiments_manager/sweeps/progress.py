"""The sweep's progress bar: trials done of planned, with the best value so far."""

import contextlib
import sys
from typing import Any, Callable, Iterator, Optional, TextIO


class SweepProgress:
    """The progress bar of a sweep's workers in this process, with the bookkeeping to run after each finished trial.

    Called with (trials done, trials planned), it gives the bar; each worker advances it as its trials finish.

    Args:
        monitor: the monitored loss name (`val_loss`).
        after_trials: function() -> (lines to print, best value or None), run after each update.
        stream: where the bar goes (default stderr; no bar when it is not a terminal, lines only).

    Example:

    ```python
    with SweepProgress("val_loss", lambda: ([], None))(done, total) as bar:
        bar.update(1)
    ```
    """

    def __init__(self, monitor: str, after_trials: Callable[[], tuple[list[str], Optional[float]]],
                 stream: Optional[TextIO] = None) -> None:
        self.monitor = monitor
        self.after_trials = after_trials
        self.stream = stream or sys.stderr

    @contextlib.contextmanager
    def __call__(self, initial: int, total: int) -> Iterator["ProgressUpdates"]:
        from tqdm import tqdm

        with tqdm(total=total, initial=initial, unit="trial", desc="sweep", file=self.stream,
                  disable=not self.stream.isatty(), dynamic_ncols=True) as bar:
            bar.set_postfix_str(f"best {self.monitor}: ?")
            yield ProgressUpdates(bar, self)


class ProgressUpdates:
    """What hyperopt's loop drives: `update(n)`, and a `postfix` it sets (replaced by ours)."""

    def __init__(self, bar: Any, progress: SweepProgress) -> None:  # (a tqdm bar)
        self.bar = bar
        self.progress = progress

    @property
    def postfix(self) -> Any:
        return self.bar.postfix

    @postfix.setter
    def postfix(self, text: object) -> None:  # hyperopt's "best loss: x": ours names the monitored loss
        pass

    def update(self, n: int) -> None:
        lines, best = self.progress.after_trials()
        for line in lines:
            if self.bar.disable:
                print(line, file=self.progress.stream, flush=True)
            else:
                self.bar.write(line, file=self.progress.stream)
        if best is not None:
            self.bar.set_postfix_str(f"best {self.progress.monitor}: {best:.6g}", refresh=False)
        self.bar.update(n)
