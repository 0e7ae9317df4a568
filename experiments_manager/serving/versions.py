"""Which versions are served: poll base paths, load and warm new versions, unload old ones.

A new version answers only once fully loaded and warmed; the table of served versions is replaced in one assignment,
so a request sees either the old table or the new one. Only version folders (named by their number,
`served_layout.py`: not the dot-prefixed exports in progress) holding a `saved_model.pb` are candidates for loading;
a served version stays served while its folder exists (its saved_model.pb may be absent for a moment, being
rewritten), until its folder goes or the policy prefers a newer one. A version that fails to load is remembered with
its error, and the versions already served keep answering; it is tried again once any file in its folder changes (a
repair in place). Versions are tried newest first: a version that fails leaves the candidates and the policy picks
again at once, so the newest loadable version answers from the first poll, the one `start()` waits for. The set of
models itself can be replaced while serving (`replace_sources`, a working folder's experiments coming and going):
one assignment too, the models that went away unloaded, those whose policy changed kept while it applies, the new
ones loaded at once (one at a time, the poller running in between).
"""

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from experiments_manager.run.served_layout import version_of
from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.servable import Servable, first_line, missing_servable

if TYPE_CHECKING:
    from experiments_manager.run.served_layout import ModelSource

_LOG = logging.getLogger(__name__)

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"
WAITING = "WAITING"  # a model list's state for a model with no version on disk yet (ours: not a TF Serving state)


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

    def __init__(self, sources: "list[ModelSource]", poll_seconds: float = 1.0,
                 on_unload: "Callable[[Servable], None] | None" = None) -> None:
        self.sources = {source.name: source for source in sources}
        self.poll_seconds = poll_seconds
        self._on_unload = on_unload or (lambda servable: None)
        # name -> {version: Servable}, never mutated in place
        self._served: dict[str, dict[int, Servable]] = {name: {} for name in self.sources}
        self._failed: dict[tuple[str, int], tuple[object, str]] = {}  # -> (content_key when tried, error line)
        self._loading: dict[str, int] = {}  # name -> version being loaded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._missing_logged: set[str] = set()
        self._sync_lock = threading.Lock()  # one poll or replacement of the sources at a time

    def start(self) -> None:
        """Loads what is there now (newest loadable first: returns once each model's wanted versions that can
        load are loaded), then keeps polling in a background thread."""
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, name="version-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._sync_lock:
            for name in self.sources:
                for servable in self._served.get(name, {}).values():
                    self._on_unload(servable)
                self._served[name] = {}

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the server; the next one retries
                _LOG.exception("version poll failed")

    def poll_once(self) -> None:
        """Brings every model's served versions in line with its base path and policy once (what the poller does
        every `poll_seconds`); waits for a replacement of the sources in progress.

        Example:

        ```python
        versions.poll_once()   # a version exported since the last poll now answers
        ```
        """
        with self._sync_lock:
            for source in self.sources.values():
                if self._stop.is_set():
                    return
                self._sync(source)

    def replace_sources(self, sources: "list[ModelSource]") -> None:
        """Serves `sources` from now on: the set of models is replaced in one assignment (a request sees the old
        set or the new one), the versions of models that went away (or whose base path changed) are unloaded, a
        model whose source changed otherwise (its version policy or labels: its own models.config edited) keeps
        answering with its versions while the new policy is applied, and the new models' versions are loaded before
        this returns, one model at a time: a version poll in progress is waited for, and polling of the other models
        goes on between two new models' loads (a sweep of N trials appearing holds it up for one load at a time,
        never for all N).

        Args:
            sources: the `ModelSource`s to serve (names unique).

        Example:

        ```python
        versions.replace_sources([source_from_experiment("exp"), source_from_experiment("exp2")])
        ```
        """
        by_name = {source.name: source for source in sources}
        with self._sync_lock:
            if self._stop.is_set():
                return
            old = self.sources
            kept = {name for name, source in by_name.items()
                    if name in old and Path(old[name].base_path) == Path(source.base_path)}
            dropped = [servable for name, served in self._served.items() if name not in kept
                       for servable in served.values()]
            self.sources = by_name  # one assignment: lookups see the old set or the new one
            self._served = {name: self._served.get(name, {}) if name in kept else {} for name in by_name}
            self._failed = {key: failure for key, failure in self._failed.items() if key[0] in kept}
            self._missing_logged &= kept
            for servable in dropped:
                _LOG.info("%s: version %s unloaded (the model is no longer served)", servable.name, servable.version)
                self._on_unload(servable)
            for name in sorted(kept):
                if old[name] != by_name[name]:
                    self._sync(by_name[name])  # its new policy: its versions answer until it has changed them
        for name in sorted(set(by_name) - kept):
            with self._sync_lock:  # one new model at a time: the poller runs between two loads
                if self._stop.is_set():
                    return  # stopping: no more loading
                if self.sources.get(name) is by_name[name]:  # not replaced again meanwhile
                    self._sync(by_name[name])

    def _sync(self, source: "ModelSource") -> None:
        listing = self._list_versions(source)
        if listing is None:
            return
        present, ready = listing
        current = self._served[source.name]
        kept = {version for version in current if version in present}  # served, folder there: saved_model.pb or not
        ready -= {version for version in ready if self._still_failed(source, version)}
        loaded: dict[int, Servable] = {}
        while True:  # a version failing to load leaves the candidates (once a poll), and the policy picks again
            wanted = set(source.wanted(kept | ready))
            missing = sorted(wanted - set(current) - set(loaded), reverse=True)
            if not missing:
                break
            for version in missing:
                servable = self._load(source, version)
                if servable is None:
                    ready.discard(version)
                    break
                loaded[version] = servable
        if not wanted and current:
            return  # nothing wanted can be served: keep answering with what we have
        served = {version: current[version] if version in current else loaded[version] for version in wanted}
        if set(served) == set(current):
            return
        self._served[source.name] = served
        for version, servable in {**loaded, **current}.items():
            if version not in served:
                _LOG.info("%s: version %s unloaded", source.name, version)
                self._on_unload(servable)

    def _list_versions(self, source: "ModelSource") -> "tuple[set[int], set[int]] | None":
        """(version folders present, those holding a saved_model.pb), or None while the base path is missing."""
        try:
            entries = list(source.base_path.iterdir())
        except OSError:
            if source.name not in self._missing_logged:
                served = sorted(self._served.get(source.name, {}))
                if served:  # removed while served (a working folder's experiment deleted): answered from memory
                    _LOG.warning("%s: base path %s is gone; still answering with versions %s from memory",
                                 source.name, source.base_path, served)
                else:
                    _LOG.warning("%s: base path %s not found yet; waiting for a first version", source.name,
                                 source.base_path)
                self._missing_logged.add(source.name)
            return None
        named = {entry: version_of(entry.name) for entry in entries}
        present = {version for entry, version in named.items() if version is not None and entry.is_dir()}
        # without saved_model.pb: being copied in (looked at again next poll), or being rewritten if served
        ready = {version for version in present if (source.base_path / str(version) / "saved_model.pb").is_file()}
        return present, ready

    def _still_failed(self, source: "ModelSource", version: int) -> bool:
        failure = self._failed.get((source.name, version))
        return failure is not None and failure[0] == content_key(source.base_path / str(version))

    def _load(self, source: "ModelSource", version: int) -> "Servable | None":
        path = source.base_path / str(version)
        key = content_key(path)  # taken before loading: a change during the load is a change, tried again
        self._loading[source.name] = version
        started = time.monotonic()
        try:
            servable = Servable.load(source.name, version, path)
        except Exception as error:
            message = first_line(error)
            self._failed[(source.name, version)] = (key, message)
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

    def lookup(self, name: str, version: "int | None" = None, label: "str | None" = None) -> Servable:
        """The Servable answering a request; NOT_FOUND if none, INVALID_ARGUMENT for a label the config lacks."""
        served = self._served.get(name)
        source = self.sources.get(name)  # one read: `replace_sources` may swap the set between two
        if label and source is not None:
            version = source.label_version(label)
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

    def statuses(self, name: str, version: "int | None" = None) -> "list[tuple[int, str, str]]":
        """[(version, state, error message)], newest first, like TF Serving's GetModelStatus.

        Args:
            name: the model name.
            version: only this version's row (None: all of them).

        Raises:
            RequestError: NOT_FOUND for a model not served, or a version it has no row for.

        Example:

        ```python
        versions.statuses("model_curve_fitting")   # [(3, 'AVAILABLE', ''), (2, 'END', 'variables missing')]
        ```
        """
        if name not in self.sources:
            raise missing_servable(name, version)
        rows = {number: (AVAILABLE, "") for number in self._served.get(name, {})}
        for (model, number), (_, message) in self._failed.copy().items():  # a copy: the poller adds to it meanwhile
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

    def served_versions(self, name: str) -> "list[int]":
        return sorted(self._served.get(name, {}))

    def models(self) -> "list[dict[str, Any]]":
        """The model list (REST `GET /v1/models`): one dict per served model, by name.

        Each has `name`, `base_path`, `versions` (the versions answering, oldest first), `state` (AVAILABLE: some
        version answers; LOADING; END: every version failed to load, `error` says why; WAITING: no version on disk
        yet).

        Example:

        ```python
        versions.models()
        # [{'name': 'model_curve_fitting', 'base_path': '/exp/exported_models', 'versions': [3], 'state': 'AVAILABLE'}]
        ```
        """
        rows = []
        for name, source in sorted(self.sources.items()):
            try:
                statuses = self.statuses(name)
            except RequestError:  # nothing known of it yet
                statuses = []
            states = {state for _, state, _ in statuses}
            row: "dict[str, Any]" = {
                "name": name, "base_path": str(Path(source.base_path).resolve()),
                "versions": sorted(number for number, state, _ in statuses if state == AVAILABLE),
                "state": next((state for state in (AVAILABLE, LOADING, END) if state in states), WAITING)}
            if row["state"] == END:
                row["error"] = next(message for _, state, message in statuses if state == END)
            rows.append(row)
        return rows


def content_key(folder: Path) -> "tuple[tuple[str, int, int], ...]":
    """What a change anywhere in a version folder changes: (relative name, size, mtime_ns) of each file under it.

    A failed version is tried again when this differs from the key taken before it failed (saved_model.pb,
    variables/ and assets/ alike).

    Args:
        folder: a version folder.

    Returns:
        a sorted tuple of (name relative to `folder`, size, mtime in ns); empty when the folder is gone.

    Example:

    ```python
    content_key(Path("exp/exported_models/3"))
    # (('fingerprint.pb', 56, 1700000000000000000), ('saved_model.pb', 5123, ...), ('variables/variables.index', ...))
    ```
    """
    files: "list[tuple[str, int, int]]" = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue  # removed while listed: the key differs from a complete folder's anyway
            files.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))
