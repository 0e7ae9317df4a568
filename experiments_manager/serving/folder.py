"""Serving a working folder (`serve --models_dir FOLDER`): every experiment below it as its own named model, the set
kept up to date while serving, and the `models.config` that `tensorflow_model_server` reads too.

Which experiments: those `experiments-manager list FOLDER` lists (`listing.folders_below`: up to 4 levels, a
sweep's trials included, not inside experiments, hidden folders or virtualenvs). An experiment is served once it
has a version on disk, whatever its status (a failed or interrupted run's versions are complete, checked exports
of epochs that ended), and while it runs (served as its versions appear); one that ended without any version is
left out until a resume runs it again.

Names (`model_name`): the experiment's path relative to FOLDER, its folders joined by '.', each character outside
`[A-Za-z0-9._=,-]` turned into '_' (and a dot that would start or end a folder's part, or follow another dot, so no
name holds '..'). Two experiments that would get one name: the one served first keeps it (at start, the first in
path order), the other gets '-' and 8 hex digits of its path's SHA-1 appended. A name stays the experiment's while
it is served.

Polling: FOLDER is looked at again every `poll_seconds` (`--model_config_file_poll_wait_seconds`, default 30 s; 0:
only at start); experiments that appeared are added, those gone (or that ended without a version) dropped, each in
one log line, and the generated models.config is rewritten atomically whenever the set changes.

Example:

```python
folder = WorkingFolder("experiments", poll_seconds=30)
sources = folder.update()                  # served now; FOLDER/models.config written
with ModelServer(sources, options) as server:
    folder.watch(server.replace_sources, stop)   # returns at once: a thread polls until `stop` is set
```
"""

import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional

from experiments_manager.experiment import RUN_FILE_NAME, Experiment
from experiments_manager.listing import folders_below, read_run_info
from experiments_manager.serving.config import ModelSource, check_model_name, models_config_text, served_as
from experiments_manager.utils.atomic import write_text_atomically
from experiments_manager.utils.errors import UserInputError
from experiments_manager.version_records import present_versions

_LOG = logging.getLogger("experiments_manager.serving")
DEFAULT_POLL_SECONDS = 30.0
CONFIG_NAME = "models.config"  # written into FOLDER unless --write-models-config names another file
_OUTSIDE_NAME = re.compile(r"[^A-Za-z0-9._=,-]")
_DOTS = re.compile(r"^\.|\.$|(?<=\.)\.")  # a part's leading or trailing dot, and a dot after a dot


def model_name(relative: str) -> str:
    """The model name of an experiment at path `relative` (to the served folder), as the module docstring says.

    Args:
        relative: the experiment's path relative to the served folder ('/'-separated).

    Example:

    ```python
    model_name("sweeps/lr sweep/trial_lr=0.01")   # 'sweeps.lr_sweep.trial_lr=0.01'
    ```
    """
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    return ".".join(_DOTS.sub("_", _OUTSIDE_NAME.sub("_", part)) for part in parts)


def unique_names(relatives: List[str], kept: Dict[str, str]) -> Dict[str, str]:
    """Each experiment path's model name, unique: `kept` names stay, the others follow `model_name` in path order,
    with '-' and 8 hex digits of the path's SHA-1 appended where the name is taken.

    Args:
        relatives: the experiments' paths relative to the served folder.
        kept: path -> name of the experiments already served (their names do not change).

    Example:

    ```python
    unique_names(["a b", "a_b"], {})   # {'a b': 'a_b', 'a_b': 'a_b-' + sha1('a_b')[:8]}
    ```
    """
    names = {relative: kept[relative] for relative in relatives if relative in kept}
    taken = set(names.values())
    for relative in sorted(set(relatives) - set(names)):
        name = model_name(relative)
        if name in taken:
            name = f"{name}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}"
        while name in taken:  # a hash's name taken too (never seen): one more digit of certainty
            name += "_"
        names[relative] = name
        taken.add(name)
    return names


