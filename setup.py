"""plait's build: the core compiled with mypyc when it can be, pure Python otherwise.

`pip install .` / `pip wheel .` build a wheel with the core's modules, and the adapters'
loop (`ADAPTERS`), compiled to C extensions (mypyc, which ships with mypy) when a C
compiler and the Python headers are there, and a pure-Python wheel otherwise.
`PLAIT_PURE_PYTHON=1` asks for the pure wheel. `python3 dev.py` builds the same
extensions in place (`setup.py build_ext --inplace`), next to their .py files in
src/plait/ and adapters/plait_adapters/. See docs/development.md.
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
#: The thread-driven adapters' loop and the relay on top of it (`plait_adapters`), as a
#: group of their own: a relay wakes ~500 times a second, and this interpreted code cost
#: it a tenth of its CPU (docs/relay.md). Left interpreted: the asyncio and trio
#: adapters (their event loops call in), socket set-up, the relay's config, metrics and
#: reports, which run once or off the loop thread.
ADAPTERS = ["_log", "_poller", "_relay_local", "_session", "_threaded", "raw", "relay", "uring"]


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
    _say(f"compiling {len(CORE)} core and {len(ADAPTERS)} adapter modules with mypyc")
    core = [f"src/plait/{name}.py" for name in CORE]
    adapters = [f"adapters/plait_adapters/{name}.py" for name in ADAPTERS]
    return mypycify(
        core + adapters,
        # the shared libraries: plait/_core__mypyc*.so, plait_adapters/_loop__mypyc*.so
        separate=[(core, "plait._core"), (adapters, "plait_adapters._loop")],
        opt_level="3",
    )


if __name__ == "__main__":
    setup(ext_modules=ext_modules())
