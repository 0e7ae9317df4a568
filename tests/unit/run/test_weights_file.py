"""run/weights_file.py: a weights file made from a recorded walk and copied values holds what Keras' own walk writes,
the values as they were when copied; the walk is made again when the model's variables change, and every time when
a layer writes a value it computes."""

import io

import h5py
import keras
import numpy as np

from experiments_manager.run.weights_file import WeightsCopy, WeightsFileMaker, weights_file_bytes


def contents(data):
    """{dataset path: array} and {group path: attributes} of a weights file's bytes."""
    datasets, attributes = {}, {}
    with h5py.File(io.BytesIO(bytes(data)), "r") as handle:
        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                datasets[name] = np.array(item)
            else:
                attributes[name] = dict(item.attrs)
        handle.visititems(visit)
    return datasets, attributes


def assert_same_file(got, expected):
    got_data, got_attributes = contents(got)
    expected_data, expected_attributes = contents(expected)
    assert list(got_data) == list(expected_data) and got_attributes == expected_attributes
    for name in expected_data:
        np.testing.assert_array_equal(got_data[name], expected_data[name], err_msg=name)


def models():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    nested = keras.Sequential([keras.layers.Dense(5, activation="relu"), keras.layers.BatchNormalization()])
    functional = keras.Model(inputs, keras.layers.Dense(2)(nested(inputs)))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder = keras.Sequential([keras.layers.Dense(4), keras.layers.Dropout(0.1)])
            self.head = keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.head(self.encoder(x, training=training))

    subclassed = Subclassed()
    subclassed(np.zeros((1, 6), "float32"))
    return {"functional": functional, "subclassed": subclassed}


def test_a_recorded_walk_writes_what_keras_writes_with_the_values_of_the_copy():
    for name, model in models().items():
        model.compile(optimizer="adam", loss="mse")
        model.optimizer.build(model.trainable_variables)
        maker = WeightsFileMaker(model, lambda model=model: [model.optimizer])
        first = maker.copy()
        assert_same_file(first.file_bytes(), weights_file_bytes(model, left_out=[model.optimizer]))
        before = weights_file_bytes(model, left_out=[model.optimizer])
        copied = maker.copy()
        assert isinstance(copied, WeightsCopy), name  # the walk reused: values copied only
        for variable in model.weights:  # training goes on after the copy
            variable.assign(variable + 1.0)
        assert_same_file(copied.file_bytes(), before)  # the file holds the values of the copy
        assert_same_file(maker.copy().file_bytes(), weights_file_bytes(model, left_out=[model.optimizer]))


def test_a_model_whose_variables_changed_is_walked_again():
    model = models()["functional"]
    maker = WeightsFileMaker(model, lambda: [])
    maker.copy()
    model.add_weight(shape=(3,), initializer="ones", name="added_later")  # a weight made after the first walk
    assert_same_file(maker.copy().file_bytes(), weights_file_bytes(model, left_out=[]))


def test_a_layer_that_writes_a_value_it_computes_is_walked_every_time():
    class Counted(keras.layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight(shape=(1,), initializer="ones")

        def call(self, x):
            return x * self.scale

        def save_own_variables(self, store):
            store["0"] = self.scale
            store["doubled"] = np.asarray(self.scale) * 2  # computed when saved

    inputs = keras.Input((2,))
    model = keras.Model(inputs, Counted()(inputs))
    maker = WeightsFileMaker(model, lambda: [])
    assert isinstance(maker.copy(), memoryview)  # the walk's own bytes
    model.layers[1].scale.assign([5.0])
    assert contents(maker.copy())[0]["layers/counted/vars/doubled"].tolist() == [10.0]
