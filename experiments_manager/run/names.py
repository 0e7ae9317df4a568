"""Experiment and sweep folder names: `<session>_<YYYY-mm-dd--HH-MM-SS>_<key>=<value>...`, safe on every file system,
and the moments run.json records. This module does not import TensorFlow."""

import datetime
import re
from pathlib import Path
from typing import Any, Mapping, Optional

MAX_NAME_BYTES = 255


def folder_name(session_name: str, stamp: str, varied: Mapping[str, Any]) -> str:
    """`<session>_<stamp>_<key>=<value>...` for the hparams `varied` (set on the command line or by a sweep).

    Safe on every file system, <= 255 bytes; floats to 4 significant digits (run.json keeps them whole).
    """
    parts = [session_name, stamp] + varied_hparams(varied)
    name = "_".join(_safe(str(part)) for part in parts if str(part) != "")
    return name.encode()[:MAX_NAME_BYTES - 8].decode(errors="ignore").rstrip("_")


def varied_hparams(varied: Mapping[str, Any]) -> list[str]:
    """['lr=0.001235', 'batchSize=32']: the hparams a run was given, short enough for names."""
    return [f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in varied.items()]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "-", text).strip("-") or "-"


def make_unique_dir(parent: Path, base: str) -> Path:
    for attempt in range(1000):
        root = parent / (base if attempt == 0 else f"{base}_{attempt}")
        try:
            root.mkdir()
            return root
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique folder under {parent}")


def folder_stamp(moment: Optional[datetime.datetime] = None) -> str:
    """A moment (default: now) as dated folder names carry it: `2026-11-21--10-00-00`."""
    return (moment or datetime.datetime.now()).strftime("%Y-%m-%d--%H-%M-%S")


def now(moment: Optional[datetime.datetime] = None) -> str:
    """A moment (default: now) as ISO 8601 with the local offset, to the second (run.json's times)."""
    return (moment or datetime.datetime.now()).astimezone().isoformat(timespec="seconds")
