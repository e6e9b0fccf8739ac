#!/usr/bin/env python3
"""plait's one entry point for people and CI: sets up .venv, then runs a task.

    python3 dev.py demo [ARGS]     run the demo (see `python3 dev.py demo --help`)
    python3 dev.py test [ARGS]     ruff + mypy + the whole pytest suite (ARGS go to pytest),
                                   on the compiled core, then its fast part on pure Python
    python3 dev.py build           (re)build the compiled core in place, if it is stale
    python3 dev.py bench NAME      run bench/NAME.py (e.g. wire), writes bench/results/NAME.json
    python3 dev.py fuzz NAME [...] run fuzz/fuzz_NAME.py under atheris (e.g. decode -runs=1000000)

Only the standard library is used here, so it works on a fresh clone with nothing but
Python >= 3.11 and pip. The virtual environment is created once and reinstalled only when
pyproject.toml changes, so a second run starts at once.

The core is compiled with mypyc (setup.py) into C extensions next to its .py files in
src/plait/, whenever a core source changed since the last build (about a minute); with
no C compiler, or if the build fails, the .py files run instead, and dev.py says which.
PLAIT_PURE_PYTHON=1 runs everything on the .py files. See docs/development.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".plait-install-stamp"
CORE = ROOT / "src" / "plait"
ADAPTERS = ROOT / "adapters" / "plait_adapters"
#: {module: sha256 of the source compiled}, read by plait._build to spot stale extensions.
BUILT = CORE / "_compiled.json"
BUILD_LOG = VENV / "build.log"


def _say(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def _run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT, env=env)


def _wanted_stamp(extras: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest} {extras} {sys.version_info[:2]}"


def ensure_venv(extras: str = "dev") -> None:
    """Create .venv and install plait (editable) with `extras`, unless already done."""
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py runs on whatever python3 is, so check)
        sys.exit("plait needs Python >= 3.11; this is " + sys.version.split()[0])
    if not PY.exists():
        _say(f"creating virtual environment in {VENV.relative_to(ROOT)}/")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = _wanted_stamp(extras)
    have = STAMP.read_text() if STAMP.exists() else ""
    if wanted in have.splitlines():
        return
    _say(f"installing plait[{extras}] into .venv (once; repeated only when pyproject.toml changes)")
    quiet = ["-q", "--disable-pip-version-check"]
    rc = _run(PY, "-m", "pip", "install", *quiet, "--upgrade", "pip")
    rc = rc or _run(PY, "-m", "pip", "install", *quiet, "--upgrade", "setuptools>=77")
    # the editable install builds nothing (PLAIT_PURE_PYTHON); ensure_compiled() builds the
    # extensions in place, so that only a changed source sends it back to the compiler
    pure = {**os.environ, "PLAIT_PURE_PYTHON": "1"}
    install = ["install", *quiet, "--no-build-isolation", "-e", f".[{extras}]"]
    rc = rc or _run(PY, "-m", "pip", *install, env=pure)
    if rc:
        sys.exit(f"[dev] install failed (exit {rc})")
    STAMP.write_text("\n".join([*have.splitlines(), wanted]) + "\n")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extensions() -> list[Path]:
    return [p for d in (CORE, ADAPTERS) for ext in ("*.so", "*.pyd") for p in sorted(d.glob(ext))]


def _source(name: str) -> Path:
    """A compiled module's source: "endpoint" in src/plait, "plait_adapters.raw" in
    adapters/plait_adapters (the keys of `BUILT`, as plait._build reads them)."""
    package, _, module = name.rpartition(".")
    return (ADAPTERS if package == "plait_adapters" else CORE) / f"{module}.py"


def _clean() -> None:
    for path in [*_extensions(), BUILT]:
        path.unlink(missing_ok=True)


def ensure_compiled() -> bool:
    """Build the compiled core in place unless it is up to date; True if it is compiled."""
    if os.environ.get("PLAIT_PURE_PYTHON"):
        _say("core: pure Python (PLAIT_PURE_PYTHON is set)")
        return False
    try:
        built = json.loads(BUILT.read_text())
    except (OSError, ValueError):
        built = {}
    setup = _sha(ROOT / "setup.py")
    fresh = bool(built) and built.pop("setup.py", None) == setup and bool(_extensions())
    if fresh and all(
        _source(name).is_file() and _sha(_source(name)) == sha for name, sha in built.items()
    ):
        _say(f"core: compiled with mypyc ({len(built)} modules, up to date)")
        return True
    _say("core: compiling with mypyc (setup.py build_ext --inplace; about a minute)")
    _clean()
    with BUILD_LOG.open("w") as log:
        cmd = [str(PY), "setup.py", "build_ext", "--inplace", "--parallel", "2"]
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    names = sorted(
        (p.parent.name + "." if p.parent == ADAPTERS else "") + p.name.split(".")[0]
        for p in _extensions()
        if "__mypyc" not in p.name
    )
    if rc or not names:
        _clean()
        said = [x for x in BUILD_LOG.read_text().splitlines() if "plait build: pure" in x]
        why = said[-1].split(": ", 1)[1] if said else f"the build failed, see {BUILD_LOG}"
        _say(f"core: {why}")
        return False
    stamp = {"setup.py": setup} | {name: _sha(_source(name)) for name in names}
    BUILT.write_text(json.dumps(stamp, indent=1) + "\n")
    _say(f"core: compiled with mypyc ({len(names)} modules)")
    return True


def task_build(args: list[str]) -> int:
    ensure_venv("dev")
    ensure_compiled()
    return 0


#: Left out of the pure-Python pass of `test` (the whole suite runs on the compiled core
#: first): the invariant sweep, the tests over real sockets and network namespaces,
#: which wait on wall-clock time, and the packaging. The rest takes about a minute.
PURE_DESELECT: tuple[str, ...] = (
    "test_sweep.py",
    "test_adapters.py",
    "test_adapter_links.py",
    "test_netns.py",
    "test_netns_capacity.py",
    "test_netns_pmtu.py",
    "test_relay.py",
    "test_relay_observe.py",
    "test_relay_ops.py",
    "test_relay_rates.py",
    "test_uring.py",
    "test_packaging.py",  # builds the wheel, the same in either build
    "test_api_docs.py",  # pdoc over the docstrings
)


def task_test(args: list[str]) -> int:
    ensure_venv("dev")
    compiled = ensure_compiled()
    env = dict(os.environ)
    env.setdefault("HYPOTHESIS_PROFILE", "ci" if env.get("CI") else "dev")
    build = "compiled" if compiled else "pure Python"
    steps: list[tuple[str, list[str | Path], dict[str, str]]] = [
        ("ruff check", [BIN / "ruff", "check", "."], env),
        ("ruff format --check", [BIN / "ruff", "format", "--check", "."], env),
        ("mypy --strict", [PY, "-m", "mypy"], env),
        (f"pytest ({build})", [PY, "-m", "pytest", *args], env),
    ]
    if compiled:
        pure = args or [f"--ignore=tests/{name}" for name in PURE_DESELECT]
        pure_env = env | {"PLAIT_PURE_PYTHON": "1"}
        steps.append(("pytest (pure Python)", [PY, "-m", "pytest", "-q", *pure], pure_env))
    failed = []
    for name, cmd, step_env in steps:
        _say(f"--- {name}")
        if _run(*cmd, env=step_env):
            failed.append(name)
    if failed:
        _say("FAILED: " + ", ".join(failed))
        return 1
    _say("all checks passed: " + ", ".join(name for name, _, _ in steps))
    return 0


def task_demo(args: list[str]) -> int:
    ensure_venv("dev")
    ensure_compiled()
    return _run(PY, "-m", "plait", "demo", *args)


def task_bench(args: list[str]) -> int:
    if not args:
        names = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))
        sys.exit("usage: python3 dev.py bench NAME [ARGS]; NAME is one of: " + ", ".join(names))
    ensure_venv("dev")
    ensure_compiled()
    return _run(PY, ROOT / "bench" / f"{args[0]}.py", *args[1:])


def task_fuzz(args: list[str]) -> int:
    if not args:
        names = sorted(p.stem.removeprefix("fuzz_") for p in (ROOT / "fuzz").glob("fuzz_*.py"))
        sys.exit(
            "usage: python3 dev.py fuzz NAME [libFuzzer flags]; NAME is one of: " + ", ".join(names)
        )
    ensure_venv("dev,fuzz")
    # atheris's coverage feedback instruments Python bytecode: fuzz the .py files
    env = {**os.environ, "PLAIT_PURE_PYTHON": "1"}
    return _run(PY, ROOT / "fuzz" / f"fuzz_{args[0]}.py", *args[1:], env=env)


TASKS = {
    "build": task_build,
    "test": task_test,
    "demo": task_demo,
    "bench": task_bench,
    "fuzz": task_fuzz,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    sys.exit(TASKS[sys.argv[1]](sys.argv[2:]))


if __name__ == "__main__":
    main()
