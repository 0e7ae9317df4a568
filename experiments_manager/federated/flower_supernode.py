"""`flower-supernode` with one mend of Flower 1.41's SuperNode loop: a message whose run is stopped while the SuperNode
receives it is dropped, as Flower drops a message whose receipt failed, and its late reply never takes the place of
the next run's.

What it mends (flwr 1.41, `_pull_and_store_message` in flwr.supernode.start_client_internal): once a run is
stopped (`flwr stop`, a stopped `federated run`), the SuperLink answers the SuperNode's calls for it with 403, which
Flower raises as `RunNotRunningException`, a `BaseException`. Raised while the SuperNode pulls the message's objects
or confirms its receipt, it passes by the `except Exception` that deletes a half-received message and finishes its
task: the message stays, its task pending. The SuperExec then starts a ClientApp for it, and that ClientApp's reply
(to the stopped run) is the one the SuperNode's loop sends when the next run's first message comes, since the loop
sends whatever reply it finds (`_push_messages`); the next run's reply is never sent. That run waits for the node
until its round timeout: a `federated run --resume` right after a stopped run failed so in CI.

The mend makes those two calls raise `StoppedRunError`, an `Exception`, so that Flower's own clean-up runs. A ClientApp
the SuperExec started for the message before the 403 came (a slow confirmation) can still store its reply after that
clean-up, so the mend also makes the loop send the reply to the message it pulled before it pulls again: a reply of
a stopped run that comes first is sent (and refused) on the way. It changes nothing else, and nothing when Flower no
longer has the functions.

Run as `python -m experiments_manager.federated.flower_supernode flower-supernode ARGUMENTS` (`federated supernode`
execs it, keeping its pid).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional, Sequence, TypeVar

_Result = TypeVar("_Result")


class StoppedRunError(RuntimeError):
    """The run was stopped on the SuperLink while this SuperNode received one of its messages."""


def raising_stopped_run_error(function: Callable[..., _Result]) -> Callable[..., _Result]:
    """`function`, raising `StoppedRunError` (an `Exception`) where it raised Flower's `RunNotRunningException`.

    Args:
        function: one of the SuperLink calls Flower hands `_pull_and_store_message`.

    Example:

    ```python
    confirm = raising_stopped_run_error(confirm_message_received)
    confirm(run_id, message_id)   # a stopped run: StoppedRunError, which Flower's clean-up catches
    ```
    """
    from flwr.supercore.run import RunNotRunningException

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> _Result:
        try:
            return function(*args, **kwargs)
        except RunNotRunningException as error:
            raise StoppedRunError("the run was stopped while this SuperNode received its message") from error

    return call


def mend_stopped_run_messages() -> None:
    """Makes Flower's SuperNode drop a message whose run is stopped while it is received, and send the reply to the
    message it pulled before it pulls the next (the module docstring).

    Example:

    ```python
    mend_stopped_run_messages()
    flower_supernode()  # flwr.supernode.cli
    ```
    """
    from flwr.supernode import start_client_internal as loop

    pull, push = getattr(loop, "_pull_and_store_message", None), getattr(loop, "_push_messages", None)
    if pull is None or push is None or getattr(pull, "mended", False):
        return
    pulled: dict[str, Optional[str]] = {"message_id": None}  # the message the loop pulled last

    def pull_and_store_message(*args: Any, **kwargs: Any) -> Optional[int]:
        receive = kwargs.get("receive")
        if receive is not None:
            kwargs["receive"] = _noting_the_message(receive, pulled)
        for name in ("pull_object", "confirm_message_received"):
            if name in kwargs:
                kwargs[name] = raising_stopped_run_error(kwargs[name])
        return pull(*args, **kwargs)  # type: ignore[no-any-return]  # (Flower's function is untyped to mypy)

    def push_messages(*args: Any, **kwargs: Any) -> None:
        if "send" not in kwargs:  # (not the call this mend knows: Flower's own)
            return push(*args, **kwargs)  # type: ignore[no-any-return]  # (Flower's function is untyped to mypy)
        answered: set[str] = set()
        kwargs["send"] = _noting_the_answered(kwargs["send"], answered)
        push(*args, **kwargs)
        while pulled["message_id"] is not None and pulled["message_id"] not in answered:
            push(*args, **kwargs)  # a stopped run's late reply went first: the pulled message's is still to come

    pull_and_store_message.mended = True  # type: ignore[attr-defined]  # (a marker on the function: applied once)
    loop._pull_and_store_message = pull_and_store_message
    loop._push_messages = push_messages


def _noting_the_message(receive: Callable[[], Any], pulled: dict[str, Optional[str]]) -> Callable[[], Any]:
    def receiving() -> Any:
        received = receive()
        pulled["message_id"] = received[0].metadata.message_id if received is not None else None
        return received

    return receiving


def _noting_the_answered(send: Callable[..., Any], answered: set[str]) -> Callable[..., Any]:
    def sending(message: Any, *args: Any, **kwargs: Any) -> Any:
        answered.add(message.metadata.reply_to_message_id)  # (sent, or refused: Flower deletes it either way)
        return send(message, *args, **kwargs)

    return sending


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m experiments_manager.federated.flower_supernode flower-supernode ARGUMENTS`: Flower's SuperNode."""
    from flwr.supernode.cli import flower_supernode

    sys.argv = list(argv if argv is not None else sys.argv[1:])  # argv[0] 'flower-supernode', as Flower expects
    mend_stopped_run_messages()
    flower_supernode()
    return 0


if __name__ == "__main__":
    sys.exit(main())
