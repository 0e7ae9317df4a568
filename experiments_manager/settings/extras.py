"""A module a settings or model file imports that is not installed: one line naming it and what provides it.

The original framework's image carried the scientific stack its users' settings files import; here it is the
`[research]` extra (pandas, scipy, scikit-learn, OpenCV headless, tqdm), which `make install` and the Apptainer image
install. A file importing one of them where it is missing gets the pip command of that extra; any other missing
module, the environment it is missing from.

Example:

```python
missing_module_line(ModuleNotFoundError("No module named 'pandas'", name="pandas"))
# "imports pandas, which is not installed: pip install 'experiments_manager[research]' (...)"
```
"""

from __future__ import annotations

import sys

RESEARCH_EXTRA = "research"
# the modules the [research] extra provides, by import name -> the package that provides it
RESEARCH_MODULES = {"pandas": "pandas", "scipy": "scipy", "sklearn": "scikit-learn", "cv2": "opencv-python-headless",
                    "tqdm": "tqdm"}


def missing_module_line(error: ModuleNotFoundError) -> str:
    """What to say of `error` (after the file and line): the module, and how to install it."""
    module = (error.name or str(error)).split(".")[0]
    if module in RESEARCH_MODULES:
        return (f"imports {module}, which is not installed: pip install 'experiments_manager[{RESEARCH_EXTRA}]' (the "
                f"scientific stack the original framework's image had, {RESEARCH_MODULES[module]} among it; "
                "make install and the Apptainer image install it)")
    return f"imports {module}, which is not installed in this environment ({sys.executable}): pip install it"
