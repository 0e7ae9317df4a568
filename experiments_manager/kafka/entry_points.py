"""What the `kafka-produce` command runs (its parser is `experiments_manager.commands.kafka_produce`)."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import argparse

    from rich.progress import Progress

_LOG = logging.getLogger(__name__)


def kafka_produce(arguments: argparse.Namespace) -> int:
    """Publishes the settings' train and validation pipelines; returns the exit code."""
    from experiments_manager.kafka.producer import produce
    from experiments_manager.settings import load_settings, parse_hparam_overrides

    settings = load_settings(arguments.usersettings, parse_hparam_overrides(arguments.hparam))
    splits = ("train", "val") if arguments.only is None else (arguments.only,)
    epochs = arguments.epochs or settings.training.epochs  # what one training run of these settings reads
    with _ProgressDisplay() as display:
        published = produce(settings, arguments.bootstrap_servers, epochs=epochs,
                            partitions=arguments.partitions, splits=splits, progress=display.update)
    for publication in published:
        print(f"{publication.topic}: {publication.records} records in {publication.seconds:.1f} s "
              f"({publication.rate:,.0f} records/s)")
    return 0


class _ProgressDisplay:
    """A progress bar with records/s per topic (rich on a terminal; a line every few seconds otherwise)."""

    def __init__(self, log_every: float = 5.0) -> None:
        self.log_every = log_every
        self.progress: Optional[Progress] = None
        self.tasks: dict[str, Any] = {}  # topic -> (rich task, start) on a terminal, else its start
        self._last_log = 0.0

    def __enter__(self) -> _ProgressDisplay:
        if sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn)

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} records/s"), TimeElapsedColumn(), transient=False,
            )
            self.progress.start()
        return self

    def update(self, topic: str, records: int, total: Optional[int]) -> None:
        if self.progress is not None:
            if topic not in self.tasks:
                self.tasks[topic] = (self.progress.add_task(topic, total=total, rate="-"), time.monotonic())
            task, started = self.tasks[topic]
            rate = records / max(time.monotonic() - started, 1e-9)
            self.progress.update(task, completed=records, total=total, rate=f"{rate:,.0f}")
            return
        now = time.monotonic()
        started = self.tasks.setdefault(topic, now)
        if now - max(self._last_log, started) >= self.log_every:
            self._last_log = now
            rate = records / max(now - started, 1e-9)
            _LOG.info("kafka: %s: %d%s records (%s records/s)", topic, records,
                      f"/{total}" if total else "", f"{rate:,.0f}")

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()
