"""What a user's code raised, said in one line: the file, the function and the line where it was raised, and the
line of the message that says what went wrong (Keras' and TensorFlow's preambles left out). The dry build and the
trainer say a settings file's problem this way; `evaluate` too.

Example:

```python
user_code_error(error, settings)   # 'model.py: model (line 12): raised ValueError: ...'
```
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.utils.errors import frames_in

if TYPE_CHECKING:
    import traceback

    from experiments_manager.settings.loader import Settings

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOLD = re.compile(r"\x1b\[1m(.+?)\x1b\[0m", re.S)
_TF_OP = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\](\s*name:\s*\S*)?\s*$")
_WHOLE_ADVICE = ("A KerasTensor cannot be used as input to",)  # Keras's advice: kept whole (`first_line`)
_PREAMBLES = ("Exception encountered when calling", "in user code:", 'File "')


def structure_of(value: Any) -> str:
    """A short description of a (nested) batch: shapes and dtypes."""
    if isinstance(value, dict):
        shown = itertools.islice(value.items(), 4)
        return "{" + ", ".join(f"{key!r}: {structure_of(item)}" for key, item in shown) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(structure_of(item) for item in value[:4]) + (", ..." if len(value) > 4 else "") + ")"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None:
        return f"{getattr(dtype, 'name', dtype)}{list(shape)}"
    return type(value).__name__


def described(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def first_line(error: BaseException) -> str:
    """The line of an error message that says what went wrong: Keras puts it after a preamble, in bold (inside a
    traced function's "in user code:" traceback too); TensorFlow's op errors wrap it in the op's node and name.
    Keras's advice on a function that cannot take a symbolic tensor is kept whole, on one line."""
    text = str(error)
    if text.startswith(_WHOLE_ADVICE):
        return _one_line(text)
    bold = _BOLD.search(text)
    lines = [_TF_OP.sub("", _ANSI.sub("", line)).strip() for line in (bold.group(1) if bold else text).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_PREAMBLES)]
    return lines[0][:300] if lines else "(no message)"


def _one_line(text: str) -> str:
    """A message with code blocks on one line: the prose joined by spaces, each block's lines by '; ' in backticks."""
    parts = []
    for index, part in enumerate(text.split("```")):
        lines = [line.strip() for line in part.splitlines() if line.strip()]
        parts.append(f"`{'; '.join(lines)}`" if index % 2 else " ".join(lines))
    return " ".join(part for part in parts if part)


def _user_frames(error: BaseException, settings: Settings) -> list[traceback.FrameSummary]:
    return frames_in(error, settings.path, settings.model_file)


def user_line(error: BaseException, settings: Settings) -> str:
    """' (line N)' of the settings or model file where the error was raised, if it was."""
    frames = _user_frames(error, settings)
    return f" (line {frames[-1].lineno})" if frames else ""


# what a bug in the user's code raises; not OSError, MemoryError or TensorFlow's runtime errors (out of memory...)
_CODE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, NameError, AssertionError,
                ZeroDivisionError, NotImplementedError)


def user_code_error(error: BaseException, settings: Settings) -> Optional[str]:
    """One line for a bug in the settings' or the model file's code showing while training (epoch 3, say), naming
    the file, the function and the line; None when the error is not such a bug raised there."""
    frames = _user_frames(error, settings) if isinstance(error, _CODE_ERRORS) else []
    if not frames:
        return None
    frame = frames[-1]
    return (f"{Path(frame.filename).name}: {frame.name} (line {frame.lineno}): raised {type(error).__name__}: "
            f"{first_line(error)}")
