"""The checks a settings value must pass (each returns None, or what was expected vs got), and fixed numbers.

The names a settings module defines, with their defaults and which check applies, are the fields of
`sections.py`. Names the engine does not know are left alone (the original framework's `served_input_names`, ...).
"""

import inspect
import numbers
from typing import Any, Callable, Optional, cast

from experiments_manager.run import served_layout

MIB = 1024 * 1024
DEFAULT_GRPC_PORT = served_layout.DEFAULT_GRPC_PORT  # TF Serving's ports, defined by the served layout
DEFAULT_REST_PORT = served_layout.DEFAULT_REST_PORT

Check = Callable[[Any], Optional[str]]  # a value -> None, or what was expected vs got


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive_int(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        return f"expected an int > 0, got {_describe(value)}"
    return None


def non_negative_int(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        return f"expected an int >= 0, got {_describe(value)}"
    return None


def optional_int(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"expected an int or None, got {_describe(value)}"
    return None


def port(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 < cast(int, value) < 65536:
        return f"expected a port number in 1..65535, got {_describe(value)}"
    return None


def unit_interval(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < cast(float, value) < 1.0:
        return f"expected a float in (0, 1), got {_describe(value)}"
    return None


def of_type(*types: type, name: Optional[str] = None) -> Check:
    label = name or " or ".join(t.__name__ for t in types)

    def check(value: Any) -> Optional[str]:
        if isinstance(value, bool) and bool not in types:
            return f"expected {label}, got {_describe(value)}"
        if not isinstance(value, types):
            return f"expected {label}, got {_describe(value)}"
        return None

    return check


def registered_model_name(value: Any) -> Optional[str]:
    """None, or a name MLflow's registry takes, `models:/NAME@ALIAS` can name and `serve --model` serves (the
    served model names' rule, `model_name_problem`): no '/', '..', ':', '@', '%' or spaces."""
    if value is None or (isinstance(value, str) and not any(c in value for c in ":@%")
                         and served_layout.model_name_problem(value) is None):
        return None
    return f"expected a name without '/', '..', ':', '@', '%' or spaces (or None), got {_describe(value)}"


def positive_number(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not cast(float, value) > 0:
        return f"expected a number of seconds > 0, got {_describe(value)}"
    return None


def list_of_ints(value: Any) -> Optional[str]:
    if not isinstance(value, (list, tuple)) or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value
    ):
        return f"expected a list of GPU ids (ints), got {_describe(value)}"
    return None


def list_of_strings(value: Any) -> Optional[str]:
    if not isinstance(value, (list, tuple)) or not value or any(not isinstance(v, str) for v in value):
        return f"expected a non-empty list of names (str), got {_describe(value)}"
    return None


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> Optional[str]:
        if value not in choices:
            return f"expected one of {', '.join(repr(choice) for choice in choices)}, got {_describe(value)}"
        return None

    return check


def dict_or_none(value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, dict):
        return f"expected a dict or None, got {_describe(value)}"
    return None


def loss_weights(value: Any) -> Optional[str]:
    """None, a list of numbers (one per output, in the model's order) or a dict output name -> number."""
    numbers = list(value.values()) if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else None
    if value is None:
        return None
    if numbers is None or not all(isinstance(number, (int, float)) and not isinstance(number, bool)
                                  for number in numbers):
        return ("expected a list of numbers (one per output) or a dict of numbers by output name, got "
                f"{_describe(value)}")
    if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
        return f"expected output names (strings) as keys, got {_describe(value)}"
    return None


def function(*parameters: str) -> Check:
    """A check for a callable that accepts the given positional parameters."""
    wanted = ", ".join(parameters)

    def check(value: Any) -> Optional[str]:
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


def a_class(value: Any) -> Optional[str]:
    if not inspect.isclass(value):
        return f"expected a class, got {_describe(value)}"
    return None


CLIENT_IO_METHODS = ("getInputData", "decodeResponse", "finalize")  # what the streaming client calls


def client_io_class(value: Any) -> Optional[str]:
    """A `Client_IO` class: `Client_IO(clientInitSpecs, debugMode)` with the methods the streaming client calls."""
    problem = a_class(value)
    if problem:
        return problem
    missing = [name for name in CLIENT_IO_METHODS if not callable(getattr(value, name, None))]
    if missing:
        return (f"expected a class with methods {', '.join(CLIENT_IO_METHODS)}; {value.__name__} lacks "
                f"{', '.join(missing)}")
    return function("clientInitSpecs", "debugMode")(value)
