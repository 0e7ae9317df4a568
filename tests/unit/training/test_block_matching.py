"""--init-from's matcher: blocks by name wherever they sit, then weights by order and shape; nothing guessed."""

import pytest

from experiments_manager.training.block_matching import Block, BlockCount, Weight, keras_block, match_blocks


def dense(name, inputs, units, aliases=()):
    return Block(name, (Weight(f"{name}/kernel", (inputs, units)), Weight(f"{name}/bias", (units,))), aliases=aliases)


def encoder(name="encoder", aliases=()):
    return Block(name, children=(Block("input_layer"), dense("conv", 3, 8), dense("dense", 8, 16)), aliases=aliases)


def counts(matching):
    return [(block.name, block.loaded, block.total) for block in matching.blocks]


@pytest.mark.claim("`--init-from` matches the blocks two models share by name wherever they sit (a subclass' "
                   "attribute, a functional model's layer), then their weights by order and shape")
def test_a_functional_probe_takes_the_encoder_a_subclass_holds_as_an_attribute():
    simclr = Block("simclr", children=(encoder("functional", aliases=("encoder",)), dense("projector", 16, 4),
                                       Block("augment")))
    probe = Block("probe", children=(Block("input_layer"), encoder(), dense("head", 16, 10)))
    matching = match_blocks(probe, simclr)
    assert (matching.loaded, matching.total) == (4, 6)
    assert counts(matching) == [("encoder", 4, 4), ("head", 0, 2)]
    assert [(new.path, old.path) for new, old in matching.pairs] == [
        ("conv/kernel", "conv/kernel"), ("conv/bias", "conv/bias"), ("dense/kernel", "dense/kernel"),
        ("dense/bias", "dense/bias")]
    assert matching.reasons == ["head/kernel: no block named 'head' in the source",
                                "head/bias: no block named 'head' in the source"]


def test_a_block_not_in_the_source_is_looked_into_for_blocks_that_are_at_any_depth():
    source = Block("gan", children=(Block("generator", children=(Block("body", children=(dense("stem", 2, 4),)),)),))
    new = Block("classifier", children=(Block("backbone", children=(dense("stem", 2, 4), dense("extra", 4, 4))),))
    matching = match_blocks(new, source)
    assert counts(matching) == [("backbone", 2, 4)]
    assert matching.reasons == ["extra/kernel: no block named 'extra' in the source",
                                "extra/bias: no block named 'extra' in the source"]


def test_a_block_of_another_shape_says_each_weight_shape_differences_first():
    source = Block("phase1", children=(encoder(), dense("head", 16, 3)))
    new = Block("phase2", children=(encoder(), Block("head", (Weight("head/kernel", (16, 4)),
                                                              Weight("head/bias", (3,)))), dense("extra", 2, 2)))
    matching = match_blocks(new, source)
    assert counts(matching) == [("encoder", 4, 4), ("head", 0, 2), ("extra", 0, 2)]
    assert matching.shared == ("encoder", "head")  # found by name: the head's shapes differ
    assert matching.reasons == ["head/kernel: expected the new model's shape (16, 4), got (16, 3)",
                                "head/bias: left with its layer (another of its weights does not fit)",
                                "extra/kernel: no block named 'extra' in the source",
                                "extra/bias: no block named 'extra' in the source"]


def test_a_block_named_twice_in_the_source_is_not_guessed():
    source = Block("two", children=(Block("left", children=(dense("head", 4, 2),)),
                                    Block("right", children=(dense("head", 4, 2),))))
    matching = match_blocks(Block("new", children=(dense("head", 4, 2),)), source)
    assert matching.loaded == 0
    assert matching.reasons == ["head/kernel: 2 blocks named 'head' in the source",
                                "head/bias: 2 blocks named 'head' in the source"]


def test_a_partly_changed_block_takes_its_own_weights_and_its_unchanged_sub_blocks():
    source = Block("old", children=(Block("encoder", (Weight("encoder/scale", (1,)),),
                                          (dense("conv", 3, 8), dense("dense", 8, 16))),))
    new = Block("new", children=(Block("encoder", (Weight("encoder/scale", (1,)),),
                                       (dense("conv", 3, 8), dense("dense", 8, 32))),))
    matching = match_blocks(new, source)
    assert counts(matching) == [("encoder", 3, 5)]
    assert [new.path for new, _ in matching.pairs] == ["encoder/scale", "conv/kernel", "conv/bias"]


def test_models_sharing_nothing_match_nothing_and_weightless_blocks_are_not_counted():
    matching = match_blocks(Block("a", children=(Block("dropout"), dense("x", 1, 1))),
                            Block("b", children=(dense("y", 1, 1),)))
    assert (matching.loaded, matching.total, matching.shared) == (0, 2, ())
    assert matching.blocks == (BlockCount("x", 0, 2),)


def test_keras_models_are_described_by_their_layers_names_and_the_attributes_holding_them():
    import keras

    inputs = keras.Input((3,))
    built = keras.Model(inputs, keras.layers.Dense(4, name="proj")(inputs), name="encoder_model")

    class Holder(keras.Model):
        def __init__(self):
            super().__init__(name="holder")
            self.encoder = built
            self.head = keras.layers.Dense(2, name="head")

        def call(self, x):
            return self.head(self.encoder(x))

    holder = Holder()
    holder(keras.ops.zeros((1, 3)))
    block = keras_block(holder)
    assert [(child.name, child.aliases) for child in block.children] == [("encoder_model", ("encoder",)),
                                                                       ("head", ("head",))]
    assert [(weight.path, weight.shape) for weight in block.all_weights()] == [  # as the code names the blocks
        ("encoder/proj/kernel", (3, 4)), ("encoder/proj/bias", (4,)), ("head/kernel", (4, 2)), ("head/bias", (2,))]
