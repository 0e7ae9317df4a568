"""federated/flower_supernode.py: with the mend, a message whose run is stopped while the SuperNode receives it is
dropped, and the SuperNode sends the next run's reply even when a late reply of the stopped run comes first; Flower
1.41's own loop sends only the stopped run's.

Flower's real NodeState, ObjectStore and loop functions (`_pull_and_store_message`, `_push_messages`); only the
SuperLink's side is played here: its answers, and the 403 that says the run was stopped."""

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Message, RecordDict  # noqa: E402
from flwr.common.constant import Status  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree  # noqa: E402
from flwr.supercore.object_store import ObjectStoreFactory  # noqa: E402
from flwr.supercore.run import Run, RunNotRunningException  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402
from flwr.supernode import start_client_internal as loop  # noqa: E402
from flwr.supernode.nodestate import NodeStateFactory  # noqa: E402

from experiments_manager.federated.flower_supernode import mend_stopped_run_messages  # noqa: E402

NODE_ID = 7
STOPPED_RUN, NEXT_RUN = 111, 222


def _message(run_id, number, monkeypatch):
    """A train message of `run_id` (Flower builds a message as the task of this process: the run's, here)."""
    for name, value in (("_run_id", run_id), ("_node_id", 1), ("_task_id", number)):
        monkeypatch.setattr(TaskIdentity, name, value)  # restored after the test
    message = Message(RecordDict({"config": ConfigRecord({"round": number})}), dst_node_id=NODE_ID,
                      message_type="train")
    message.metadata.__dict__["_run_id"] = run_id
    message.metadata.__dict__["_message_id"] = message.object_id
    return message


def _pulled(state, store, message, stopped_at=None, before_the_403=lambda: None):
    """The SuperNode's loop pulling `message` from the SuperLink, which answers 403 (the run stopped) at
    `stopped_at`: 'pull' (an object's pull), 'confirm' (the receipt's confirmation) or None (never), after
    `before_the_403` ran."""
    run = Run.create_empty(message.metadata.run_id)
    run.fab_hash = "fab"
    state.store_run(run)  # the run is known: its earlier rounds came before
    contents = {object_id: item.deflate() for object_id, item in get_all_nested_objects(message).items()}

    def pull_object(run_id, object_id):
        if stopped_at == "pull":
            before_the_403()
            raise RunNotRunningException
        return contents[object_id]

    def confirm(run_id, message_id):
        if stopped_at == "confirm":
            before_the_403()
            raise RunNotRunningException

    return loop._pull_and_store_message(
        state=state, object_store=store, node_config={}, receive=lambda: (message, get_object_tree(message)),
        get_run=None, get_fab=None, pull_object=pull_object, confirm_message_received=confirm, trusted_entities=None)


def _clientapp_takes_its_message(state, run_id, monkeypatch):
    """A ClientApp the SuperExec started for the run's pending task takes its message (returned)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", run_id)
    task = next(task for task in state.get_tasks() if task.run_id == run_id and task.status.status == Status.PENDING)
    state.claim_task(task.task_id)
    assert state.activate_task(task.task_id)
    [message] = state.get_messages_legacy(run_ids=[run_id], is_reply=False, limit=1)
    state.record_message_processing_start(message.metadata.message_id)
    return message


def _clientapp_replies(state, store, message, monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", message.metadata.run_id)
    loop._insert_message(Message(RecordDict({"metrics": ConfigRecord({"loss": 0.5})}), reply_to=message), state, store)


def _runs_whose_replies_were_sent(mended, stopped_at, clientapp_started, monkeypatch):
    """Run A's message is pulled as A is stopped (403 at `stopped_at`), its ClientApp started before the 403 or
    not; run B's message comes next, and the loop sends the replies it finds. A late reply of A comes first; B's
    ClientApp answers while the loop sends it."""
    for name in ("_pull_and_store_message", "_push_messages"):
        monkeypatch.setattr(loop, name, getattr(loop, name))  # restored after the test
    if mended:
        mend_stopped_run_messages()
    object_stores = ObjectStoreFactory()
    state, store = NodeStateFactory(object_stores).state(), object_stores.store()
    state.set_node_id(NODE_ID)
    taken = []

    def clientapp_started_now():
        if clientapp_started:  # the confirmation was slow: the SuperExec started A's ClientApp meanwhile
            taken.append(_clientapp_takes_its_message(state, STOPPED_RUN, monkeypatch))

    assert _pulled(state, store, _message(STOPPED_RUN, 2, monkeypatch), stopped_at, clientapp_started_now) is None
    if not taken and any(task.status.status == Status.PENDING for task in state.get_tasks()):
        taken.append(_clientapp_takes_its_message(state, STOPPED_RUN, monkeypatch))  # started for the left task
    for message in taken:
        _clientapp_replies(state, store, message, monkeypatch)  # after the 403's clean-up, if any
    assert _pulled(state, store, _message(NEXT_RUN, 1, monkeypatch)) == NEXT_RUN
    next_message = _clientapp_takes_its_message(state, NEXT_RUN, monkeypatch)
    sent = []

    def send(message, tree, runtime):
        sent.append(message.metadata.run_id)
        if message.metadata.run_id == STOPPED_RUN:
            _clientapp_replies(state, store, next_message, monkeypatch)  # B's ClientApp answers meanwhile
            raise RunNotRunningException  # the SuperLink refuses a stopped run's reply
        return set(), "session"

    if not taken:  # the loop waits for a reply: B's ClientApp gives it
        _clientapp_replies(state, store, next_message, monkeypatch)
    loop._push_messages(state=state, object_store=store, send=send, push_object=lambda *arguments: None)
    return sent


@pytest.mark.claim("a SuperNode drops a message whose run is stopped as it arrives, so the next run's reply is the one "
                   "it sends (Flower 1.41 sent the stopped run's in its place)",
                   note="(Flower's own loop functions and NodeState; the SuperLink's 403 played)")
@pytest.mark.parametrize("stopped_at, clientapp_started", [("confirm", False), ("pull", False), ("confirm", True)],
                         ids=["403 at the confirmation", "403 at an object's pull", "ClientApp started before the 403"])
def test_a_message_of_a_run_stopped_as_it_arrives_never_takes_the_place_of_the_next_runs_reply(
        monkeypatch, stopped_at, clientapp_started):
    if stopped_at == "confirm":  # Flower 1.41: A's late reply is sent, B's never
        assert _runs_whose_replies_were_sent(False, stopped_at, clientapp_started, monkeypatch) == [STOPPED_RUN]
    expected = [STOPPED_RUN, NEXT_RUN] if clientapp_started else [NEXT_RUN]  # A's reply (refused), then B's
    assert _runs_whose_replies_were_sent(True, stopped_at, clientapp_started, monkeypatch) == expected


def test_the_mend_wraps_flowers_functions_once(monkeypatch):
    for name in ("_pull_and_store_message", "_push_messages"):
        monkeypatch.setattr(loop, name, getattr(loop, name))
    mend_stopped_run_messages()
    mended = loop._pull_and_store_message, loop._push_messages
    mend_stopped_run_messages()
    assert (loop._pull_and_store_message, loop._push_messages) == mended  # not wrapped twice
