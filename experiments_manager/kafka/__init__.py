"""Kafka: publish a settings file's input pipelines to topics and train from them.

- `codec`: self-describing records (one sample each) <-> numpy arrays;
- `decoder`: many records of one stream -> numpy columns, poison records skipped and counted;
- `connection`: brokers, client settings (security, SASL), topic names;
- `producer`: `kafka-produce`;
- `reader`: one consumer of a topic: polling, decoding, noticing a stall;
- `shuffle_pool`: records waiting to be batched, with their partitions and offsets;
- `position`: resume positions saved in checkpoints and committed to the consumer group;
- `stream`: the training stream (endless shuffled batches, at-least-once positions);
- `validation`: the validation snapshot (the validation topic held in memory);
- `kafka_input`: the trainer's input object for `consume_data_from_kafka = True`; `progress_callback`: its counters;
- `command`: the command line.
"""
