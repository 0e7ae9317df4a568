'''A text classifier: raw sentences in (strings), a TextVectorization layer whose vocabulary is adapted on the
training sentences, an Embedding, average pooling and a softmax over the classes.'''

import tensorflow as tf


def model(usersettings):
    sentences, _ = usersettings.make_sentences(usersettings.nb_train_samples, 0)
    vectorize = tf.keras.layers.TextVectorization(max_tokens=usersettings.max_tokens,
                                                  output_sequence_length=usersettings.sequence_length,
                                                  name='vectorize')
    vectorize.adapt(sentences)
    inputs = tf.keras.Input(shape=(), dtype=tf.string, name='text')
    h = vectorize(inputs)
    h = tf.keras.layers.Embedding(usersettings.max_tokens, usersettings.hparams['embed_dim'], mask_zero=True)(h)
    h = tf.keras.layers.GlobalAveragePooling1D()(h)
    h = tf.keras.layers.Dense(16, activation='relu')(h)
    probabilities = tf.keras.layers.Dense(len(usersettings.class_names), activation='softmax', dtype='float32',
                                          name='probabilities')(h)
    return tf.keras.Model(inputs, probabilities, name='text_classifier')
