"""plait's build: the core compiled with mypyc when it can be, pure Python otherwise.

`pip install .` / `pip wheel .` build a wheel with the core's modules compiled to C
extensions (mypyc, which ships with mypy) when a C compiler and the Python headers are
there, and a pure-Python wheel otherwise. `PLAIT_PURE_PYTHON=1` asks for the pure wheel.
`python3 dev.py` builds the same extensions in place in src/plait/ (`setup.py build_ext
--inplace`), next to their .py files. See docs/development.md.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, DistutilsError
from setuptools._distutils.sysconfig import customize_compiler

#: The modules compiled: the whole core. Left interpreted: the package's __init__ (it
#: chooses between the builds), config.py (attrs validators as `attrs.field()` defaults,
#: which mypyc cannot import; it only runs when a config is built), and the tools around
#: the core (cli, demo, plot, selfcheck, tracelog, the simulator), off the hot path.
CORE = [
    *("_types", "capacity", "checks", "clock", "crypto", "dwrr", "endpoint", "errors"),
    *("events", "fec", "fecpolicy", "feedback", "handshake", "inbox", "lifecycle", "links"),
    *("linkset", "live", "outbox", "pacing", "pmtu", "protection", "rs", "seq", "stats"),
    *("sendstate", "timers", "wire", "wirefast"),
]


def _say(msg: str) -> None:
    print(f"plait build: {msg}", file=sys.stderr, flush=True)


def _can_compile() -> bool:
    """Whether a C compiler builds against this Python's headers (a tiny test file)."""
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text("#include <Python.h>\nint plait_probe(void) { return 0; }\n")
        try:
            compiler.compile(
                [str(src)], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except (CompileError, DistutilsError, OSError):
            return False
    return True


def ext_modules() -> list[Extension]:
    if os.environ.get("PLAIT_PURE_PYTHON"):
        _say("pure Python (PLAIT_PURE_PYTHON is set)")
        return []
    try:
        from mypyc.build import mypycify  # noqa: PLC0415  (optional: absent means pure)
    except ImportError:
        _say("pure Python (mypyc is not installed)")
        return []
    if not _can_compile():
        _say("pure Python (no working C compiler or no Python headers)")
        return []
    _say(f"compiling {len(CORE)} core modules with mypyc")
    return mypycify(
        [f"src/plait/{name}.py" for name in CORE],
        group_name="plait._core",  # the shared library is plait/_core__mypyc*.so
        opt_level="3",
    )


if __name__ == "__main__":
    setup(ext_modules=ext_modules())
