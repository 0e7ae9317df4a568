"""Which versions are served: poll base paths, load and warm new versions, unload old ones.

A new version answers only once fully loaded and warmed; the table of served
versions is replaced in one assignment, so a request sees either the old table
or the new one. Dot-prefixed folders (exports in progress) and folders without
`saved_model.pb` yet are not candidates. A version that fails to load is
remembered with its error (until its saved_model.pb changes) and the versions
already served keep answering.
"""

import logging
import re
import threading
import time

from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.servable import Servable, first_line, missing_servable

_LOG = logging.getLogger(__name__)
_VERSION_DIR = re.compile(r"^\d+$")

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"


class VersionManager:
    """Keeps the wanted versions of every model source loaded.

    Args:
        sources: the `ModelSource`s to serve.
        poll_seconds: how often base paths are listed again (TF Serving's
            `file_system_poll_wait_seconds`); 0 lists them once only.
        on_unload: called with each Servable taken out of service.

    Example:

    ```python
    versions = VersionManager([source_from_experiment("exp")], poll_seconds=1)
    versions.start()
    servable = versions.lookup("model_curve_fitting")
    versions.stop()
    ```
    """

    def __init__(self, sources, poll_seconds=1.0, on_unload=None):
        self.sources = {source.name: source for source in sources}
        self.poll_seconds = poll_seconds
        self._on_unload = on_unload or (lambda servable: None)
        self._served = {name: {} for name in self.sources}  # name -> {version: Servable}, never mutated in place
        self._failed = {}  # (name, version) -> (saved_model.pb mtime, error line)
        self._loading = {}  # name -> version being loaded
        self._stop = threading.Event()
        self._thread = None
        self._missing_logged = set()

    def start(self):
        """Loads what is there now, then keeps polling in a background thread."""
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, name="version-poller", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for name in self.sources:
            for servable in self._served[name].values():
                self._on_unload(servable)
            self._served[name] = {}

    def _poll_forever(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the server; the next one retries
                _LOG.exception("version poll failed")

    def poll_once(self):
        for source in self.sources.values():
            if self._stop.is_set():
                return
            self._sync(source)

    def _sync(self, source):
        ready = self._ready_versions(source)
        if ready is None:
            return
        candidates = [version for version in ready if not self._still_failed(source, version, ready[version])]
        wanted = set(source.wanted(candidates))
        current = self._served[source.name]
        loaded = {version: current[version] for version in wanted if version in current}
        for version in sorted(wanted - set(current), reverse=True):
            servable = self._load(source, version, ready[version])
            if servable is not None:
                loaded[version] = servable
        if not loaded and current and not wanted & set(current):
            return  # nothing new loaded and nothing wanted is served: keep answering with what we have
        if set(loaded) == set(current):
            return
        self._served[source.name] = loaded
        for version, servable in current.items():
            if version not in loaded:
                _LOG.info("%s: version %s unloaded", source.name, version)
                self._on_unload(servable)

    def _ready_versions(self, source):
        """version -> saved_model.pb mtime, for complete-looking version folders."""
        try:
            entries = list(source.base_path.iterdir())
        except OSError:
            if source.name not in self._missing_logged:
                _LOG.warning("%s: base path %s not found yet; waiting for a first version", source.name, source.base_path)
                self._missing_logged.add(source.name)
            return None
        ready = {}
        for entry in entries:
            if _VERSION_DIR.match(entry.name):
                try:
                    ready[int(entry.name)] = (entry / "saved_model.pb").stat().st_mtime_ns
                except OSError:
                    continue  # no saved_model.pb yet: being copied in; looked at again next poll
        return ready

    def _still_failed(self, source, version, mtime):
        failure = self._failed.get((source.name, version))
        return failure is not None and failure[0] == mtime

    def _load(self, source, version, mtime):
        path = source.base_path / str(version)
        self._loading[source.name] = version
        started = time.monotonic()
        try:
            servable = Servable.load(source.name, version, path)
        except Exception as error:
            message = first_line(error)
            self._failed[(source.name, version)] = (mtime, message)
            served = sorted(self._served[source.name])
            _LOG.error(
                "%s: version %s failed to load (%s); still serving %s",
                source.name, version, message, served or "nothing",
            )
            return None
        finally:
            self._loading.pop(source.name, None)
        self._failed.pop((source.name, version), None)
        _LOG.info("%s: serving version %s (loaded and warmed in %.2f s)", source.name, version, time.monotonic() - started)
        return servable

    def lookup(self, name, version=None, label=None):
        """The Servable answering a request; NOT_FOUND if none, INVALID_ARGUMENT for a label the config lacks."""
        served = self._served.get(name)
        if label and name in self.sources:
            version = self.sources[name].label_version(label)
            if version is None:  # TF Serving's answer (INVALID_ARGUMENT, REST 400), whether or not a version is up
                raise RequestError(f"Unrecognized servable version label: {label}")
        if not served:
            raise missing_servable(name, version, label)
        if version is not None:  # 0 too: a version number, never "the latest"
            servable = served.get(int(version))
            if servable is None:
                raise missing_servable(name, version)
            return servable
        return served[max(served)]

    def statuses(self, name, version=None):
        """[(version, state, error message)], newest first, like TF Serving's GetModelStatus."""
        if name not in self.sources:
            raise missing_servable(name, version)
        rows = {number: (AVAILABLE, "") for number in self._served[name]}
        for (model, number), (_, message) in self._failed.items():
            if model == name and number not in rows:
                rows[number] = (END, message)
        loading = self._loading.get(name)
        if loading is not None and loading not in rows:
            rows[loading] = (LOADING, "")
        if version is not None:
            if int(version) not in rows:
                raise missing_servable(name, version)
            rows = {int(version): rows[int(version)]}
        if not rows:
            raise missing_servable(name)
        return [(number, *rows[number]) for number in sorted(rows, reverse=True)]

    def served_versions(self, name):
        return sorted(self._served.get(name, {}))
