"""Loads a settings module (or reads a settings object built in Python) and checks it against the sections.

A settings file is trusted Python code, executed once under a unique module name, with hparam overrides merged in
memory (`overrides.py`): it is never rewritten on disk.
"""

import ast
import importlib.util
import logging
import sys
import types
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union, cast

import experiments_manager.settings.sections as sections
from experiments_manager.utils.environment_failures import environment_failure_line
from experiments_manager.utils.errors import UserInputError, frames_in

from experiments_manager.settings.overrides import (MERGE_FUNCTION_NAME, HparamMerge, apply_to_settings,
                                                    split_new_hparams, with_merges)
from experiments_manager.settings.extras import missing_module_line
from experiments_manager.settings.model_file import check_model_file, resolve_model_file
from experiments_manager.settings.script import ScriptSource, existing_settings_file, make_importable
from experiments_manager.settings.spelling import warn_of_misspelt_names

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment

SETTINGS_MODULE_PREFIX = "experiments_manager_settings_"  # + a uuid: each load is its own module
MODEL_MODULE_PREFIX = "experiments_manager_model_"
_LOG = logging.getLogger(__name__)
_OWN_MODULE_PREFIXES = (SETTINGS_MODULE_PREFIX, MODEL_MODULE_PREFIX)


class Settings:
    """A loaded and validated settings module, as typed sections (see `sections.py`).

    Args:
        module: the executed settings module (given to `model(usersettings)` and `Client_IO`, defaults filled in).
        path: the settings file.
        model_file: the resolved model file.
        overrides: the hparam overrides that were applied.
        unknown_overrides: those that name no key of the file's hparams, no setting and no new hparam (`+name`): a
            federated file's, which the federation checks against its strategy's parameters (default: none).
        script: the settings file as its code sees it (`__file__`; default: `path`). A resume executes the run's
            copy as the user's file (see `script.py`).
        model_script: the model file as its code sees it (default: `model_file`).

    Attributes:
        experiment, ..., sweep, tracking: the sections (`sections.SECTIONS`),
            e.g. `settings.training.epochs` (the module's `nbEpoch`).
    """

    def __init__(self, module: types.ModuleType, path: Union[str, Path], model_file: Union[str, Path],
                 overrides: Mapping[str, Any], from_file: bool = True, script: Optional[Union[str, Path]] = None,
                 model_script: Optional[Union[str, Path]] = None,
                 unknown_overrides: Iterable[str] = frozenset()) -> None:
        self.module = module
        self.path = Path(path)
        self.model_file = Path(model_file)
        self.script = Path(script) if script is not None else self.path
        self.model_script = Path(model_script) if model_script is not None else self.model_file
        self.overrides = dict(overrides)
        self.unknown_overrides = frozenset(unknown_overrides)
        self.from_file = from_file  # False: built from a Python object (a notebook's); `path` is then its label
        built = sections.build(module)  # named one by one below, so that editors complete them
        self.experiment: sections.ExperimentSection = built["experiment"]
        self.runtime: sections.RuntimeSection = built["runtime"]
        self.training: sections.TrainingSection = built["training"]
        self.data: sections.DataSection = built["data"]
        self.monitoring: sections.MonitoringSection = built["monitoring"]
        self.export: sections.ExportSection = built["export"]
        self.serving: sections.ServingSection = built["serving"]
        self.kafka: sections.KafkaSection = built["kafka"]
        self.federated: sections.FederatedSection = built["federated"]
        self.sweep: sections.SweepSection = built["sweep"]
        self.tracking: sections.TrackingSection = built["tracking"]
        self.model_modules: list[str] = []  # the model files' modules `build_model` imported for these settings
        # lines said once for these settings (a data folder found from the run's folder)
        self.said: set[tuple[str, Any, str]] = set()

    def release(self) -> None:
        """Removes the modules that loading these settings and building their models added to `sys.modules`.

        A long-lived process that loads settings per message (a federated client) calls it when the message is
        done, so that it does not keep every message's modules, and what they hold, for good. Objects made from
        them stay usable.
        """
        names = [self.module.__name__] if self.from_file else []
        for name in names + self.model_modules:
            if sys.modules.get(name) is not None and name.startswith(_OWN_MODULE_PREFIXES):
                del sys.modules[name]
        self.model_modules.clear()

    def train_for(self, epochs: int) -> None:
        """Makes these settings train `epochs` epochs in all instead of their `nbEpoch` (a run extended by
        `train --resume RUN --epochs N`): `training.epochs`, and the module's `nbEpoch`, which the settings'
        functions and the model file may read when called. A value the module computed from `nbEpoch` as it was
        executed (a schedule's length, say) keeps the original count.

        Example:

        ```python
        settings.train_for(6)
        settings.training.epochs   # 6
        ```
        """
        import dataclasses

        self.training = dataclasses.replace(self.training, epochs=int(epochs))
        try:
            setattr(self.module, sections.user_name("training", "epochs"), int(epochs))
        except (AttributeError, TypeError):  # a settings object built in Python that takes no new attribute
            pass

    @property
    def model_name(self) -> str:
        """The served model name: the model file's name without `.py` (checked as loaded: `served_layout.py`)."""
        return self.model_file.stem

    def __repr__(self) -> str:
        return (f"<Settings {self.path if self.from_file else self.path.name} (model {self.model_file.name}, "
                f"hparams {self.experiment.hparams!r})>")


