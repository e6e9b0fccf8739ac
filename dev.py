#!/usr/bin/env python3
"""plait's one entry point for people and CI: sets up .venv, then runs a task.

    python3 dev.py demo [ARGS]     run the demo (see `python3 dev.py demo --help`)
    python3 dev.py test [ARGS]     ruff + mypy + the whole pytest suite (ARGS go to pytest)
    python3 dev.py bench NAME      run bench/NAME.py (e.g. wire), writes bench/results/NAME.json
    python3 dev.py fuzz NAME [...] run fuzz/fuzz_NAME.py under atheris (e.g. decode -runs=1000000)

Only the standard library is used here, so it works on a fresh clone with nothing but
Python >= 3.11 and pip. The virtual environment is created once and reinstalled only when
pyproject.toml changes, so a second run starts at once.
"""

from __future__ import annotations

import hashlib
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
    rc = rc or _run(PY, "-m", "pip", "install", *quiet, "-e", f".[{extras}]")
    if rc:
        sys.exit(f"[dev] install failed (exit {rc})")
    STAMP.write_text("\n".join([*have.splitlines(), wanted]) + "\n")


def task_test(args: list[str]) -> int:
    ensure_venv("dev")
    env = dict(os.environ)
    env.setdefault("HYPOTHESIS_PROFILE", "ci" if env.get("CI") else "dev")
    steps: list[tuple[str, list[str | Path]]] = [
        ("ruff check", [BIN / "ruff", "check", "."]),
        ("ruff format --check", [BIN / "ruff", "format", "--check", "."]),
        ("mypy --strict", [PY, "-m", "mypy"]),
        ("pytest", [PY, "-m", "pytest", *args]),
    ]
    failed = []
    for name, cmd in steps:
        _say(f"--- {name}")
        if _run(*cmd, env=env):
            failed.append(name)
    if failed:
        _say("FAILED: " + ", ".join(failed))
        return 1
    _say("all checks passed: " + ", ".join(name for name, _ in steps))
    return 0


def task_demo(args: list[str]) -> int:
    ensure_venv("dev")
    return _run(PY, "-m", "plait", "demo", *args)


def task_bench(args: list[str]) -> int:
    if not args:
        names = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))
        sys.exit("usage: python3 dev.py bench NAME [ARGS]; NAME is one of: " + ", ".join(names))
    ensure_venv("dev")
    return _run(PY, ROOT / "bench" / f"{args[0]}.py", *args[1:])


def task_fuzz(args: list[str]) -> int:
    if not args:
        names = sorted(p.stem.removeprefix("fuzz_") for p in (ROOT / "fuzz").glob("fuzz_*.py"))
        sys.exit(
            "usage: python3 dev.py fuzz NAME [libFuzzer flags]; NAME is one of: " + ", ".join(names)
        )
    ensure_venv("dev,fuzz")
    return _run(PY, ROOT / "fuzz" / f"fuzz_{args[0]}.py", *args[1:])


TASKS = {"test": task_test, "demo": task_demo, "bench": task_bench, "fuzz": task_fuzz}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    sys.exit(TASKS[sys.argv[1]](sys.argv[2:]))


if __name__ == "__main__":
    main()
