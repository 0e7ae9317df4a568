'''
Federated curve fitting: the regression example (y = x**2 + noise) split across Flower clients.

A centralised settings file becomes federated with `enable_federated_learning = True` and a few
hparams: the strategy ('federated'), the client counts (minCl/minFit) and the rounds. Each client
trains nbEpoch local epochs per round; client i loads this file with hparams['procID'] = i. The server
evaluates the global model every round; 'minEval': N would have clients evaluate it on their data too
(one more message per client and round).

    # simulated on this machine (Flower's simulation engine)
    experiments-manager federated simulate -u examples/federated/mysettings_federated_curve_fitting.py --num-clients 3
    # non-IID: each client only sees its own slice of x
    experiments-manager federated simulate -u examples/federated/mysettings_federated_curve_fitting.py --hparam nonIID=True
    # deployed: a SuperLink, one SuperNode per data holder, then `federated run` (see README "Federated training")
'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/examples/federated_curve_fitting'
session_name = 'federated'

hparams = {'hiddenNeurons': 32,
           'learningRate': 0.01,
           'nbEpoch': 2,          # local epochs per round
           'noiseStd': 0.3,
           'federated': 'FedAvg', # any Flower strategy: FedProx (with proximal_mu), FedAdam (eta, ...), ...
           'minCl': 2,            # clients connected before a round starts
           'minFit': 2,           # clients that must train in each round
           'rounds': 5,
           'nonIID': False,       # True: client i only sees x in the i-th slice of [-2, 2]
           'procID': 0,           # the client id, set by the engine for each client
           }

enable_federated_learning = True
federated_round_timeout_secs = 300

used_gpu_IDs = []
model_file = 'examples/regression/model_curve_fitting.py'
weights_moving_averages = True
random_seed = 42

nbEpoch = hparams['nbEpoch']
early_stopping_patience = 10
monitored_loss_name = 'val_loss'

nb_train_samples = 2000
nb_val_samples = 500
batch_size = 50

tensorflow_server_address = '127.0.0.1'
tensorflow_server_port = 8500
served_input_names = ['input']
served_head_names = ['prediction']

def x_range(client_id, num_clients):
    ''' the slice of [-2, 2] a client sees in the non-IID setting '''
    width = 4.0 / num_clients
    return -2 + client_id * width, -2 + (client_id + 1) * width

def get_learningRate():
    return hparams['learningRate']

def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)

def get_metrics(model, loss):
    return [tf.keras.metrics.mean_absolute_error]

def get_total_loss(model):
    return 'mean_squared_error'

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    ''' generated data: x uniform in [-2, 2], y = x**2 + noise (non-IID: moved by get_client_partition) '''
    client_id = int(hparams['procID'])
    rng = np.random.default_rng((0 if isTraining else 1) + 10 * client_id)
    nb_samples = nb_train_samples if isTraining else nb_val_samples
    x = rng.uniform(-2, 2, size=(nb_samples, 1)).astype(np.float32)
    y = (x**2 + rng.normal(scale=hparams['noiseStd'], size=x.shape)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if isTraining:
        dataset = dataset.shuffle(nb_samples, seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

def get_client_partition(dataset, client_id, num_clients, isTraining):
    ''' IID: every client keeps one batch in num_clients. Non-IID: client i keeps every sample, moved into the
    i-th of num_clients slices of [-2, 2] (its own part of the curve, same noise). Validation is shared. '''
    if not isTraining:
        return dataset
    if not hparams['nonIID']:
        return dataset.shard(num_clients, client_id)
    low, high = x_range(client_id, num_clients)

    def into_slice(x, y):
        moved = low + (x + 2.0) / 4.0 * (high - low)
        return moved, y - x**2 + moved**2

    return dataset.map(into_slice)

def get_served_module(model, model_name):
    class ExportedModule(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec(shape=[None, 1], dtype=tf.float32, name=served_input_names[0])])
        def served_model(self, input):
            return {served_head_names[0]: self.model(input, training=False)}
    return ExportedModule(model)

class Client_IO:
    ''' streams random x values to the served global model and prints its error '''
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
