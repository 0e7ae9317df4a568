"""A block is shown by the attribute the model's code holds it in, else by its Keras name."""


def test_a_block_is_shown_by_its_attribute_else_by_its_keras_name() -> None:
    import keras

    class Pretraining(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.projector = keras.Sequential([keras.layers.Dense(2)])  # Keras names it `sequential...`
            self.head = keras.layers.Dense(1, name="classifier")

    from experiments_manager.utils.layer_names import holding_attributes, shown_name

    model = Pretraining()
    assert model.projector.name.startswith("sequential")
    assert holding_attributes(model)[id(model.projector)] == ["projector"]
    assert shown_name(model, model.projector) == "projector" and shown_name(model, model.head) == "head"
    inner = model.projector.layers[0]
    assert shown_name(model.projector, inner) == inner.name  # a Sequential's layers: held in a list, not by name
