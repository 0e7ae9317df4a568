"""Dict inputs through adapted lookup layers and a normalisation, concatenated, then a small dense network."""
import tensorflow as tf


def model(usersettings):
    features, _ = usersettings.table(512, 0)
    city = tf.keras.layers.StringLookup(name='city_ids')
    city.adapt(features['city'])
    zone = tf.keras.layers.IntegerLookup(output_mode='one_hot', name='zone_one_hot')
    zone.adapt(features['zone'])
    size = tf.keras.layers.Normalization(axis=None, name='size_normalized')
    size.adapt(features['size'])
    inputs = {'city': tf.keras.Input(shape=(), dtype=tf.string, name='city'),
              'zone': tf.keras.Input(shape=(), dtype=tf.int64, name='zone'),
              'size': tf.keras.Input(shape=(), dtype=tf.float32, name='size')}
    city_vector = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(city.vocabulary_size(), 3)(city(inputs['city'])))
    size_column = tf.keras.layers.Reshape((1,))(size(inputs['size']))
    h = tf.keras.layers.Concatenate()([city_vector, zone(inputs['zone']), size_column])
    h = tf.keras.layers.Dense(usersettings.hparams['units'], activation='relu')(h)
    output = tf.keras.layers.Dense(1, activation='sigmoid', name='rented')(h)
    return tf.keras.Model(inputs, output, name='tabular')
