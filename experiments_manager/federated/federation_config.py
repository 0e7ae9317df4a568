"""The shape of a federation, read from the settings' hparams (the original framework's names).

| hparams key  | meaning                                                      | default      |
|--------------|--------------------------------------------------------------|--------------|
| `federated`  | a Flower strategy name (FedAvg, FedProx, FedAdam, ...)       | `'FedAvg'`   |
| `minCl`      | clients that must be connected before a round starts         | 2            |
| `minFit`     | clients that must train (and answer) in every round          | `minCl`      |
| `minEval`    | clients that evaluate the global model on their data         | `minFit`     |
| `rounds`     | federated rounds (`--rounds` overrides)                      | 20           |
| other keys   | named like a parameter of the strategy (`proximal_mu`, `eta`, `fraction_train`, ...) are passed to it |

A `--hparam` override of a key the settings' hparams lack must be one of these (a key above, or a parameter of the
chosen strategy), or be asked for as new (`+name`): a misspelt `proximal_muu` is refused with the closest name.

Each client trains `nbEpoch` local epochs per round. The server evaluates the global model after every round;
clients evaluate it on their own validation data too only when the settings ask for it: `hparams['minEval']` set
(at least that many clients evaluate, all of them unless `fraction_evaluate` says less, as in the original framework),
or `hparams['fraction_evaluate'] > 0`; `fraction_evaluate = 0` turns it off. Otherwise a round is one message per
client.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Iterable, Optional

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from flwr.serverapp.strategy import Strategy

    from experiments_manager.settings.loader import Settings

DEFAULT_STRATEGY = "FedAvg"
DEFAULT_ROUNDS = 20
# Set from minCl/minFit/minEval, never from hparams of the same name.
_NODE_COUNTS = ("min_available_nodes", "min_train_nodes", "min_evaluate_nodes")
# Strategies that wrap another strategy or train gradient-boosted trees: not buildable from hparams alone.
_NOT_FROM_HPARAMS = ("Bulyan", "FedXgbBagging", "FedXgbCyclic")


class FederationConfig:
    """Strategy, client counts and rounds of one federation.

    Args:
        strategy_name: a Flower strategy class name.
        strategy_parameters: keyword arguments for the strategy (besides the node counts).
        min_clients: `minCl`.
        min_fit: `minFit`.
        min_eval: `minEval`.
        rounds: number of rounds.
        round_timeout: seconds to wait for clients to connect, or to answer, in a round.
        client_evaluation: whether clients evaluate the global model too (default False: the server does).

    Example:

    ```python
    config = FederationConfig.from_settings(settings, rounds=3)
    strategy = config.strategy_class()(**config.strategy_arguments())
    ```
    """

    def __init__(self, strategy_name: str, strategy_parameters: dict[str, Any], min_clients: int, min_fit: int,
                 min_eval: int, rounds: int, round_timeout: float, client_evaluation: bool = False) -> None:
        self.strategy_name = strategy_name
        self.strategy_parameters = strategy_parameters
        self.min_clients = min_clients
        self.min_fit = min_fit
        self.min_eval = min_eval
        self.rounds = rounds
        self.round_timeout = round_timeout
        self.client_evaluation = client_evaluation

    @classmethod
    def from_settings(cls, settings: Settings, rounds: Optional[int] = None,
                      num_clients: Optional[int] = None) -> FederationConfig:
        """Reads and checks the federation hparams.

        Args:
            settings: the loaded `Settings`.
            rounds: `--rounds`, overriding `hparams['rounds']`.
            num_clients: the number of simulated clients, when known (minCl defaults to it).

        Raises:
            UserInputError: one line per bad value, naming the settings file and the hparam.
        """
        hparams = settings.experiment.hparams
        name = settings.path.name
        problems: list[str] = []

        def count(key: str, default: int) -> int:
            value: object = hparams.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: hparams['{key}']: expected an int >= 1, got {value!r}")
                return default
            return value

        min_clients = count("minCl", num_clients or 2)
        min_fit = count("minFit", min_clients)
        min_eval = count("minEval", min_fit)
        rounds = rounds if rounds is not None else count("rounds", DEFAULT_ROUNDS)
        for key, value in (("minFit", min_fit), ("minEval", min_eval)):
            if value > min_clients:
                problems.append(f"{name}: hparams['{key}']: expected <= minCl ({min_clients}), got {value}")
        if num_clients is not None and min_clients > num_clients:
            problems.append(f"{name}: hparams['minCl']: {min_clients} clients required but only {num_clients} "
                            "simulated (--num-clients): the federation would wait forever")
        strategy_name = hparams.get("federated", DEFAULT_STRATEGY)
        available = available_strategies()
        if strategy_name not in available:
            problems.append(f"{name}: hparams['federated']: unknown Flower strategy {strategy_name!r}; "
                            f"expected one of {', '.join(sorted(available))}")
        if problems:
            raise UserInputError(problems)
        strategy_class = available[strategy_name]
        _check_overrides(settings, strategy_name, _strategy_parameters(strategy_class))
        chosen = {key: hparams[key] for key in _strategy_parameters(strategy_class)
                  if key in hparams and key not in _NODE_COUNTS}
        fraction = chosen.get("fraction_evaluate", 1.0 if "minEval" in hparams else 0.0)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise UserInputError(f"{name}: hparams['fraction_evaluate']: expected a number from 0 to 1, got "
                                 f"{fraction!r}")
        missing = [key for key in _required_parameters(strategy_class) if key not in chosen]
        if missing:
            raise UserInputError(f"{name}: hparams: {strategy_name} needs {', '.join(repr(key) for key in missing)} "
                                 "(named like its parameters)")
        return cls(strategy_name, chosen, min_clients, min_fit, min_eval, rounds, settings.federated.round_timeout_secs,
                   client_evaluation=fraction > 0)

    def strategy_class(self) -> type[Strategy]:
        return available_strategies()[self.strategy_name]

    def strategy_arguments(self) -> dict[str, Any]:
        """Keyword arguments of the strategy: the node counts and the hparams named like its parameters."""
        return {
            **self.strategy_parameters,
            "min_available_nodes": self.min_clients,
            "min_train_nodes": self.min_fit,
            "min_evaluate_nodes": self.min_eval,
        }

    def describe(self) -> str:
        parameters = "".join(f", {key}={value!r}" for key, value in sorted(self.strategy_parameters.items()))
        evaluating = f", minEval={self.min_eval}" if self.client_evaluation else ""  # said only where it counts
        return (f"{self.strategy_name}(minCl={self.min_clients}, minFit={self.min_fit}{evaluating}"
                f"{parameters}), {self.rounds} rounds, "
                + ("clients evaluate too" if self.client_evaluation else "server-side evaluation only"))


def available_strategies() -> dict[str, type[Strategy]]:
    """Flower's strategies that can be built from hparams: name -> class."""
    from flwr.serverapp import strategy as strategies

    found: dict[str, type[Strategy]] = {}
    for name, value in vars(strategies).items():
        if not (inspect.isclass(value) and issubclass(value, strategies.Strategy)) or inspect.isabstract(value):
            continue
        if name in _NOT_FROM_HPARAMS or "strategy" in _strategy_parameters(value):
            continue
        found[name] = value
    return found


