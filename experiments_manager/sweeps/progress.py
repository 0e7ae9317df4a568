"""The sweep's progress bar: trials done of planned, with the best value so far."""

import contextlib
import sys
from typing import Any, Iterator, Optional, TextIO


class SweepProgress:
    """The progress bar of a sweep's workers in this process; each worker advances it as its trials finish.

    Args:
        monitor: the monitored loss name (`val_loss`), shown with the best value.
        stream: where the bar goes (default stderr; no bar when it is not a terminal).

    Example:

    ```python
    with SweepProgress("val_loss")(done, total) as bar:   # a tqdm bar
        bar.update(1)
    ```
    """

    def __init__(self, monitor: str, stream: Optional[TextIO] = None) -> None:
        self.monitor = monitor
        self.stream = stream or sys.stderr

    @contextlib.contextmanager
    def __call__(self, initial: int, total: int) -> Iterator[Any]:  # (a tqdm bar)
        from tqdm import tqdm

        with tqdm(total=total, initial=initial, unit="trial", desc="sweep", file=self.stream,
                  disable=not self.stream.isatty(), dynamic_ncols=True) as bar:
            bar.set_postfix_str(f"best {self.monitor}: ?")
            yield bar
