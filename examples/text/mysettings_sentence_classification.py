'''
Sentence classification on generated sentences: short product reviews, positive, negative or neutral,
made by a seeded generator (no download). The model file holds a TextVectorization layer (a vocabulary: a
lookup table) adapted on the training sentences, an Embedding and a small classifier; the served signature
takes the raw sentences as strings.

    experiments-manager train -u examples/text/mysettings_sentence_classification.py
'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/examples/text'
session_name = 'reviews'

hparams = {'embed_dim': 16,
           'learningRate': 0.01,
           'nbEpoch': 6,
           }

model_file = 'examples/text/model_text_classifier.py'
random_seed = 3
nbEpoch = hparams['nbEpoch']
monitored_loss_name = 'val_accuracy'
batch_size = 32
nb_train_samples = 1024
nb_val_samples = 256
max_tokens = 200             # the vocabulary's size (TextVectorization)
sequence_length = 12         # tokens per sentence, padded or cut
class_names = ['negative', 'neutral', 'positive']
raw_data_dir_test = 'generated'   # evaluate's test set: get_input_pipeline(..., isTraining=False, ...)
useXLA = False
enable_mixed_precision = False

SUBJECTS = ['the phone', 'this kettle', 'the delivery', 'my new chair', 'the battery', 'the screen', 'this book',
            'the service', 'the camera', 'the app']
POSITIVE = ['great', 'excellent', 'wonderful', 'fantastic', 'reliable', 'lovely', 'superb', 'brilliant']
NEGATIVE = ['awful', 'terrible', 'broken', 'useless', 'disappointing', 'horrible', 'flimsy', 'poor']
NEUTRAL = ['arrived on tuesday', 'is blue', 'comes in a box', 'weighs two kilos', 'was ordered online',
           'has a manual', 'is made in france', 'came with a cable']
FILLERS = ['honestly', 'really', 'quite', 'so', 'very', 'truly']
LABEL_NOISE = 0.05           # a share of labels drawn at random: no model reaches 100 %


def make_sentences(nb_samples, seed):
    '''(sentences as bytes, labels 0 negative / 1 neutral / 2 positive) from a seeded generator; "not" turns a
    review around ("the phone is not great" is negative).'''
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(class_names), size=nb_samples)
    sentences = []
    for label in labels:
        subject = SUBJECTS[rng.integers(len(SUBJECTS))]
        if label == 1:
            sentences.append(f'{subject} {NEUTRAL[rng.integers(len(NEUTRAL))]}')
            continue
        negated = rng.random() < 0.4
        words = NEGATIVE if (label == 0) != negated else POSITIVE
        filler = FILLERS[rng.integers(len(FILLERS))] + ' ' if rng.random() < 0.5 else ''
        sentences.append(f'{subject} is {"not " if negated else ""}{filler}{words[rng.integers(len(words))]}'
                         + ('!' if rng.random() < 0.3 else ''))
    noisy = rng.random(nb_samples) < LABEL_NOISE
    labels[noisy] = rng.integers(0, len(class_names), size=int(noisy.sum()))
    return np.array(sentences, dtype=bytes), labels.astype(np.int32)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    sentences, labels = make_sentences(nb_train_samples if isTraining else nb_val_samples, 0 if isTraining else 1)
    dataset = tf.data.Dataset.from_tensor_slices((sentences, labels))
    if isTraining:
        dataset = dataset.shuffle(len(labels), seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return tf.keras.losses.SparseCategoricalCrossentropy()


def get_metrics(model, loss):
    return ['accuracy']


class Client_IO:
    ''' streams batches of fresh sentences to the served model as strings; prints each batch's accuracy and the
    first sentence's class '''
    def __init__(self, clientInitSpecs={}, debugMode=False):
        self.seed = clientInitSpecs.get('seed', 100)  # sentences the model never saw (training 0, validation 1)
        self.right = self.seen = 0

    def getInputData(self, idx):
        self.sentences, self.labels = make_sentences(batch_size, self.seed + idx)
        return {'text': self.sentences}

    def decodeResponse(self, result):
        probabilities = np.array(result.outputs['output_0'].float_val).reshape(len(self.labels), len(class_names))
        predicted = probabilities.argmax(axis=1)
        right = int(np.sum(predicted == self.labels))
        self.right, self.seen = self.right + right, self.seen + len(self.labels)
        print(f'{right}/{len(self.labels)} right; "{self.sentences[0].decode()}": {class_names[predicted[0]]} '
              f'({probabilities[0].max():.0%}), truly {class_names[self.labels[0]]}')
        return right / len(self.labels)

    def finalize(self):
        if self.seen:
            print(f'accuracy {self.right / self.seen:.1%} on {self.seen} sentences')
