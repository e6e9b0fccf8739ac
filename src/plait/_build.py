"""Which build of the core is imported: the mypyc-compiled modules or the .py files.

A compiled build has, next to each core module's .py file, a C extension of the same
name (built in place by `python3 dev.py`, or shipped in a compiled wheel); Python's
import system prefers the extension. The same goes for the adapters' loop
(`plait_adapters`: setup.py's `ADAPTERS`). `PLAIT_PURE_PYTHON=1` in the environment puts
a finder in front that loads both packages' modules from their .py files instead, so
both builds can run from one tree. `plait.COMPILED` tells which one was imported.

In a source tree, `python3 dev.py` records the hash of each source it compiled
(`_compiled.json`: "endpoint" for plait's, "plait_adapters.raw" for the adapters'); if
a source has changed since, the extensions are stale, and the .py files are used with
a warning until dev.py rebuilds them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["STAMP", "is_compiled", "select"]

_HERE = Path(__file__).resolve().parent
#: Written by dev.py next to the in-place extensions: {module: sha256 of its source}.
STAMP = _HERE / "_compiled.json"
#: Where the adapters' sources are in a source tree (the stamp is only written there).
_ADAPTERS = _HERE.parent.parent / "adapters" / "plait_adapters"
_PACKAGES = ("plait.", "plait_adapters.")


class _PureFinder:
    """A meta path finder for plait.* modules that picks the .py file if there is one."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is None or not fullname.startswith(_PACKAGES):
            return None
        name = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, name + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def _stale() -> list[str]:
    """The modules whose source changed since dev.py compiled them in place."""
    try:
        built = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return []
    return [name for name, digest in built.items() if name != "setup.py" and _sha(name) != digest]


def _sha(name: str) -> str:
    """The hash of a compiled module's source now ("" if it is gone)."""
    package, _, module = name.rpartition(".")
    path = (_ADAPTERS if package == "plait_adapters" else _HERE) / f"{module}.py"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def select() -> None:
    """Put the pure-Python finder first if asked for, or if the extensions are stale."""
    if any(isinstance(f, _PureFinder) for f in sys.meta_path):
        return
    if not os.environ.get("PLAIT_PURE_PYTHON"):
        stale = _stale()
        if not stale:
            return
        warnings.warn(
            "plait: the compiled core is older than "
            + ", ".join(f"{name}.py" for name in stale)
            + "; using the pure-Python modules (run `python3 dev.py build` to rebuild)",
            RuntimeWarning,
            stacklevel=3,
        )
    sys.meta_path.insert(0, _PureFinder())


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` was loaded from a C extension."""
    return isinstance(getattr(module, "__loader__", None), ExtensionFileLoader)


select()
