"""Kafka-fed training against a real Kafka-protocol broker (Tansu): produce, train, kill, resume, restart."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import RAN_AS, REPO, read_run, settings_variant, single_experiment, wait_for

KAFKA_SETTINGS = "examples/kafka/mysettings_kafka_curve_fitting.py"


def kafka_variant(workdir, session, lines=()):
    """The Kafka example with its own topics (session_name) and small epochs."""
    return settings_variant(workdir, f"{session}.py", [
        f"session_name = {session!r}",
        f"workingFolder = 'experiments/{session}'",
        "nb_train_samples = 1000",
        "nb_val_samples = 200",
        "kafka_stall_timeout_secs = 30",
        *lines,
    ], base=KAFKA_SETTINGS)


def recording_variant(workdir, session, lines=(), name=None):
    """Settings whose model writes the id of every sample it trains on to trained_ids.txt, in file `name`.py
    (default: `session`.py); several variants share the one copy of tests/data/kafka."""
    folder = workdir / "recording"
    if not folder.exists():
        shutil.copytree(REPO / "tests" / "data" / "kafka", folder)
    path = folder / f"{name or session}.py"
    path.write_text((folder / "settings_recording.py").read_text() + "\n".join([
        f"session_name = {session!r}",
        f"workingFolder = 'experiments/{session}'",
        f"ids_file = {str(workdir / 'trained_ids.txt')!r}",
        *lines,
    ]) + "\n")
    return path.relative_to(workdir)


def trained_ids(workdir, cut_partial_line=False):
    """Ids written by the recording model, a list per batch (a line cut by kill -9 is dropped)."""
    path = workdir / "trained_ids.txt"
    text = path.read_text() if path.exists() else ""
    text = text[:text.rfind("\n") + 1]
    if cut_partial_line:
        path.write_text(text)
    return [[int(word) for word in line.split()] for line in text.splitlines()]


def committed_offset(broker, group, topic):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


def history(experiment_dir):
    with open(experiment_dir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def train_until_first_checkpoint(start_cli, workdir, settings, broker, *arguments):
    """Starts `train` in the background; returns (process, experiments folder) once a checkpoint exists."""
    process = start_cli("train", "-u", str(settings), "--bootstrap-servers", broker.bootstrap, *arguments, warm=True)
    experiments = workdir / "experiments" / settings.stem
    wait_for(lambda: list(experiments.glob("*/checkpoints/ckpt-*/state.json")) or process.poll() is not None, 120,
             "a first checkpoint")
    assert process.poll() is None, process.stdout.read()
    return process, experiments


def output_or_stacks(process, timeout):
    """The output of `process` once it ends within `timeout` s; else it is aborted (started with
    PYTHONFAULTHANDLER=1: every thread's stack is printed) and the test fails showing its output."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        output = process.communicate(timeout=60)[0]
        pytest.fail(f"still running after {timeout} s; its output and stacks:\n{output}")


def produce(run_cli, settings, broker, *arguments):
    result = run_cli("kafka-produce", "-u", str(settings), "--bootstrap-servers", broker.bootstrap, *arguments)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.claim(
    'the same settings file trains from Kafka, federated, or as a sweep whose trials are ordinary experiments')
@pytest.mark.claim('`kafka-produce` publishes the pipelines to `<session_name>_train` / `_val`; `train` reads them')
@pytest.mark.claim(
    '`kafka-produce` publishes `nbEpoch` passes of training data and validation once',
    note='(4000 = 4 × 1000 records, 200 val)')
@pytest.mark.claim(
    'an epoch is `nb_train_samples // batch_size` batches',
    note='(4 epochs × 20 batches × 50 = offset 4000)')
@pytest.mark.claim('offsets committed under a consumer group named after the experiment, at checkpoints')
@pytest.mark.claim('`examples/kafka`, `examples/federated` train')
def test_produce_then_train_learns_from_the_topics_and_commits_at_checkpoints(run_cli, workdir, kafka_broker):
    settings = kafka_variant(workdir, "learn")
    produced = produce(run_cli, settings, kafka_broker, "--hparam", "nbEpoch=4")  # publishes nbEpoch passes
    assert "learn_train: 4000 records" in produced.stdout
    assert "learn_val: 200 records" in produced.stdout

    result = run_cli("train", "-u", str(settings), "--bootstrap-servers", kafka_broker.bootstrap,
                     "--hparam", "nbEpoch=4")
    assert result.returncode == 0, result.stderr
    experiment = single_experiment(workdir / "experiments" / "learn")
    run = read_run(experiment)
    assert run["status"] == "finished"
    assert run["kafka_bootstrap_servers"] == kafka_broker.bootstrap
    assert run["kafka"]["consumer_group"] == experiment.name
    assert run["kafka"]["validation_records"] == 200
    losses = [float(row["loss"]) for row in history(experiment)]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    # 4 epochs x 20 batches x 50 records: the whole topic, committed under the experiment's group
    assert run["kafka"]["next_offsets"] == run["kafka"]["committed_offsets"] == {"0": 4000}
    assert committed_offset(kafka_broker, experiment.name, "learn_train") == 4000
    assert list((experiment / "exported_models").iterdir())


@pytest.mark.claim('offsets committed under a consumer group named after the experiment, at checkpoints')
@pytest.mark.claim(
    '`train --resume` continues from the checkpointed position, trains every record at least once, skips what the '
    'checkpoint had trained on')
def test_kill_9_during_kafka_training_then_resume_trains_on_every_record(run_cli, start_cli, workdir, kafka_broker):
    settings = recording_variant(workdir, "killed")
    produce(run_cli, settings, kafka_broker, "--epochs", "9")  # 3600 records for 2400 needed + re-reads
    process, experiments = train_until_first_checkpoint(start_cli, workdir, settings, kafka_broker)
    checkpoints = lambda: list(experiments.glob("*/checkpoints/ckpt-*/state.json"))  # noqa: E731
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    experiment = single_experiment(experiments)
    assert read_run(experiment)["status"] == "running"  # as a crash leaves it
    saved = json.loads(sorted(checkpoints())[-1].read_text())["callbacks"]["kafka"]
    read_before = read_run(experiment)["kafka"]["records_read"]  # the killed attempt's, at its epochs' ends
    batches_before = len(trained_ids(workdir, cut_partial_line=True))
    result = run_cli("train", "--resume", str(experiment))
    assert result.returncode == 0, result.stderr
    assert f"partition 0 offset {saved['positions']['0']} as consumer group" in result.stderr
    assert read_run(experiment)["status"] == "finished"
    final = json.loads(sorted(checkpoints())[-1].read_text())["callbacks"]["kafka"]
    read_up_to, waiting = final["next"]["0"], set(final["waiting"].get("0", []))
    assert read_up_to >= 6 * 400
    done = set(range(read_up_to)) - waiting  # read and not waiting in the shuffle pool: trained on
    batches = trained_ids(workdir)
    seen = {sample for batch in batches for sample in batch}
    assert done <= seen, f"never trained on {sorted(done - seen)[:10]}..."
    # what the checkpoint had trained on is not trained on again (at-least-once, not more than needed)
    done_at_checkpoint = set(range(saved["next"]["0"])) - set(saved["waiting"].get("0", []))
    retrained = done_at_checkpoint & {sample for batch in batches[batches_before:] for sample in batch}
    assert not retrained, sorted(retrained)[:10]
    assert committed_offset(kafka_broker, experiment.name, "killed_train") == final["positions"]["0"]
    # run.json's totals go on over both attempts, and its committed offset is the broker's
    kafka = read_run(experiment)["kafka"]
    assert kafka["records_read"] >= read_before + final["next"]["0"] - saved["next"]["0"], (read_before, kafka)
    assert kafka["committed_offsets"] == {"0": final["positions"]["0"]}, kafka


@pytest.mark.claim('bad records are counted and skipped')
def test_poison_records_are_counted_logged_once_per_kind_and_skipped(run_cli, workdir, kafka_broker):
    from confluent_kafka import Producer

    settings = kafka_variant(workdir, "poison")
    produce(run_cli, settings, kafka_broker, "--epochs", "2")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for value in [b"not a record"] * 3 + [b"EMK1\xff\xff\xff\x00{", b"EMK1\x02\x00\x00\x00{}"]:
        producer.produce("poison_train", value)
    assert producer.flush(10) == 0
    produce(run_cli, settings, kafka_broker, "--only", "train")

    result = run_cli("train", "-u", str(settings), "--bootstrap-servers", kafka_broker.bootstrap,
                     "--hparam", "nbEpoch=3")
    assert result.returncode == 0, result.stderr
    run = read_run(single_experiment(workdir / "experiments" / "poison"))
    assert run["status"] == "finished"
    assert run["kafka"]["records_skipped"] == 5
    warnings = [line for line in result.stderr.splitlines() if "cannot be decoded" in line]
    assert len(warnings) == 2, warnings  # "not an experiments_manager record", "corrupt header"
    assert any("not an experiments_manager record" in line for line in warnings)


@pytest.mark.slow
@pytest.mark.claim('a broker restart is ridden out')
def test_broker_restart_mid_training_is_ridden_out(run_cli, start_cli, workdir, own_kafka_broker):
    settings = kafka_variant(workdir, "restart", ["kafka_stall_timeout_secs = 60"])
    produce(run_cli, settings, own_kafka_broker, "--epochs", "2")
    process, experiments = train_until_first_checkpoint(start_cli, workdir, settings, own_kafka_broker,
                                                        "--hparam", "nbEpoch=4")
    own_kafka_broker.stop()
    own_kafka_broker.start()  # same port, empty: publish again
    produce(run_cli, settings, own_kafka_broker, "--epochs", "4")
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output
    assert "cannot reach" in output and "reachable again" in output
    assert read_run(single_experiment(experiments))["status"] == "finished"


@pytest.mark.slow
@pytest.mark.claim('past `kafka_stall_timeout_secs`: checkpoint, exit 75, `interrupted`; resume finishes')
def test_stalled_stream_checkpoints_as_interrupted_and_resume_finishes(run_cli, start_cli, workdir, own_kafka_broker,
                                                                       monkeypatch):
    # the stall counts from the last record (epoch 1's end): the broker must be gone before it ends, on a loaded
    # machine too (at 4 s the checkpoint's wait and the broker's stop once took longer: the stall named the stream)
    settings = kafka_variant(workdir, "stall", ["kafka_stall_timeout_secs = 20"])
    produce(run_cli, settings, own_kafka_broker, "--epochs", "1")  # one epoch of data for three
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")  # a run still there after the timeout shows where it waits
    process, experiments = train_until_first_checkpoint(start_cli, workdir, settings, own_kafka_broker,
                                                        "--hparam", "nbEpoch=3")
    own_kafka_broker.stop()
    output = output_or_stacks(process, timeout=120)
    assert process.returncode == 75, output
    experiment = single_experiment(experiments)
    run = read_run(experiment)
    assert run["status"] == "interrupted"
    assert f"cannot reach {own_kafka_broker.bootstrap}" in run["reason"]
    assert list((experiment / "checkpoints").glob("ckpt-*/state.json"))

    own_kafka_broker.start()
    produce(run_cli, settings, own_kafka_broker, "--epochs", "3")
    result = run_cli("train", "--resume", str(experiment))
    assert result.returncode == 0, result.stderr
    assert read_run(experiment)["status"] == "finished"


@pytest.mark.slow
@pytest.mark.claim("a frozen broker (SIGSTOP): the run stalls within its timeout and ends within 10 s more, exit 75; "
                   "a commit the broker does not take is said, and run.json's committed offset is the broker's")
def test_a_frozen_broker_ends_the_run_within_its_stall_timeout_and_run_json_holds_the_brokers_offset(
        run_cli, start_cli, workdir, own_kafka_broker, monkeypatch):
    settings = kafka_variant(workdir, "frozen", ["kafka_stall_timeout_secs = 20"])
    # two epochs of data for three: the second trains on records fetched before the freeze (its commit cannot
    # reach the broker), the third stalls
    produce(run_cli, settings, own_kafka_broker, "--epochs", "2")
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    process, experiments = train_until_first_checkpoint(start_cli, workdir, settings, own_kafka_broker,
                                                        "--hparam", "nbEpoch=3")
    os.kill(own_kafka_broker.process.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        output = output_or_stacks(process, timeout=150)
        waited = time.monotonic() - frozen
    finally:
        os.kill(own_kafka_broker.process.pid, signal.SIGCONT)
    experiment = single_experiment(experiments)
    run = read_run(experiment)
    stalled = int(re.search(r"cannot reach \S+ for (\d+) s", run["reason"]).group(1))
    print(f"the run ended {waited:.1f} s after the broker froze, its stall said after {stalled} s")
    assert process.returncode == 75 and run["status"] == "interrupted", output
    assert run["epochs_completed"] == 2 and stalled <= 20 + 5, output  # (5 s: a stall is checked every few s)
    # the stall counts from when the fetched records ran out (an epoch and the validation's timed-out reads after
    # the freeze), then the checkpoint and the clients' closes take at most 10 s
    assert waited < 20 + 10 + 15, output
    assert "not committed to" in output, output
    # the broker's offset is run.json's, or one a commit the run said went unanswered carried (sent before the
    # freeze, the broker took it once it answered again)
    broker = committed_offset(own_kafka_broker, experiment.name, "frozen_train")
    recorded = run["kafka"].get("committed_offsets", {}).get("0")
    unanswered = [line for line in output.splitlines() if "no answer within" in line]
    assert (broker if broker >= 0 else None) == recorded or any(
        f"(partition 0 offset {broker}) not committed" in line for line in unanswered), (broker, run["kafka"], output)


@pytest.mark.claim('the log and run.json say how many records were read and what to do')
def test_a_stream_that_dries_up_says_how_much_was_read_and_what_to_do(run_cli, workdir, kafka_broker):
    settings = kafka_variant(workdir, "dry", ["kafka_stall_timeout_secs = 3"])
    produce(run_cli, settings, kafka_broker, "--epochs", "1")  # one epoch of data for two
    result = run_cli("train", "-u", str(settings), "--bootstrap-servers", kafka_broker.bootstrap,
                     "--hparam", "nbEpoch=2")
    assert result.returncode == 75, result.stdout + result.stderr
    reason = read_run(single_experiment(workdir / "experiments" / "dry"))["reason"]
    assert "no new record for" in reason and "1000 records read from it by this run" in reason
    assert "kafka-produce" in reason and reason in result.stderr
    assert f"resume with: {RAN_AS} train --resume" in result.stderr


@pytest.mark.slow
def test_unreachable_broker_is_one_clear_line_and_nothing_is_written(run_cli, workdir):
    from conftest import free_port

    settings = kafka_variant(workdir, "nobroker", ["kafka_connect_timeout_secs = 2"])
    address = f"127.0.0.1:{free_port()}"
    for command in (["train", "-u", str(settings)], ["kafka-produce", "-u", str(settings)]):
        result = run_cli(*command, "--bootstrap-servers", address)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"no Kafka broker answered at {address} within 2 s" in errors[0]
        assert "nobroker.py: kafka_bootstrap_servers" in errors[0]
    assert not (workdir / "experiments" / "nobroker").exists()


def test_missing_topics_and_bad_addresses_are_reported_before_training(run_cli, workdir, kafka_broker):
    settings = kafka_variant(workdir, "notopics")
    result = run_cli("train", "-u", str(settings), "--bootstrap-servers", kafka_broker.bootstrap)
    assert result.returncode == 2
    assert "kafka topic 'notopics_train' does not exist" in result.stderr
    assert "kafka topic 'notopics_val' does not exist" in result.stderr
    result = run_cli("train", "-u", str(settings), "--bootstrap-servers", "localhost")
    assert result.returncode == 2
    assert "--bootstrap-servers: expected host:port" in result.stderr
    assert not (workdir / "experiments" / "notopics").exists()


def test_a_second_iterator_over_the_stream_rereads_what_the_first_did_not_train(kafka_broker):
    """Keras makes a second iterator under MirroredStrategy, after peeking at a first one."""
    import numpy as np

    from experiments_manager.kafka.connection import KafkaConnection
    from experiments_manager.kafka.stream import TrainingStream
    from experiments_manager.kafka.producer import RecordProducer

    connection = KafkaConnection(kafka_broker.bootstrap)
    ids = np.arange(300, dtype=np.int64)
    with RecordProducer(connection, "reentry_train") as producer:
        producer.publish_batch((ids.astype(np.float32)[:, None], ids))
    stream = TrainingStream(connection, "reentry_train", "reentry", batch_size=10, shuffle_buffer=50, seed=0,
                            stall_timeout=5)
    stream.start()
    try:
        peeked = next(stream.blocks())  # never trained on
        assert len(peeked[1]) > 0
        second = stream.blocks()
        trained, batches = [], 0
        while len(trained) < len(ids):
            block = next(second)[1].tolist()
            trained += block
            batches += len(block) // 10
            stream.mark_trained(batches)
        assert sorted(trained) == ids.tolist()
        assert stream.get_state()["next"] == {"0": 300} and stream.get_state()["waiting"] == {}
    finally:
        stream.close()