def load_settings(path: Union[str, Path], hparam_overrides: Optional[Mapping[str, Any]] = None,
                  model_file: Optional[Union[str, Path]] = None, script: Optional[Union[str, Path]] = None,
                  model_script: Optional[Union[str, Path]] = None, strict: bool = True) -> Settings:
    """Executes and validates a settings file, as `python path` would run it: its folder importable, `__file__`
    the file.

    Args:
        path: the settings file.
        hparam_overrides: dict merged into `hparams` as soon as the module
            assigns it (so module-level reads see the overrides); each key must be a key of the file's hparams
            or a setting's name, or start with `+` (a new hparam).
        model_file: use this model file instead of the settings' `model_file`
            (a resumed run uses the copy in its experiment folder).
        script: what the settings' code sees as `__file__`, whose folder is made importable (default: `path`;
            a resume passes the user's file while executing the run's copy).
        model_script: the same for the model file (default: the model file).
        strict: an override that names no key of the file's hparams (and no setting) is a problem (default True;
            False: added with one warning line, for a run's recorded overrides).

    Returns:
        a `Settings` (its `overrides` by hparam name, without `+`).

    Raises:
        UserInputError: every problem found, one line each.

    Example:

    ```python
    settings = load_settings("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 2})
    settings.training.epochs  # 2 (the module's nbEpoch)
    ```
    """
    path = existing_settings_file(path)
    overrides, new = split_new_hparams(hparam_overrides or {})
    script = Path(script) if script is not None else path
    merge = HparamMerge(overrides, path.name, sections.NAMES, new, strict)
    module = _execute(path, merge, script)
    problems = sections.problems_of(module, path.name)
    warn_of_misspelt_names(module, path.name)
    resolved_model_file: Optional[Path] = None
    if model_file is not None:
        resolved_model_file = Path(model_file)
    elif isinstance(getattr(module, "model_file", None), str):
        resolved_model_file = resolve_model_file(module.model_file, script, problems)  # beside the user's file
    if resolved_model_file is not None:
        problems += check_model_file(resolved_model_file, path.name)
    if problems:
        raise UserInputError(problems)
    _fill_defaults(module)
    assert resolved_model_file is not None  # model_file is required: missing or not found is a problem above
    return Settings(module, path, resolved_model_file, overrides, script=script, model_script=model_script,
                    unknown_overrides=merge.unknown() if strict else ())


