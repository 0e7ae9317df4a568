"""Kafka: publish a settings file's input pipelines to topics and train from them.

- `codec`: self-describing records (one sample each) <-> numpy arrays;
- `connection`: brokers, client settings (security, SASL), topic names;
- `producer`: `kafka-produce`;
- `dataset`: the training stream (at-least-once positions) and the validation snapshot;
- `inputs`: the trainer's input object for `consume_data_from_kafka = True`;
- `command`: the command line.
"""
