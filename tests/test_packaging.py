"""What a pip user gets (issue 17): the sdist and the wheel carry LICENSE, the wheel
both packages with their py.typed, the ``plait`` entry point and an extra for every
optional runtime; installed from the wheel alone, away from the repository,
``plait --version`` and ``plait relay --help`` work.

The build goes through pypa/build (an isolated environment with the backend that
pyproject.toml names), as a release would; it takes a few seconds. It builds the pure
wheel (PLAIT_PURE_PYTHON=1): a compiled one is built the same way, but takes a minute
(docs/development.md)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import plait

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("build", reason="needs pypa/build (the dev extra)")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(  # noqa: S603  (this interpreter, our own tree)
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "PLAIT_PURE_PYTHON": "1"},
    )
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_the_wheel_has_license_packages_types_and_entry_point(dist: Path) -> None:
    wheel = _one(dist, "plait-*.whl")
    info = f"plait-{plait.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
    for package in ("plait", "plait_adapters"):
        assert f"{package}/__init__.py" in names
        assert f"{package}/py.typed" in names
    assert "plait/sim/__init__.py" in names
    assert "plait_adapters/relay.py" in names
    assert not any(name.startswith("tests/") for name in names)
    assert f"{info}/licenses/LICENSE" in names  # where PEP 639 puts it
    assert "plait = plait.cli:main" in entry_points
    assert meta["Version"] == plait.__version__
    assert meta["License-Expression"] == "MIT"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"plot", "metrics", "uvloop", "trio", "uring"} <= extras


def test_the_sdist_has_license_and_changelog(dist: Path) -> None:
    sdist = _one(dist, "plait-*.tar.gz")
    top = f"plait-{plait.__version__}"
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"):
        assert f"{top}/{name}" in names


def test_the_installed_command_works_without_the_repository(dist: Path, tmp_path: Path) -> None:
    """The wheel unpacked alone (its dependencies from this environment), run from an
    empty directory: the entry point script answers --version and relay --help."""
    wheel = _one(dist, "plait-*.whl")
    target = tmp_path / "site"
    subprocess.run(  # noqa: S603  (this interpreter's pip, our own wheel)
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    script = [sys.executable, str(target / "bin" / "plait")]

    def run(*args: str) -> str:
        done = subprocess.run(  # noqa: S603  (the installed script)
            [*script, *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import plait, plait_adapters; print(plait.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert where.startswith(str(target))  # the wheel's copy, not the repository's
    assert run("--version").strip() == f"plait {plait.__version__}"
    help_text = run("relay", "--help")
    assert "LOCAL=REMOTE[@IFACE][:RATE]" in help_text
    assert "docs/" not in help_text
    if importlib.util.find_spec("pdoc") is not None:  # the API reference, from the wheel
        subprocess.run(
            [sys.executable, "-m", "pdoc", "-o", "api", "plait", "plait_adapters.relay"],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            check=True,
            timeout=120,
        )
        assert 'id="Endpoint"' in (elsewhere / "api" / "plait.html").read_text()
        assert (elsewhere / "api" / "plait_adapters" / "relay.html").is_file()