def as_settings(settings: object, hparam_overrides: Optional[Mapping[str, Any]] = None) -> Settings:
    """The `Settings` of what a caller gave: a loaded `Settings` (its file was executed once, with its
    overrides), a settings file's path, or a settings module or object built in Python (a notebook's).

    Example:

    ```python
    settings = as_settings("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 2})
    as_settings(settings) is settings  # True
    ```
    """
    if isinstance(settings, Settings):
        if hparam_overrides:
            raise ValueError("hparam_overrides: apply them when loading the settings")
        return settings
    if isinstance(settings, (str, Path)):
        return load_settings(settings, hparam_overrides)
    return settings_from_object(settings, hparam_overrides)  # a class, module, namespace or dict built in Python


def settings_from_object(source: object, hparam_overrides: Optional[Mapping[str, Any]] = None,
                         model_file: Optional[Union[str, Path]] = None) -> Settings:
    """The `Settings` of a settings class, module, object or dict built in Python, e.g. in a notebook.

    Its attributes as they are now (a class's, a module's, a `types.SimpleNamespace`'s, a dict's items) are the
    module-level names of a settings file. Hparam overrides are refused: its functions read its own `hparams`, so set
    them there. Such an experiment resumes from Python only (`em.resume(folder, settings=...)`): there is no file to
    copy. Its model file is resolved against the current directory (a module's: also its own folder).

    Args:
        source: the settings object.
        hparam_overrides: must be empty (see above).
        model_file: use this model file instead of the object's `model_file` (a resume uses the experiment's copy).

    Example:

    ```python
    class MySettings:
        workingFolder = "experiments"
        ...
    settings = settings_from_object(MySettings)
    ```
    """
    label = getattr(source, "__name__", None) or type(source).__name__
    if hparam_overrides:  # its functions read its own hparams dict, which a merged copy would not change
        raise UserInputError(f"{label}: hparams overrides {sorted(hparam_overrides)}: only for a settings file "
                             f"(whose module-level code re-reads hparams); for settings built in Python, set them in "
                             f"the object itself, e.g. {label}.hparams[{next(iter(hparam_overrides))!r}] = ...")
    values = dict(source) if isinstance(source, dict) else {
        name: getattr(source, name) for name in dir(source) if not name.startswith("__")}
    module = types.ModuleType(f"{SETTINGS_MODULE_PREFIX}{uuid.uuid4().hex}")
    module.__dict__.update(values)
    problems = sections.problems_of(module, label)
    warn_of_misspelt_names(module, label)
    source_file = getattr(source, "__file__", None) if isinstance(source, types.ModuleType) else None
    where = Path(source_file).parent / label if source_file else Path.cwd() / label
    if model_file is not None:
        model_file = Path(model_file)
    elif isinstance(getattr(module, "model_file", None), str):
        model_file = resolve_model_file(module.model_file, where, problems)
    if model_file is not None:
        problems += check_model_file(model_file, label)
    if problems:
        raise UserInputError(problems)
    _fill_defaults(module)
    assert model_file is not None  # model_file is required: missing or not found is a problem above
    return Settings(module, where, model_file, {}, from_file=False)


