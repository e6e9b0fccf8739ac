"""The Python examples in README.md and docs/adapters.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
BLOCKS = _FENCE.findall(README.read_text(encoding="utf-8"))
BLOCKS += _FENCE.findall((ROOT / "docs" / "adapters.md").read_text(encoding="utf-8"))


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})  # noqa: S102  (our own docs)
    out = capsys.readouterr().out
    for line in BLOCKS[index].splitlines():
        if "print(" in line and "# " in line:  # a printed line documents its output
            assert line.split("# ", 1)[1] in out
