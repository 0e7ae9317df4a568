"""`experiments-manager mlflow sync RUN|FOLDER`: what runs kept in their outboxes, sent to the server now.

For compute nodes without a route to the server: a run trains there with `--mlflow URI` (its outbox fills, one
warning line), and from a login node that reaches the server, `sync` sends each run's pending entries, as the run's
one writer for the moment (a run still training is skipped: it sends its own). What the outbox lacks (a damaged or
cut-short file, a kill between a record and its append, an end never appended) is rebuilt from run.json and
history.csv first (`TrackingSession.complete`), each damaged line named. Idempotent: a second sync sends nothing
(`outbox.SentState`).

Example:

```python
for line in sync_runs("experiments/curve_fitting"):
    print(line)          # 'experiments/curve_fitting/my_run: 14 record(s) sent to http://...: http://.../runs/...'
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence

from experiments_manager.run import lifecycle
from experiments_manager.run.discovery import folders_below
from experiments_manager.run.experiment import Experiment
from experiments_manager.tracking.outbox import OUTBOX_NAME
from experiments_manager.tracking.sender import (LocalDiskFailed, TrackingRefused, TrackingUnavailable, run_url,
                                                 send_pending)
from experiments_manager.tracking.session import TrackingSession, recorded_tracking_uri
from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.lease import LeaseHeld


class SyncFailed(UserInputError):
    """The server did not take a run's entries (down, unreachable): exit 75, try again later."""

    exit_code = EXIT_TEMPFAIL


def tracked_runs(place: Path) -> list[Path]:
    """The run folders at or below `place` that have an MLflow outbox."""
    if (place / OUTBOX_NAME).is_file():
        return [place]
    return folders_below(place, OUTBOX_NAME)


def sync_runs(place: str, uri: Optional[str] = None, command: Sequence[str] = ()) -> Iterator[str]:
    """Sends the pending entries of each tracked run at or below `place`; yields one line per run.

    Args:
        place: a run folder, or a folder above runs.
        uri: the tracking server (default: the one each run's run.json names).
        command: this process' command line (the lease's record).

    Raises:
        UserInputError: no tracked run there, a run naming no server and none given, or a server that answered
            with a client error (a URI with a path, refused credentials: exit 2).
        SyncFailed: a server did not answer, or this machine's disk failed (the runs before it were sent; exit 75).
    """
    runs = tracked_runs(Path(place))
    if not runs:
        raise UserInputError(f"{place}: no run logged to MLflow there ({OUTBOX_NAME} in no run folder)")
    for root in runs:
        experiment = Experiment.open(root)
        server = uri or recorded_tracking_uri(experiment)
        if not server:
            raise UserInputError(f"{root}: run.json names no MLflow server: give one with --mlflow URI")
        try:
            with lifecycle.attempt(experiment, list(command), console=False, records_ending=False):
                session = TrackingSession(experiment, server)
                completion = session.complete()
                if completion.damaged or completion.rebuilt:  # said before the server is asked: it may refuse
                    yield f"{root}: {completion}"
                recorded = (experiment.run_info().get("mlflow") or {}).get("run_id")
                try:
                    sent = send_pending(session.outbox, server)
                except TrackingRefused as error:
                    raise UserInputError(f"{root}: {server} refused its records ({error}): check the URI (the "
                                         "server's root, no path) and its access") from None
                except LocalDiskFailed as error:
                    raise SyncFailed(f"{root}: records not sent ({error}): free the disk, then sync again") from None
                except TrackingUnavailable as error:
                    raise SyncFailed(f"{root}: {server} did not take its records ({error}): try again once it "
                                     "answers") from None
                state = session.outbox.sent()
                if state.get("run_id") and state.get("run_id") != recorded:
                    experiment.record.mlflow({"tracking_uri": server, "experiment_id": state.get("experiment_id"),
                                              "run_id": state.get("run_id")})
        except LeaseHeld:
            yield (f"{root}: held by another process (its run, which sends its own records, or another mlflow sync): "
                   "skipped")
            continue
        url = run_url(server, state)
        yield (f"{root}: {sent} record(s) sent to {server}" if sent else f"{root}: nothing to send") + (
            f" ({url})" if url else "")


def send_what_is_left(root: Path, uri: Optional[str] = None) -> list[str]:
    """For a tracked run that has ended (a resume of a finished run): what its outbox lacks or holds unsent, sent
    now (`sync_runs`); returns the lines to say (none when the server had everything). A failure is one of them:
    the run's own state is not the server's to decide."""
    try:
        lines = list(sync_runs(str(root), uri))
    except UserInputError as error:
        return [f"MLflow: {problem}" for problem in error.problems]
    return [f"MLflow: {line}" for line in lines if ": nothing to send" not in line]
