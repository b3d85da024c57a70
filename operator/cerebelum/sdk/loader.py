"""Import user modules the same way in ``cerebelum render`` and ``cerebelum worker``.

A function is named in manifests by ``module:qualname``, so both must import a file under
the same module name: ``path/to/deploy.py`` is imported as ``deploy`` with its folder put
first on ``sys.path``; ``pkg.deploy`` is imported as it is.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def load_module(ref: str) -> ModuleType:
    """Import a module given as a dotted name or as a path to a .py file."""
    if ref.endswith(".py") or "/" in ref or Path(ref).is_file():
        path = Path(ref).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such Python file: {ref}")
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module = importlib.import_module(path.stem)
        loaded = getattr(module, "__file__", None)
        if loaded is None or Path(loaded).resolve() != path:
            raise ImportError(
                f"{ref}: a different module named {path.stem!r} is already imported (from "
                f"{loaded}); modules are named after their file, so give this file another name"
            )
        return module
    return importlib.import_module(ref)


def load_object(target: str) -> Any:
    """``module:attr`` (the module as a dotted name or a file path) -> the attribute."""
    module_ref, sep, attr = target.rpartition(":")
    if not sep or not module_ref or not attr:
        raise ValueError(f"{target!r}: expected MODULE:NAME, e.g. deploy.py:deploy_workflow")
    module = load_module(module_ref)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{module.__name__} has no {attr!r}") from None
