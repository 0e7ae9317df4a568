"""What the settings name, checked against the built model before epoch 1: `loss_weights`' outputs, `class_names`
against the dataset's own."""

import types

from experiments_manager.training.model_checks import (check_class_names, check_layers_made_by_the_step,
                                                       check_loss_weights, check_output_keys)


def two_outputs():
    import keras

    inputs = keras.Input(shape=(3,))
    return keras.Model(inputs, {"value": keras.layers.Dense(1)(inputs), "positive": keras.layers.Dense(1)(inputs)})


def settings(**fields):
    return types.SimpleNamespace(path=types.SimpleNamespace(name="s.py"), model_file=types.SimpleNamespace(name="m.py"),
                                 training=types.SimpleNamespace(loss_weights=fields.get("loss_weights")),
                                 data=types.SimpleNamespace(class_names=fields.get("class_names")))


def test_loss_weights_and_a_dict_of_losses_name_the_outputs() -> None:
    model = two_outputs()
    problems: list = []
    check_loss_weights(problems, settings(loss_weights={"value": 1.0, "positive": 0.5}), model)
    check_loss_weights(problems, settings(loss_weights=[1.0, 0.5]), model)
    assert problems == []
    check_loss_weights(problems, settings(loss_weights={"valu": 1.0}), model)
    check_loss_weights(problems, settings(loss_weights=[1.0]), model)
    check_loss_weights(problems, settings(loss_weights={"value": 2.0}), model)
    assert problems == ["s.py: loss_weights: expected the model's output names (positive, value) as keys, got 'valu' "
                        "(did you mean 'value'?)",
                        "s.py: loss_weights: expected one weight per output (2: positive, value), got 1",
                        "s.py: loss_weights: expected a weight for every output (positive, value), got none for "
                        "'positive'"]
    problems.clear()
    check_output_keys(problems, settings(), model, "get_total_loss", {"value": "mse", "positive": "mse"})
    check_output_keys(problems, settings(), model, "get_total_loss", "mse")  # one loss for every output
    assert problems == []
    check_output_keys(problems, settings(), model, "get_total_loss", {"valeu": "mse"})
    assert problems == ["s.py: get_total_loss: expected the model's output names (positive, value) as keys, got "
                        "'valeu' (did you mean 'value'?)"]


def test_class_names_are_the_datasets_own_in_its_order() -> None:
    problems: list = []
    check_class_names(problems, settings(class_names=["a", "b"]), ["a", "b"])
    check_class_names(problems, settings(class_names=["a", "b"]), None)  # a dataset that does not say
    check_class_names(problems, settings(), ["a", "b"])
    check_class_names(problems, settings(class_names=["tench", "goldfish"]), ["n01440764", "n01443537"])  # display
    assert problems == []
    check_class_names(problems, settings(class_names=["b", "a"]), ["a", "b"])
    check_class_names(problems, settings(class_names=["a"]), ["a", "b"])
    assert problems == ["s.py: class_names: expected the dataset's own class names in its order (a, b), got b, a: its "
                        "class ids number them in that order; give that order, or pass class_names= to "
                        "image_dataset_from_directory",
                        "s.py: class_names: expected a name for each of the dataset's 2 classes (a, b), got 1"]


def test_a_layer_with_weights_the_own_step_makes_is_one_line_naming_it_and_the_fix() -> None:
    import keras

    class Lazy(keras.Model):
        def __init__(self):
            super().__init__()
            self.projector = keras.Sequential([keras.layers.Dense(2)])  # built by its first call: fine
            self.head = None

        def call(self, x):
            return self.projector(x)

        def train_step(self, data):  # (what the dry build ran once)
            if self.head is None:
                self.head = keras.layers.Dense(1)
            return {"loss": keras.ops.mean(self.head(self(data)))}

    model = Lazy()
    constructed = {id(layer) for layer in model._flatten_layers(include_self=False, recursive=False)}
    model.train_step(keras.ops.ones((2, 3)))
    problems: list = []
    check_layers_made_by_the_step(problems, settings(), model, constructed)
    assert problems == ["m.py: train_step: makes self.head (a Dense with weights) on its first call: a model rebuilt "
                        "from the model file to load a version would not have it; make it in __init__ (a Sequential "
                        "without keras.Input there is built by its first call)"]
