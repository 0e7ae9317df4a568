"""Device selection and the tf.distribute strategy for a run."""

import logging
from typing import Any, Sequence

from experiments_manager.utils.errors import UserInputError

_LOG = logging.getLogger(__name__)


def select_devices(used_gpu_ids: Sequence[int], settings_name: str) -> list[str]:
    """Makes only the listed GPUs visible; [] keeps every GPU (or the CPU).

    Must run before TensorFlow initialises its devices.

    Returns:
        the names of the devices training will use, e.g. ['/gpu:0'] or ['/cpu:0'].
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if used_gpu_ids:
        unknown = [index for index in used_gpu_ids if index >= len(gpus)]
        if unknown:
            raise UserInputError(
                f"{settings_name}: used_gpu_IDs: expected ids among the {len(gpus)} visible GPUs, got {unknown}"
            )
        gpus = [gpus[index] for index in used_gpu_ids]
        tf.config.set_visible_devices(gpus, "GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if not gpus:
        return ["/cpu:0"]
    return [f"/gpu:{index}" for index in range(len(gpus))]


def make_strategy(strategy_name: str, devices: Sequence[str], settings_name: str) -> Any:
    """The settings' `distribution_strategy` when several devices are used, else the default one."""
    import tensorflow as tf

    if len(devices) <= 1:
        return tf.distribute.get_strategy()
    factory = getattr(tf.distribute, strategy_name, None)
    if factory is None or not callable(factory):
        raise UserInputError(
            f"{settings_name}: distribution_strategy: expected a tf.distribute strategy name "
            f"such as MirroredStrategy, got {strategy_name!r}"
        )
    _LOG.info("Training on %d devices with %s", len(devices), strategy_name)
    if strategy_name == "MirroredStrategy":
        return factory(devices=devices)
    return factory()
