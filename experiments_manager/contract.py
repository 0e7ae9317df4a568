"""The settings contract: which names a settings module defines, their types and defaults.

Names and call signatures are those of the original framework, so its settings
files run unchanged. The README (Writing a settings file) lists them; docs/architecture.md maps the code.
"""

import inspect
import numbers

MIB = 1024 * 1024
DEFAULT_GRPC_PORT = 8500  # TF Serving's ports
DEFAULT_REST_PORT = 8501


def _describe(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive_int(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        return f"expected an int > 0, got {_describe(value)}"
    return None


def non_negative_int(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        return f"expected an int >= 0, got {_describe(value)}"
    return None


def optional_int(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"expected an int or None, got {_describe(value)}"
    return None


def port(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 < value < 65536:
        return f"expected a port number in 1..65535, got {_describe(value)}"
    return None


def unit_interval(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
        return f"expected a float in (0, 1), got {_describe(value)}"
    return None


def of_type(*types, name=None):
    label = name or " or ".join(t.__name__ for t in types)

    def check(value):
        if isinstance(value, bool) and bool not in types:
            return f"expected {label}, got {_describe(value)}"
        if not isinstance(value, types):
            return f"expected {label}, got {_describe(value)}"
        return None

    return check


def positive_number(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        return f"expected a number of seconds > 0, got {_describe(value)}"
    return None


def list_of_ints(value):
    if not isinstance(value, (list, tuple)) or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value
    ):
        return f"expected a list of GPU ids (ints), got {_describe(value)}"
    return None


def one_of(*choices):
    def check(value):
        if value not in choices:
            return f"expected one of {', '.join(repr(choice) for choice in choices)}, got {_describe(value)}"
        return None

    return check


def dict_or_none(value):
    if value is not None and not isinstance(value, dict):
        return f"expected a dict or None, got {_describe(value)}"
    return None


def function(*parameters):
    """A check for a callable that accepts the given positional parameters."""
    wanted = ", ".join(parameters)

    def check(value):
        if not callable(value):
            return f"expected a function ({wanted}), got {_describe(value)}"
        try:
            inspect.signature(value).bind(*parameters)
        except TypeError:
            return f"expected a function ({wanted}), got one taking {inspect.signature(value)}"
        except ValueError:  # builtins without a signature: accept
            return None
        return None

    return check


def a_class(value):
    if not inspect.isclass(value):
        return f"expected a class, got {_describe(value)}"
    return None


# name -> check. Every one must be defined by the settings module.
REQUIRED = {
    "workingFolder": of_type(str),
    "session_name": of_type(str),
    "model_file": of_type(str),
    "batch_size": positive_int,
    "nbEpoch": positive_int,
    "get_input_pipeline": function("raw_data_files_folder", "isTraining", "batch_size", "nbEpoch"),
    "get_learningRate": function(),
    "get_optimizer": function("model", "loss", "learning_rate"),
    "get_total_loss": function("model"),
    "get_metrics": function("model", "loss"),
}

# name -> (default, check). A check of None accepts anything.
OPTIONAL = {
    "hparams": ({}, of_type(dict)),
    "random_seed": (None, optional_int),
    "useXLA": (False, of_type(bool)),
    "enable_mixed_precision": (False, of_type(bool)),
    "weights_moving_averages": (True, of_type(bool)),
    "ema_momentum": (0.99, unit_interval),
    "ema_warmup": (True, of_type(bool)),
    "validate_raw_weights": (True, of_type(bool)),
    "early_stopping_patience": (10, non_negative_int),
    "monitored_loss_name": ("val_loss", of_type(str)),
    "monitored_loss_mode": ("auto", one_of("auto", "min", "max")),
    "used_gpu_IDs": ([], list_of_ints),
    "distribution_strategy": ("MirroredStrategy", of_type(str)),
    "use_profiling": (False, of_type(bool)),
    "histogram_freq": (1, non_negative_int),
    "raw_data_dir_train": ("", None),
    "raw_data_dir_val": ("", None),
    "nb_train_samples": (None, optional_int),
    "nb_val_samples": (None, optional_int),
    "addon_callbacks": (None, function("model", "train_samples", "val_samples")),
    "custom_tensorboard_logs": (None, None),
    "get_served_module": (None, function("model", "model_name")),
    "save_only_last_best_model": (True, of_type(bool)),
    "export_versions_to_keep": (5, positive_int),
    "Client_IO": (None, a_class),
    "tensorflow_server_address": ("127.0.0.1", of_type(str)),
    "tensorflow_server_port": (DEFAULT_GRPC_PORT, port),
    "serving_client_timeout_int_secs": (10, of_type(int, float, name="a number of seconds")),
    "grpc_max_message_length": (512 * MIB, positive_int),
    "consume_data_from_kafka": (False, of_type(bool)),
    "kafka_bootstrap_servers": (["localhost:9092"], of_type(list, tuple, str, name="a list of host:port")),
    "kafka_config": ({}, of_type(dict)),
    "kafka_connect_timeout_secs": (10, positive_number),
    "kafka_stall_timeout_secs": (120, positive_number),
    "kafka_shuffle_buffer_size": (1000, non_negative_int),
    "enable_federated_learning": (False, of_type(bool)),
    "federated_round_timeout_secs": (600, positive_number),
    "get_client_partition": (None, function("dataset", "client_id", "num_clients", "isTraining")),
    "hyperopt_space": (None, dict_or_none),
}

# Present in settings files of the original framework; accepted and ignored.
IGNORED = (
    "served_input_names",
    "served_head_names",
    "reference_labels",
    "raw_data_filename_extension",
    "wait_for_server_ready_int_secs",
    "steps_per_epoch",
    "validation_steps",
    "serve_on_gpu",
    "debug",
)