FEDERATION_KEYS = ("federated", "minCl", "minFit", "minEval", "rounds")  # the table above


def _check_overrides(settings: Settings, strategy_name: str, parameters: Iterable[str]) -> None:
    """One line per override the file's hparams lack that is neither a federation key nor a parameter of the
    strategy (`settings.unknown_overrides`: the loader leaves those of a federated file to this check)."""
    from experiments_manager.settings.spelling import closest_hparam

    unknown = settings.unknown_overrides
    own = [key for key in settings.experiment.hparams if key not in unknown]  # the overrides are merged in already
    known = [*own, *FEDERATION_KEYS, *parameters]
    problems: list[str] = []
    for key in sorted(set(unknown) - set(known)):
        close = closest_hparam(key, known)
        hint = f" (did you mean {close!r}?)" if close else ""
        problems.append(f"{settings.path.name}: hparams: --hparam {key}={settings.overrides[key]!r}: expected a key of "
                        f"the settings' hparams, a federation key ({', '.join(FEDERATION_KEYS)}) or a parameter of "
                        f"{strategy_name}, got {key!r}{hint}; a new hparam is added explicitly: --hparam +{key}=...")
    if problems:
        raise UserInputError(problems)


def _strategy_parameters(strategy_class: type[Strategy]) -> list[str]:
    return [name for name in inspect.signature(strategy_class.__init__).parameters if name != "self"]


def _required_parameters(strategy_class: type[Strategy]) -> list[str]:
    parameters = inspect.signature(strategy_class.__init__).parameters.values()
    return [parameter.name for parameter in parameters
            if parameter.name != "self" and parameter.default is inspect.Parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]
