"""The API reference (issue 17): pdoc builds it from the docstrings, with a page per
public module and an entry for every name `plait` exports; the command in
docs/development.md lists the same modules as this test."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

import plait

pdoc = pytest.importorskip("pdoc", reason="the API reference needs pdoc (the dev extra)")

ROOT = Path(__file__).resolve().parent.parent
MODULES = (
    "plait",
    "plait.config",
    "plait.events",
    "plait.stats",
    "plait.sim",
    "plait.tracelog",
    "plait_adapters",
    "plait_adapters.raw",
    "plait_adapters.aio",
    "plait_adapters.trio_",
    "plait_adapters.uring",
    "plait_adapters.relay",
)


def test_the_documented_command_builds_these_modules() -> None:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    command = re.search(r"^\.venv/bin/pdoc -o build/api (.*)$", text, re.M)
    assert command is not None
    assert tuple(command[1].split()) == MODULES


# pdoc cannot place the fields a TypedDict inherits (uring's options); harmless.
@pytest.mark.filterwarnings("ignore:Cannot determine where")
def test_the_reference_has_every_public_name(tmp_path: Path) -> None:
    pdoc.pdoc(*MODULES, output_directory=tmp_path)
    for module in MODULES:
        assert (tmp_path / (module.replace(".", "/") + ".html")).is_file(), module
    page = (tmp_path / "plait.html").read_text(encoding="utf-8")
    modules = {name for name in plait.__all__ if isinstance(getattr(plait, name), ModuleType)}
    assert modules == {"errors", "seq", "wire"}  # pages of their own
    for name in modules:
        assert (tmp_path / "plait" / f"{name}.html").is_file()
    missing = [name for name in set(plait.__all__) - modules if f'id="{name}"' not in page]
    assert missing == []
    relay = (tmp_path / "plait_adapters" / "relay.html").read_text(encoding="utf-8")
    assert 'id="Relay"' in relay
