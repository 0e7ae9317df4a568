'''
Noisy curve fitting fed from Kafka: the regression example with consume_data_from_kafka = True.

Publish the data, then train from the topics my_kafka_test_train / my_kafka_test_val
(any Kafka broker; see install/kafka/README.md):

    experiments-manager kafka-produce -u examples/kafka/mysettings_kafka_curve_fitting.py --bootstrap-servers HOST:PORT --epochs 20
    experiments-manager train -u examples/kafka/mysettings_kafka_curve_fitting.py --bootstrap-servers HOST:PORT

kafka-produce runs get_input_pipeline below; train reads the topics, not get_input_pipeline.
A killed run resumes where its last checkpoint stopped reading:

    experiments-manager train --resume EXPERIMENT_DIR
'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/examples/kafka_curve_fitting'
session_name = 'my_kafka_test'   # topics: <session_name>_train and <session_name>_val

hparams = {'hiddenNeurons': 32,
           'learningRate': 0.01,
           'nbEpoch': 20,
           'noiseStd': 0.3,
           }

model_file = 'examples/regression/model_curve_fitting.py'
random_seed = 42
nbEpoch = hparams['nbEpoch']
early_stopping_patience = 10
monitored_loss_name = 'val_loss'
batch_size = 50

########## KAFKA ################
consume_data_from_kafka = True
kafka_bootstrap_servers = ['localhost:9092']   # or: train/kafka-produce --bootstrap-servers host:port
kafka_config = {}                   # librdkafka properties: security.protocol, sasl.mechanism, ...
kafka_connect_timeout_secs = 10     # no broker answering at start: one error line after this
kafka_stall_timeout_secs = 120      # no record for this long mid-run: checkpoint, 'interrupted', exit 75
kafka_shuffle_buffer_size = 1000    # records shuffled together before batching (0: read order)
nb_train_samples = 2000             # an epoch: nb_train_samples // batch_size batches of the stream
nb_val_samples = 500                # samples kafka-produce publishes to the validation topic

########## SERVING ################
served_input_names = ['input']
served_head_names = ['prediction']

########## TRAIN/VAL FUNCTIONS ################
def get_learningRate():
    return hparams['learningRate']

def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)

def get_metrics(model, loss):
    return [tf.keras.metrics.mean_absolute_error]

def get_total_loss(model):
    return 'mean_squared_error'

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    ''' what kafka-produce publishes: x uniform in [-2, 2], y = x**2 + noise; a new draw at each call '''
    rng = np.random.default_rng()
    nb_samples = nb_train_samples if isTraining else nb_val_samples
    x = rng.uniform(-2, 2, size=(nb_samples, 1)).astype(np.float32)
    y = (x**2 + rng.normal(0.0, hparams['noiseStd'], size=x.shape)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

class Client_IO:
    ''' streams requests to a served model: random x values, prints the fit error '''
    def __init__(self, clientInitSpecs={}, debugMode=False):
        self.rng = np.random.default_rng(clientInitSpecs.get('seed', 0))

    def getInputData(self, idx):
        self.x = self.rng.uniform(-2, 2, size=[batch_size, 1]).astype(np.float32)
        return {served_input_names[0]: self.x}

    def decodeResponse(self, result):
        response = np.array(result.outputs[served_head_names[0]].float_val).reshape(self.x.shape)
        error = float(np.mean(np.abs(response - self.x**2)))
        print(f'mean absolute error vs x**2: {error:.4f}')
        return error

    def finalize(self):
        print('Prediction process ended')  # also after a failure: the command says the outcome after it