def load_experiment_settings(experiment: "Experiment", settings: object = None, announce: bool = False,
                             source: str = "copy") -> Settings:
    """The settings an experiment ran with: its own copies and its recorded hparam overrides.

    The copies are executed as the user's files (`__file__` and importable folder, see `script.py`).

    Args:
        settings: for an experiment whose settings were built in Python (there was no file to copy), the same
            settings object again (its model file is the experiment's copy); otherwise None.
        announce: log one line per user's file that differs from the run's copy or is gone (default False; a
            resume says it).
        source: 'copy' (default) or 'original': the user's files run instead of the copies (`--settings-source`).
    """
    experiment.refuse_foreign_code()  # another user's copies run only if trusted: before anything of the folder runs
    info = experiment.run_info()
    built_in_python = info.get("settings_object")
    if settings is not None:
        if not built_in_python:
            raise UserInputError(f"{experiment.root}: settings: only for an experiment whose settings were built in "
                                 "Python; this one resumes from its own copy of its settings file (leave it out)")
        return settings_from_object(settings, model_file=experiment.model_file_copy())
    if built_in_python:
        raise UserInputError(f"{experiment.root}: its settings were built in Python ({built_in_python}), "
                             "not read from a file: resume it from Python with "
                             "em.resume(folder, settings=<the same settings>)")
    original = source == "original"
    settings_source = ScriptSource.of(experiment.settings_copy, info.get("settings_file"), original, experiment.root)
    model_source = ScriptSource.of(experiment.model_file_copy(), info.get("model_file"),
                                   original and info.get("model_file") is not None, experiment.root)
    if original and info.get("model_file") is None:
        _LOG.warning("%s: run.json records no model file (an older engine wrote it): the model file's copy runs",
                     experiment.root)
    for copy in (settings_source, model_source) if announce else ():
        if copy.changed:
            _LOG.warning("%s differs from the run's copy %s: the copy runs (the code this run trained with; "
                         "to train on with your edited file: train --resume %s --settings-source original)",
                         copy.script, copy.runs.name, experiment.root)
        elif copy.gone:
            _LOG.warning("%s, which this run started from, is gone: its copy %s runs, with that path as __file__",
                         copy.script, copy.runs.name)
    return load_settings(settings_source.runs, info.get("hparam_overrides"), model_file=model_source.runs,
                         script=settings_source.script, model_script=model_source.script, strict=False)


def _execute(path: Path, merge: HparamMerge, script: Path) -> types.ModuleType:
    source = path.read_text()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise UserInputError(f"{path.name}: line {error.lineno}: syntax error: {error.msg}") from None
    tree.body = with_merges(tree.body)
    ast.fix_missing_locations(tree)
    code = compile(tree, str(path), "exec")

    from experiments_manager.keras2.namespaces import install_keras2_compatibility

    install_keras2_compatibility()
    name = f"{SETTINGS_MODULE_PREFIX}{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    assert spec is not None  # spec_from_loader without a loader always makes one
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(script.absolute())  # as `python script` says it: the user's file, also on resume
    make_importable(script.parent)  # `from helpers import load`, helpers.py beside the settings file
    setattr(module, MERGE_FUNCTION_NAME, merge)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        exec(code, module.__dict__)
    except Exception as error:  # user code failed at import: report where
        del sys.modules[name]
        if isinstance(error, OSError) and environment_failure_line(error) is not None:
            raise  # the machine's failure (a full disk as the settings fetch data): exit 75, not the user's mistake
        line = _line_in(error, str(path))
        if isinstance(error, ModuleNotFoundError):
            raise UserInputError(f"{path.name}: line {line}: {missing_module_line(error)}") from None
        raise UserInputError(
            f"{path.name}: line {line}: error while running the settings module: "
            f"{type(error).__name__}: {error}"
        ) from None
    overrides = merge.overrides
    if not hasattr(module, "hparams") and overrides:
        cast(Any, module).hparams = dict(overrides)  # the file has none: every override is unknown to it
    # a federated file's hparams also configure its Flower strategy: the federation checks those (federation_config)
    problems = [] if getattr(module, "enable_federated_learning", False) is True else merge.problems()
    if problems:
        del sys.modules[name]
        raise UserInputError(problems)
    apply_to_settings(module, overrides, sections.NAMES, path.name)
    return module


def _line_in(error: BaseException, file_name: str) -> Union[int, str, None]:
    frames = frames_in(error, file_name)
    return frames[-1].lineno if frames else "?"


def _fill_defaults(module: types.ModuleType) -> None:
    """Unset names get their defaults on the module too: the model file and Client_IO read `usersettings`."""
    for _, field, name in sections.fields():
        if not hasattr(module, name) and not sections.is_required(field):
            setattr(module, name, sections.default_of(field))
