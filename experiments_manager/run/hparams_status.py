"""A run's status in TensorBoard's HParams table ("Success", "Failure"), written without TensorFlow.

`RunRecordWriter.end` (record_writer.py) records it beside run.json's status, so every way a
run ends (trained, resumed, federated server, interrupted, failed) shows in
TensorBoard as it does in run.json. TensorBoard keeps the first status it reads
for a session, so the status lives in an event file of its own, which a resumed
run removes (`clear_status`): a TensorBoard started afterwards reads the status
of the last attempt; one already running keeps what it read until restarted.
"""

import glob
import logging
import os
import socket
import time
from pathlib import Path
from typing import Union

from experiments_manager.run.record import Status

_LOG = logging.getLogger(__name__)
STATUS_FILE_MARK = "session_end"  # events.out.tfevents.<time>.<host>.session_end.<pid>.0.v2
# TensorBoard's statuses are Success, Failure, Running and Unknown. An interrupted run is resumable: nothing is
# written, so it reads Unknown, and a TensorBoard left running reads the status its resumed attempt ends with.
HPARAMS_STATUSES = {Status.FINISHED.value: "STATUS_SUCCESS", Status.FAILED.value: "STATUS_FAILURE"}


def write_status(log_dir: Union[str, Path], status: str) -> None:
    """Writes the HParams session end of the run logged in `log_dir` with run.json's `status`.

    Only 'finished' and 'failed' are written: a running or interrupted run
    reads "Unknown" in TensorBoard (its "Running" would stick in a TensorBoard
    left open, which keeps the first status it reads).
    """
    if status not in HPARAMS_STATUSES or not os.path.isdir(log_dir):
        return
    try:
        clear_status(log_dir)
        _write_session_end(log_dir, status)
    except OSError as error:  # the run's outcome stands in run.json; TensorBoard reads "Unknown"
        _LOG.warning("%s: could not record the status for TensorBoard's HParams table: %s", log_dir, error)


def _write_session_end(log_dir: Union[str, Path], status: str) -> None:
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    now = time.time()
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(HPARAMS_STATUSES[status]), end_time_secs=now)
    summary_metadata = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=end))
    event = event_pb2.Event(wall_time=now, step=0)
    event.summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=summary_metadata, tensor=metadata.NULL_TENSOR)
    name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{STATUS_FILE_MARK}.{os.getpid()}.0.v2"
    with open(os.path.join(log_dir, name), "wb") as handle:
        writer = RecordWriter(handle)
        writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        writer.write(event.SerializeToString())


def clear_status(log_dir: Union[str, Path]) -> None:
    """Removes the status an earlier attempt of this run wrote."""
    for path in glob.glob(os.path.join(glob.escape(str(log_dir)), f"events.out.tfevents.*.{STATUS_FILE_MARK}.*")):
        os.remove(path)
