"""The settings' `hyperopt_space`: checked once, and turned into hparam overrides for each trial."""

from __future__ import annotations

import json
import numbers
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, cast

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings

QUANTIZED = ("quniform", "qloguniform", "qnormal", "qlognormal")
LOG_SCALED = ("loguniform", "qloguniform", "lognormal", "qlognormal")
SPACE_EXAMPLE = "{'learningRate': hp.loguniform('learningRate', -9, -2), 'hiddenNeurons': hp.quniform('hiddenNeurons', 4, 64, 4)}"


def _check_names_are_hparams(names: list[str], hparams: dict[str, Any], file_name: str) -> None:
    """A trial's sample is merged into `hparams`: a name that is no hparam (`'lr'` where the settings read
    `hparams['learningRate']`) would train every trial alike. One line per such name, with the closest hparam."""
    from experiments_manager.settings.spelling import closest_hparam

    problems: list[str] = []
    for name in names:
        if name in hparams:
            continue
        close = closest_hparam(name, hparams)  # 'lr' for 'learningRate'
        hint = f"; did you mean {close!r}?" if close else ""
        problems.append(f"{file_name}: hyperopt_space[{name!r}]: expected a key of hparams "
                        f"({', '.join(map(repr, hparams)) or 'none'}), got {name!r}{hint} (each trial's sample is "
                        f"merged into hparams: a key the settings do not read trains every trial alike; add it to "
                        f"hparams if they read it)")
    if problems:
        raise UserInputError(problems)


class SearchSpace:
    """The hparams a sweep samples: hparam name -> hyperopt expression.

    A sample whose distribution only yields whole numbers (`hp.quniform` with an
    integer step, `hp.randint`, `hp.uniformint`), or whose hparam is an int in
    the settings, is passed to the trial as an int, so `Dense(units)` and
    `range(n)` work in user code.

    Args:
        expressions: the settings' `hyperopt_space` dict.
        defaults: the settings' `hparams` (their types guide int conversion).
        file_name: the settings file, for error messages.

    Example:

    ```python
    space = SearchSpace.from_settings(settings)
    space.hparams_for({"learningRate": 0.003, "hiddenNeurons": 32.0})  # {..., 'hiddenNeurons': 32}
    ```
    """

    def __init__(self, expressions: Mapping[str, Any], defaults: Mapping[str, Any], file_name: str) -> None:
        self.expressions = dict(expressions)
        self.defaults = dict(defaults)
        self.file_name = file_name
        self.integer_names = {name for name, expression in self.expressions.items() if _yields_integers(expression)}

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchSpace:
        """Checks `settings.sweep.space`; raises UserInputError with one line per problem."""
        name = settings.path.name
        expressions = settings.sweep.space
        if not expressions:
            raise UserInputError(
                f"{name}: hyperopt_space: missing (a sweep needs a dict of hparam name -> hyperopt expression, "
                f"e.g. {SPACE_EXAMPLE})"
            )
        space = cls(_checked(expressions, name), settings.experiment.hparams, name)
        _check_names_are_hparams(space.names, settings.experiment.hparams, name)
        space.check_samples()
        return space

    @property
    def names(self) -> list[str]:
        return list(self.expressions)

    def check_samples(self) -> None:
        """Draws one sample: duplicate labels and bad bounds fail here, before any folder exists."""
        import numpy as np
        from hyperopt.pyll import stochastic

        try:
            sample = stochastic.sample(self.expressions, rng=np.random.default_rng(0))
        except Exception as error:  # hyperopt's own messages name the label
            raise UserInputError(f"{self.file_name}: hyperopt_space: cannot sample: {type(error).__name__}: {error}")
        hparams = self.hparams_for(sample)
        try:
            json.dumps(hparams)
        except TypeError as error:
            raise UserInputError(
                f"{self.file_name}: hyperopt_space: expected values a trial can receive (numbers, strings, bools, "
                f"None, lists), got {error}"
            ) from None

    def hparams_for(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """The hparam overrides of one trial, as plain Python values."""
        return {name: self._plain(name, sample[name]) for name in self.expressions}

    def is_log_scaled(self, name: str) -> bool:
        """True when the hparam is drawn on a log scale (plot it on one)."""
        return _distribution(self.expressions[name]) in LOG_SCALED

    def describe(self) -> dict[str, str]:
        """name -> the expression's text, for sweep.json."""
        return {name: _expression_text(expression) for name, expression in self.expressions.items()}

    def _plain(self, name: str, value: Any) -> Any:
        value = python_scalar(value)
        wants_int = name in self.integer_names or _is_int(self.defaults.get(name))
        if wants_int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value


def python_scalar(value: Any) -> Any:
    """A numpy scalar as Python's own (JSON and hparams take it); anything else as it is."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        return value.item()
    return value


def _checked(expressions: object, file_name: str) -> dict[str, Any]:
    from hyperopt import pyll

    if not isinstance(expressions, dict):
        raise UserInputError(f"{file_name}: hyperopt_space: expected a dict of hparam name -> hyperopt expression, "
                             f"got {type(expressions).__name__}")
    problems: list[str] = []
    for name, expression in expressions.items():
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(f"{file_name}: hyperopt_space: key {name!r}: expected an hparam name (a Python name)")
        elif not isinstance(expression, pyll.Apply):
            problems.append(f"{file_name}: hyperopt_space[{name!r}]: expected a hyperopt expression such as "
                            f"hp.uniform({name!r}, 0, 1), got {expression!r}")
    if problems:
        raise UserInputError(problems)
    return expressions


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _parameter_node(expression: Any) -> Any:  # (hyperopt's pyll nodes)
    from hyperopt import pyll

    for node in pyll.toposort(expression):
        if node.name == "hyperopt_param":
            return node
    return None


def _distribution(expression: Any) -> Optional[str]:
    node = _parameter_node(expression)
    return node.arg["obj"].name if node is not None else None


def _yields_integers(expression: Any) -> bool:
    """randint/uniformint, or a q-distribution whose step is a whole number."""
    node = _parameter_node(expression)
    if node is None:
        return False
    if expression.name in ("int", "switch"):  # randint/uniformint; hp.choice returns its options as they are
        return cast(bool, expression.name == "int")  # (a pyll node: Any)
    distribution = node.arg["obj"]
    if distribution.name in QUANTIZED:
        step = distribution.arg.get("q")
        value = step.obj if step is not None and step.name == "literal" else None
        return isinstance(value, numbers.Real) and float(value).is_integer()
    return False


def _expression_text(expression: Any) -> str:
    node = _parameter_node(expression)
    if node is None:
        return str(expression)
    if expression.name == "switch":
        return f"choice({_arguments_text(expression.inputs()[1:])})"
    distribution = node.arg["obj"]
    return f"{distribution.name}({_arguments_text(distribution.inputs())})"


def _arguments_text(arguments: Iterable[Any]) -> str:
    return ", ".join(repr(argument.obj) if argument.name == "literal" else argument.name for argument in arguments)
