"""One TensorBoard event file per run folder, shared by the callbacks that write there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

    WritersOrFolder = Union["SummaryWriters", PathLike]  # what the callbacks that write summaries take


class SummaryWriters:
    """The `tf.summary` file writers of one experiment's logs folder, one per TensorBoard run.

    TensorBoard's Python loader (`--load_fast=false`, or where its data server
    is not available) reads only the newest event file of a run folder, so two
    writers in one folder (scalars and histograms, say) would hide each other's
    later events. The callbacks that write to the same run share its writer
    through this object. Writers stay open across `fit` calls (a federated
    client fits once per round); each callback flushes what it wrote.

    Args:
        log_dir: the experiment's logs folder.

    Example:

    ```python
    writers = SummaryWriters("logs")
    callbacks = [EpochScalars(writers), WeightHistograms(writers)]   # both write to logs/train
    ```
    """

    def __init__(self, log_dir: PathLike) -> None:
        self.log_dir = str(log_dir)
        self._writers: dict[str, Any] = {}

    def writer(self, run: str = ".") -> Any:
        """The writer of run folder `run` ('.': the logs folder itself, 'train', 'validation', ...)."""
        import tensorflow as tf

        if run not in self._writers:
            path = self.log_dir if run == "." else f"{self.log_dir}/{run}"
            self._writers[run] = tf.summary.create_file_writer(path)
        return self._writers[run]

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()


def shared_writers(log_dir_or_writers: WritersOrFolder) -> SummaryWriters:
    """`log_dir_or_writers` when it is a `SummaryWriters`, else new ones for that logs folder."""
    if isinstance(log_dir_or_writers, SummaryWriters):
        return log_dir_or_writers
    return SummaryWriters(log_dir_or_writers)
