"""When a model kept from a run's last attempt may continue it (`BuiltModel.why_not_continued`): the same strategy,
the same learning rate or schedule from the settings."""

import keras
import pytest
import tensorflow as tf

from experiments_manager.training.built_model import BuiltModel, same_learning_rate


def cosine(epochs):
    return keras.optimizers.schedules.CosineDecay(0.01, decay_steps=10 * epochs)


@pytest.mark.claim("a paused trial promoted by the worker that trained it continues with its model in memory, its "
                   "checkpoint restored into it")
def test_a_kept_model_continues_only_where_a_new_one_would_train_alike():
    default = tf.distribute.get_strategy()
    kept = BuiltModel(model=None, learning_rate=0.01, averages=None, strategy=default)
    assert kept.why_not_continued(default, 0.01) is None
    assert kept.why_not_continued(default, 0.02) == "get_learningRate() gives another rate or schedule now"
    assert kept.why_not_continued(object(), 0.01) == "another distribution strategy"
    assert BuiltModel(None, 0.01, None).why_not_continued(default, 0.01) == "another distribution strategy"
    scheduled = BuiltModel(None, cosine(1), None, strategy=default)
    assert scheduled.why_not_continued(default, cosine(1)) is None  # a schedule of the same configuration
    assert scheduled.why_not_continued(default, cosine(3)) is not None  # sized by nbEpoch: the next rung's differs


def test_learning_rates_compare_by_value_and_schedules_by_configuration():
    assert same_learning_rate(0.01, 0.01) and same_learning_rate(1, 1.0)
    assert not same_learning_rate(0.01, cosine(1)) and not same_learning_rate(cosine(1), 0.01)
    assert not same_learning_rate(object(), object())  # nothing to compare: built again
