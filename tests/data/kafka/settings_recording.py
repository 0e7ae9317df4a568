'''Kafka-fed training whose samples carry unique ids (dict inputs: x and sample_id).'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/kafka_recording'
session_name = 'recording'
hparams = {'nbEpoch': 6}
model_file = 'model_recording.py'
ids_file = 'trained_ids.txt'
nbEpoch = hparams['nbEpoch']
batch_size = 20
nb_train_samples = 400
nb_val_samples = 100
random_seed = 1

consume_data_from_kafka = True
kafka_bootstrap_servers = 'localhost:9092'
kafka_stall_timeout_secs = 30
kafka_shuffle_buffer_size = 200

published = [0]  # training ids continue across calls, so every published sample is unique


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    count = nb_train_samples if isTraining else nb_val_samples
    first = published[0] if isTraining else 10**6
    if isTraining:
        published[0] += count
    ids = np.arange(first, first + count, dtype=np.int64)
    x = ((ids % 97) / 24.0 - 2.0).astype(np.float32).reshape(-1, 1)
    return tf.data.Dataset.from_tensor_slices(({'x': x, 'sample_id': ids}, x**2)).batch(batch_size)


def get_learningRate():
    return 0.01


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'mean_squared_error'


def get_metrics(model, loss):
    return []


def get_served_module(model, model_name):
    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name='x')])
        def served_model(self, x):
            ids = tf.zeros(tf.shape(x)[:1], tf.int64)
            return {'prediction': self.model({'x': x, 'sample_id': ids}, training=False)}
    return Served()
