"""Where the Kafka cluster is and how to talk to it: bootstrap servers, client settings, topic names.

Every librdkafka client the engine makes (admin, producer, consumers) is
configured here, so the settings' `kafka_config` (security.protocol, sasl.*,
ssl.*, ...) applies to all of them, and librdkafka's own log lines go to our
logger at debug level instead of stderr.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import InputStalled, UserInputError

if TYPE_CHECKING:
    from confluent_kafka import Consumer
    from confluent_kafka.admin._metadata import ClusterMetadata  # confluent_kafka.admin does not re-export it

    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)
TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# librdkafka error names that mean "cannot reach the cluster"
UNREACHABLE = ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_TIMED_OUT")


class KafkaStalled(InputStalled):
    """No record could be read for longer than the settings allow (broker down, producer stopped).

    Training ends `interrupted` with a checkpoint: resume once data flows again.
    """


class LibrdkafkaLog:
    """A logger for librdkafka: its lines are debug messages here (we report problems ourselves)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, message: str, *args: object) -> None:
        self.logger.debug(message, *args)


def parse_bootstrap_servers(value: Union[str, Sequence[str]], source: str) -> str:
    """'host:port,host:port' or a list of them -> 'host:port,host:port', or UserInputError."""
    servers = value.split(",") if isinstance(value, str) else list(value)
    servers = [str(server).strip() for server in servers if str(server).strip()]
    bad = [server for server in servers if not re.match(r"^[^\s:,]+:\d{1,5}$", server)]
    if not servers or bad:
        raise UserInputError(f"{source}: expected host:port[,host:port...], got {value!r}")
    return ",".join(servers)


class KafkaConnection:
    """The cluster and client settings used by producers and consumers.

    Args:
        bootstrap_servers: 'host:port,...'.
        client_config: extra librdkafka properties (security, SASL, ...).
        connect_timeout: seconds to wait for the cluster to answer at start.
        source: where the settings came from (named in error messages).

    Example:

    ```python
    connection = KafkaConnection.from_settings(settings, override="127.0.0.1:9092")
    connection.check_topics(["my_test_train", "my_test_val"])
    ```
    """

    def __init__(self, bootstrap_servers: str, client_config: Optional[Mapping[str, Any]] = None,
                 connect_timeout: float = 10.0, source: str = "settings") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_config = dict(client_config or {})
        self.connect_timeout = float(connect_timeout)
        self.source = source

    @classmethod
    def from_settings(cls, settings: Settings, override: Optional[str] = None) -> KafkaConnection:
        """From the settings' kafka_* names; `override` (the --bootstrap-servers flag) wins."""
        name = settings.path.name
        if override:
            servers = parse_bootstrap_servers(override, "--bootstrap-servers")
        else:
            servers = parse_bootstrap_servers(settings.kafka.bootstrap_servers, f"{name}: kafka_bootstrap_servers")
        return cls(servers, settings.kafka.config, settings.kafka.connect_timeout_secs, name)

    def config(self, **properties: Any) -> dict[str, Any]:
        """librdkafka properties for a new client: defaults, then the user's `kafka_config`, then `properties`."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": LibrdkafkaLog(logging.getLogger("experiments_manager.kafka.librdkafka")),
            "reconnect.backoff.max.ms": 2000,  # find a restarted broker within seconds
            **self.client_config,
            **properties,
        }

    def cluster_metadata(self) -> ClusterMetadata:
        """The cluster's metadata, or UserInputError naming the servers when none answers in time."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:  # librdkafka checks every property here: a bad `kafka_config` is one line, not a traceback
            admin = AdminClient(self.config())
        except KafkaException as error:
            raise UserInputError(f"{self.source}: kafka_config: {error.args[0].str()}") from None
        try:
            return admin.list_topics(timeout=self.connect_timeout)
        except KafkaException as error:
            raise UserInputError(
                f"{self.source}: kafka_bootstrap_servers: no Kafka broker answered at {self.bootstrap_servers} "
                f"within {self.connect_timeout:g} s ({error.args[0].str()})"
            ) from None

    def check_topics(self, topics: Iterable[str]) -> None:
        """Checks the cluster answers and has these topics; one UserInputError line per missing topic."""
        existing = self.cluster_metadata().topics
        missing = [topic for topic in topics if topic not in existing]
        if missing:
            raise UserInputError([
                f"{self.source}: kafka topic {topic!r} does not exist at {self.bootstrap_servers} "
                f"(publish it with: {command_name()} kafka-produce -u SETTINGS)"
                for topic in missing
            ])

    def partitions(self, client: Consumer, topic: str) -> list[int]:
        """Sorted partition ids of a topic, asked through an existing client."""
        metadata = client.list_topics(topic, timeout=self.connect_timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise KafkaStalled(f"kafka topic {topic!r} has no partitions at {self.bootstrap_servers}")
        return sorted(found.partitions)


def topic_names(settings: Settings, suffix: str = "") -> tuple[str, str]:
    """(train topic, validation topic): `<session_name>_train` and `<session_name>_val` (+ suffix)."""
    names = (f"{settings.experiment.session_name}_train{suffix}", f"{settings.experiment.session_name}_val{suffix}")
    for name in names:
        if not TOPIC_PATTERN.match(name):
            raise UserInputError(
                f"{settings.path.name}: session_name: {settings.experiment.session_name!r} gives the kafka topic {name!r}; "
                "topic names allow letters, digits, '.', '_' and '-' only"
            )
    return names
