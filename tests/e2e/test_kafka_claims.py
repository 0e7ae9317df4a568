"""Kafka claims of the docs (docs/how-to/kafka.md) against a real Kafka-protocol broker (Tansu): topics of several
partitions, `kafka_config` reaching every client, `kafka-produce --only` / `--epochs`."""

import copy
import json
import random
import re
import time

import numpy as np

import pytest

from conftest import TansuBroker, read_run, settings_variant, single_experiment
from test_kafka_training import recording_variant, trained_ids

KAFKA_SETTINGS = "examples/kafka/mysettings_kafka_curve_fitting.py"


def topic_records(broker, topic):
    """{(partition, offset): decoded sample} of every record of a topic, read from the broker."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from experiments_manager.kafka.codec import decode

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "test-reader",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records, ended = {}, set()
        while ended != set(partitions):
            message = consumer.poll(10)
            assert message is not None, f"{topic}: no record within 10 s, {len(records)} read"
            if message.error():
                ended.add(message.partition())  # _PARTITION_EOF
                continue
            ended.discard(message.partition())
            records[(message.partition(), message.offset())] = decode(message.value())
        return records
    finally:
        consumer.close()


def committed_offsets(broker, group, topic, partitions):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        return {entry.partition: entry.offset
                for entry in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)}
    finally:
        consumer.close()


def topics_of(broker):
    from confluent_kafka.admin import AdminClient

    return set(AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics)


def trained_at(state, places):
    """The records (partition, offset) among `places` that a checkpoint's Kafka position says were trained on:
    read (below `next` of their partition) and not waiting in the shuffle pool."""
    return {(p, offset) for p, offset in places
            if offset < state["next"].get(str(p), 0) and offset not in state["waiting"].get(str(p), [])}


def latest_kafka_state(experiment):
    states = sorted(experiment.glob("checkpoints/ckpt-*/state.json"), key=lambda path: int(path.parent.name[5:]))
    return json.loads(states[-1].read_text())["callbacks"]["kafka"]


def cli_ok(run_cli, *arguments):
    result = run_cli(*arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.claim('`--epochs N` for another count', note="(510 = 3 × 170 records, not the settings' 6 passes)")
@pytest.mark.claim('topics with several partitions')
def test_a_topic_of_three_partitions_is_trained_on_every_record_and_resumed_per_partition(run_cli, workdir,
                                                                                           kafka_broker):
    """Also: `kafka-produce --only val|train` publishes that split only, `--epochs N` N passes."""
    from confluent_kafka import Producer

    from experiments_manager.kafka.codec import Schema

    seed = random.randrange(2**32)
    print(f"seed {seed}")
    bootstrap = ("--bootstrap-servers", kafka_broker.bootstrap)
    # training reads 3 epochs of 200 (10 batches of 20); kafka-produce spreads records over the partitions one
    # by one (librdkafka's null-key partitioning without its sticky batching, set through kafka_config)
    common = ["kafka_stall_timeout_secs = 4", "kafka_config = {'sticky.partitioning.linger.ms': 0}"]
    settings = recording_variant(workdir, "parts", ["nb_train_samples = 200", "hparams = {'nbEpoch': 3}",
                                                    "nbEpoch = 3", *common])
    publisher = recording_variant(workdir, "parts", ["nb_train_samples = 170", *common], name="parts_publisher")

    only_val = cli_ok(run_cli, "kafka-produce", "-u", str(settings), *bootstrap, "--only", "val")
    assert "parts_val: 100 records" in only_val.stdout and "parts_train" not in only_val.stdout, only_val.stdout
    assert "parts_val" in topics_of(kafka_broker) and "parts_train" not in topics_of(kafka_broker)
    # 3 passes of 170, not the settings' nbEpoch (6) passes; validation not published again
    only_train = cli_ok(run_cli, "kafka-produce", "-u", str(publisher), *bootstrap, "--only", "train",
                        "--partitions", "3", "--epochs", "3")
    assert "parts_train: 510 records" in only_train.stdout and "parts_val" not in only_train.stdout
    assert len(topic_records(kafka_broker, "parts_val")) == 100
    records = topic_records(kafka_broker, "parts_train")
    ids_at = {place: int(sample[0]["sample_id"]) for place, sample in records.items()}
    assert sorted(ids_at.values()) == list(range(510))
    per_partition = {p: sum(1 for partition, _ in ids_at if partition == p) for p in range(3)}
    assert set(per_partition) == {0, 1, 2} and min(per_partition.values()) > 0, per_partition
    assert len(ids_at) == sum(per_partition.values())

    # 25 batches of the 510 records, then the topic dries up: a checkpoint, `interrupted`, exit 75
    first = run_cli("train", "-u", str(settings), *bootstrap)
    assert first.returncode == 75, first.stdout + first.stderr
    experiment = single_experiment(workdir / "experiments" / "parts")
    assert read_run(experiment)["status"] == "interrupted"
    saved = latest_kafka_state(experiment)
    assert set(saved["next"]) == {"0", "1", "2"}, saved
    done_before = trained_at(saved, ids_at)
    batches_before = trained_ids(workdir)
    seen_before = {i for batch in batches_before for i in batch}
    assert {ids_at[place] for place in done_before} <= seen_before
    print(f"checkpoint at the stall: {saved}")
    assert len(done_before) >= 480  # 24 batches at least (the last block may still be waiting at the stall)
    group = experiment.name
    assert committed_offsets(kafka_broker, group, "parts_train", range(3)) == {
        int(p): offset for p, offset in saved["positions"].items()}  # committed per partition

    # 190 more records, to partitions chosen at random, from a program of our own (records are self-describing)
    template = next(iter(records.values()))
    schema = Schema.of(template)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    rng = random.Random(seed)
    for sample_id in range(10_000, 10_190):
        sample = copy.deepcopy(template)
        x = np.float32((sample_id % 97) / 24.0 - 2.0)
        sample[0]["sample_id"], sample[0]["x"][:], sample[1][:] = np.int64(sample_id), x, x * x
        producer.produce("parts_train", schema.encode(sample), partition=rng.randrange(3))
    assert producer.flush(10) == 0

    resumed = run_cli("train", "--resume", str(experiment))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    starts = ", ".join(f"partition {p} offset {saved['positions'][str(p)]}" for p in range(3))
    assert f"training reads topic 'parts_train' from {starts} as consumer group '{group}'" in resumed.stderr
    run = read_run(experiment)
    assert run["status"] == "finished" and run["epochs_completed"] == 3
    records = topic_records(kafka_broker, "parts_train")
    ends = {p: 1 + max(offset for partition, offset in records if partition == p) for p in range(3)}
    final = latest_kafka_state(experiment)
    # every record of every partition was read and trained on (10 waiting + 190 new = the redone epoch 3)
    assert final["next"] == {str(p): end for p, end in ends.items()} and final["waiting"] == {}, final
    batches = trained_ids(workdir)
    trained = {i for batch in batches for i in batch}
    every_id = {int(sample[0]["sample_id"]) for sample in records.values()}
    assert every_id <= trained, sorted(every_id - trained)[:10]
    # what the checkpoint had trained on, in each partition, was not trained on again
    after = {i for batch in batches[len(batches_before):] for i in batch}
    assert not after & {ids_at[place] for place in done_before}
    assert run["kafka"]["committed_offsets"] == {str(p): end for p, end in ends.items()}
    assert committed_offsets(kafka_broker, group, "parts_train", range(3)) == ends


REQUEST_HEADER = re.compile(r'Request \{ api_key: (\d+), api_version: \d+, correlation_id: \d+, '
                            r'client_id: (?:Some\("([^"]*)"\)|None)')
PRODUCE, FETCH, METADATA, OFFSET_COMMIT, OFFSET_FETCH, CREATE_TOPICS = 0, 1, 3, 8, 9, 19


@pytest.mark.slow
@pytest.mark.claim('security settings (SASL, TLS) through `kafka_config`')
def test_kafka_config_reaches_every_client_the_engine_makes(run_cli, workdir, tmp_path, monkeypatch):
    """A `client.id` in kafka_config is what the broker sees on every request of `kafka-produce` and `train`:
    admin, producer, training and validation consumers, offset commits.

    Also: a run that reads the topic to its end (what `kafka-produce` publishes for it) ends when its last epoch
    does, not after `kafka_stall_timeout_secs` more."""
    # a broker of our own that logs the header of each request it decodes (and nothing else)
    monkeypatch.setenv("RUST_LOG", "warn,tansu_sans_io=debug,tansu_sans_io::primitive=off,"
                                   "tansu_sans_io::record=off,tansu_sans_io::de=off,tansu_sans_io::ser=off")
    broker = TansuBroker(tmp_path / "broker.log").start()
    try:
        client_id = f"lab-{random.randrange(16**8):08x}"
        print(f"client.id {client_id}")
        settings = settings_variant(workdir, "cfg.py", [
            "session_name = 'cfg'", "workingFolder = 'experiments/cfg'", "nb_train_samples = 200",
            "nb_val_samples = 50", "kafka_stall_timeout_secs = 600", f"kafka_config = {{'client.id': {client_id!r}}}"],
            base=KAFKA_SETTINGS)
        bootstrap = ("--bootstrap-servers", broker.bootstrap)
        cli_ok(run_cli, "kafka-produce", "-u", str(settings), *bootstrap, "--epochs", "1")
        started = time.monotonic()
        result = run_cli("train", "-u", str(settings), *bootstrap, "--hparam", "nbEpoch=1", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started < 240, "the run waited for records after its last epoch"
    finally:
        broker.stop()
    assert read_run(single_experiment(workdir / "experiments" / "cfg"))["status"] == "finished"
    requests = {(int(key), client) for key, client in REQUEST_HEADER.findall((tmp_path / "broker.log").read_text())}
    assert {client for _, client in requests} == {client_id}, sorted(requests)  # no client without it
    kinds = {key for key, _ in requests}
    assert {METADATA, CREATE_TOPICS, PRODUCE, FETCH, OFFSET_FETCH, OFFSET_COMMIT} <= kinds, sorted(kinds)


@pytest.mark.claim(
    'security settings (SASL, TLS) through `kafka_config`',
    note='(weak: Tansu cannot require TLS or SASL, so a successful secure login is not tried; the settings '
         'reaching every client and a broker not speaking them are)')
def test_kafka_config_security_settings_and_mistakes_are_one_line_before_anything_is_written(run_cli, workdir,
                                                                                            kafka_broker):
    """TLS or SASL that the (plaintext) broker does not speak: it never answers; a property librdkafka does not
    know, or properties no consumer can start with: named. One `error:` line each, exit 2, no folder, no topic."""
    cases = [
        ("train", "{'security.protocol': 'SSL'}",
         f"no Kafka broker answered at {kafka_broker.bootstrap} within 2 s"),
        ("kafka-produce", "{'security.protocol': 'SASL_PLAINTEXT', 'sasl.mechanism': 'SCRAM-SHA-512', "
                          "'sasl.username': 'lab', 'sasl.password': 'secret'}",
         f"no Kafka broker answered at {kafka_broker.bootstrap} within 2 s"),
        ("train", "{'security.protocol': 'TLS'}",
         "kafka_config: Invalid value \"TLS\" for configuration property \"security.protocol\""),
        ("train", "{'fetch.max.bytes': 1000, 'message.max.bytes': 2000}",  # only a consumer checks it
         "kafka_config: Failed to create consumer: `fetch.max.bytes` must be >= `message.max.bytes`"),
    ]
    for index, (command, config, expected) in enumerate(cases):
        settings = settings_variant(workdir, f"secure{index}.py", [
            f"session_name = 'secure{index}'", f"workingFolder = 'experiments/secure{index}'",
            "kafka_connect_timeout_secs = 2", f"kafka_config = {config}"], base=KAFKA_SETTINGS)
        extra = ("--only", "val") if command == "kafka-produce" else ()
        result = run_cli(command, "-u", str(settings), "--bootstrap-servers", kafka_broker.bootstrap, *extra)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(errors) == 1 and errors[0].startswith(f"error: secure{index}.py: "), result.stderr
        assert expected in errors[0], errors[0]
        assert f"secure{index}_val" not in topics_of(kafka_broker)
    assert not (workdir / "experiments").exists()
