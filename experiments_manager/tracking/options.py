"""The MLflow tracking URI a run logs to: given, or MLFLOW_TRACKING_URI; checked before anything is written.

No MLflow import here (it is an optional dependency, `pip install 'experiments_manager[mlflow]'`).

Example:

```python
uri = tracking_uri("")            # MLFLOW_TRACKING_URI's value, or one line (UserInputError) without it
```
"""

from __future__ import annotations

import importlib.util
import os
import urllib.parse
from typing import Optional

from experiments_manager.utils.errors import UserInputError

OPTION = "--mlflow"
ENVIRONMENT_VARIABLE = "MLFLOW_TRACKING_URI"
SCHEMES = ("http", "https")
STORES = ("sqlite", "file", "postgresql", "mysql", "mssql", "")  # MLflow's local stores: a server is made of one


def run_tracking_uri(given: Optional[str], from_settings: Optional[str], settings_name: str) -> Optional[str]:
    """The server a new run logs to: `given` (`--mlflow`, '' for MLFLOW_TRACKING_URI) wins over the settings'
    `mlflow_tracking_uri` (`from_settings`, named `settings_name` in an error); None: not logged. Checked."""
    if given is not None:
        return tracking_uri(given)
    if from_settings is not None:
        return tracking_uri(from_settings, settings_name)
    return None


def tracking_uri(given: Optional[str], where: str = OPTION) -> str:
    """The tracking URI to log to: `given`, or MLFLOW_TRACKING_URI when `given` is '' (the option without a value).

    Raises:
        UserInputError: no URI, a URI of another kind than http(s)://, or no mlflow package: one line naming
            `where` (the option, or the settings' name). A store's URI (sqlite:///PATH, file:PATH, a bare path) is
            refused too: a run sends its models and files through a server (`mlflow server` serves the store), and
            MLflow's client writing a store itself would leave mlflow.db and mlruns/ in the current folder.
    """
    uri = given or os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not uri:
        raise UserInputError(f"{where}: expected a tracking URI (http://HOST:PORT), or {ENVIRONMENT_VARIABLE} set, "
                             "got neither")
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in STORES and (parsed.scheme or uri.startswith(("/", "."))):
        raise UserInputError(f"{where}: {uri!r} is a store, not a tracking server: serve it with `mlflow server "
                             f"--backend-store-uri {uri}` and give the server's http://HOST:PORT")
    if parsed.scheme not in SCHEMES or not parsed.hostname:
        raise UserInputError(f"{where}: expected an MLflow tracking server's URI (http://HOST:PORT, https://...), "
                             f"got {uri!r}")
    if importlib.util.find_spec("mlflow") is None:
        raise UserInputError(f"{where}: the mlflow package is not installed: pip install "
                             "'experiments_manager[mlflow]'")
    return uri