class WorkingFolder:
    """The experiments of a folder as model sources, named, polled and written as a models.config.

    Args:
        folder: the served folder (`--models_dir`).
        config_file: where the generated models.config goes (default: FOLDER/models.config).
        poll_seconds: how often FOLDER is looked at again while serving (default 30; 0: only at start).

    Raises:
        UserInputError: FOLDER is missing, not a folder, or an experiment folder itself (one line).

    Example:

    ```python
    folder = WorkingFolder("experiments")
    [source.name for source in folder.update()]   # ['examples.curve_fitting.my_test_2026-11-23--20-40-00', ...]
    ```
    """

    def __init__(self, folder, config_file=None, poll_seconds: float = DEFAULT_POLL_SECONDS):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            got = "a file" if self.folder.exists() else "nothing there"
            raise UserInputError(f"--models_dir: {folder}: expected a folder of experiments, got {got}")
        if (self.folder / RUN_FILE_NAME).is_file():
            raise UserInputError(f"--models_dir: {folder}: expected a folder of experiments, got an experiment folder "
                                 f"(serve it with --model_dir {folder})")
        self.config_file = Path(config_file) if config_file else self.folder / CONFIG_NAME
        self.poll_seconds = poll_seconds
        self.sources: List[ModelSource] = []
        self.experiments: Dict[str, Path] = {}  # model name -> experiment folder, of the sources served
        self._names: Dict[str, str] = {}  # relative path -> name, of the experiments served
        self._bad_configs = set()  # experiments whose models.config was said to be unreadable
        self._written: Optional[bool] = None  # whether the last models.config write worked (None: none yet)

    def scan(self) -> List[ModelSource]:
        """The sources to serve now (nothing is written or logged but a damaged experiment's models.config).

        Example:

        ```python
        WorkingFolder("experiments").scan()   # [ModelSource('examples.curve_fitting.my_test_...', ...), ...]
        ```
        """
        served = {}
        for path in folders_below(self.folder, RUN_FILE_NAME) if self.folder.is_dir() else []:
            experiment = Experiment(path)
            if present_versions(experiment.export_dir) or read_run_info(experiment).get("status") == "running":
                served[path.relative_to(self.folder).as_posix()] = experiment
        names = unique_names(list(served), self._names)
        self._names = names
        sources = [self._source(served[relative], names[relative]) for relative in sorted(served)]
        self.experiments = {name: served[relative].root for relative, name in names.items()}
        return sources

    def _source(self, experiment: Experiment, name: str) -> ModelSource:
        check_model_name(name, self.folder)  # true by construction: the rule any model name meets
        try:
            return served_as(experiment, name)
        except UserInputError as error:  # its own models.config is damaged: its versions still serve, latest 1
            if experiment.root not in self._bad_configs:
                _LOG.warning("%s; serving %s with the latest version", error, experiment.root)
                self._bad_configs.add(experiment.root)
            return ModelSource(name, experiment.export_dir)

    def update(self) -> Optional[List[ModelSource]]:
        """Scans FOLDER; at the first call, and when the set of sources changed, writes the models.config and logs
        each model served, added or dropped. Returns the new sources, or None when nothing changed.

        Raises:
            UserInputError: the models.config cannot be written at the first call (one line naming it).

        Example:

        ```python
        sources = folder.update()   # None: the same experiments as before
        ```
        """
        first = self._written is None
        before, previous = {source.name: source for source in self.sources}, dict(self.experiments)
        sources = self.scan()
        now = {source.name: source for source in sources}
        if not first and now == before and self._written:
            return None
        self.sources = sources
        self._written = self._write_config(sources, first)
        for name in sorted(set(before) - set(now)):
            why = "its folder is gone" if not previous[name].is_dir() else "no version on disk and not running"
            _LOG.info("model %s dropped: %s (%s)", name, previous[name], why)
        for name in sorted(set(now) - set(before)):
            if first:
                _LOG.info("Serving %s from %s", name, self.experiments[name])
            else:
                _LOG.info("model %s added: %s", name, self.experiments[name])
        if not sources and (first or before):
            _LOG.info("%s holds no experiment to serve yet; looking again %s", self.folder,
                      f"every {self.poll_seconds:g} s" if self.poll_seconds > 0 else "never (poll period 0)")
        return sources

    def _write_config(self, sources: List[ModelSource], first: bool) -> bool:
        """Writes the models.config; False (logged, tried again at the next poll) when it cannot be written."""
        try:
            write_text_atomically(self.config_file, models_config_text(sources))
        except OSError as error:
            message = f"--write-models-config: cannot write {self.config_file}: {error.strerror or error}"
            if first:
                raise UserInputError(message) from None
            _LOG.error("%s; tried again at the next poll", message)
            return False
        _LOG.info("models.config of %d model(s) written to %s", len(sources), self.config_file)
        return True

    def watch(self, on_change: Callable[[List[ModelSource]], None], stop: threading.Event) -> threading.Thread:
        """Polls FOLDER every `poll_seconds` in a daemon thread until `stop` is set, calling `on_change(sources)`
        after each change (once the models.config is written); returns the thread (none runs when the period is 0).

        Args:
            on_change: e.g. `ModelServer.replace_sources`.
            stop: set to end the polling.

        Example:

        ```python
        thread = folder.watch(server.replace_sources, stop)
        ```
        """

        def poll() -> None:
            while not stop.wait(self.poll_seconds):
                try:
                    sources = self.update()
                    if sources is not None:
                        on_change(sources)
                except Exception:  # a poll must never end the serving; the next one tries again
                    _LOG.exception("polling %s failed", self.folder)

        thread = threading.Thread(target=poll, name="folder-poller", daemon=True)
        if self.poll_seconds > 0:
            thread.start()
        return thread
