"""kafka/reader.py's `check_consumer_config`: a `kafka_config` no consumer can start with is one line, before any
broker is asked (librdkafka checks a consumer's properties only as it makes one)."""

import pytest

from experiments_manager.kafka.connection import KafkaConnection
from experiments_manager.kafka.reader import check_consumer_config
from experiments_manager.utils.errors import UserInputError


def test_properties_only_a_consumer_checks_are_one_line_naming_the_settings():
    nobody = "127.0.0.1:1"  # no broker: the check asks none
    check_consumer_config(KafkaConnection(nobody, {"client.id": "lab"}, 1.0, "s.py"))
    with pytest.raises(UserInputError) as refused:
        check_consumer_config(KafkaConnection(nobody, {"fetch.max.bytes": 1000, "message.max.bytes": 2000}, 1.0,
                                              "s.py"))
    assert str(refused.value) == ("s.py: kafka_config: Failed to create consumer: `fetch.max.bytes` must be >= "
                                  "`message.max.bytes`")
