"""The two builds of the core: mypyc-compiled C extensions and the pure-Python modules.

`plait.COMPILED` says which one was imported; `PLAIT_PURE_PYTHON=1` forces the .py
files even where the extensions are built; and both builds replay the simulator's
scenarios to the same digest, byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import ExtensionFileLoader
from pathlib import Path

import pytest

import plait
from plait import _build

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "plait"
#: The modules setup.py compiles (a sample of the hot ones, and the ones it had to mend).
CORE = ("endpoint", "outbox", "inbox", "fec", "dwrr", "links", "wire", "wirefast", "crypto")
BUILT = any(SRC.glob("endpoint.*.so")) or any(SRC.glob("endpoint.*.pyd"))
#: The adapters' loop, compiled with the core (setup.py's ADAPTERS).
ADAPTERS = ("_threaded", "_poller", "_session", "raw")

#: Prints what a fresh interpreter imported, and a few simulator digests.
_PROBE = """
import json, sys
import plait
import plait_adapters.raw
from plait import sim
core = %r
adapters = %r
runs = [("lossy", 5), ("hostile", 1), ("flap", 2), ("video", 3)]
digests = [sim.run(sim.SCENARIOS[name], seed=seed, duration_ns=400_000_000).digest
           for name, seed in runs]
print(json.dumps({
    "compiled": plait.COMPILED,
    "files": {name: sys.modules["plait." + name].__file__ for name in core},
    "adapters": {name: sys.modules["plait_adapters." + name].__file__ for name in adapters},
    "digests": digests,
}))
"""


def _probe(pure: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PLAIT_PURE_PYTHON"}
    if pure:
        env["PLAIT_PURE_PYTHON"] = "1"
    out = subprocess.run(  # noqa: S603  (our own interpreter, a fixed script)
        [sys.executable, "-c", _PROBE % (CORE, ADAPTERS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_compiled_tells_which_modules_were_imported() -> None:
    loaded = [sys.modules[f"plait.{name}"] for name in CORE]
    compiled = [isinstance(m.__loader__, ExtensionFileLoader) for m in loaded]
    assert compiled == [plait.COMPILED] * len(CORE)
    if os.environ.get("PLAIT_PURE_PYTHON") or not BUILT:
        assert not plait.COMPILED
    # the interpreted tools around the core import the same modules
    assert plait.config.__file__ is not None
    assert plait.config.__file__.endswith(".py")


def test_pure_python_is_forced_by_the_environment() -> None:
    pure = _probe(pure=True)
    assert pure["compiled"] is False
    files = pure["files"]
    assert isinstance(files, dict)
    assert all(str(path).endswith(".py") for path in files.values())
    adapters = pure["adapters"]
    assert isinstance(adapters, dict)
    assert all(str(path).endswith(".py") for path in adapters.values())


@pytest.mark.skipif(not BUILT, reason="the compiled core is not built here (no C compiler?)")
def test_both_builds_replay_the_simulator_to_the_same_digest() -> None:
    pure, compiled = _probe(pure=True), _probe(pure=False)
    assert compiled["compiled"] is True
    files = compiled["files"]
    assert isinstance(files, dict)
    assert not any(str(path).endswith(".py") for path in files.values())
    adapters = compiled["adapters"]
    assert isinstance(adapters, dict)
    assert not any(str(path).endswith(".py") for path in adapters.values())
    assert compiled["digests"] == pure["digests"]


def test_a_changed_source_of_either_package_makes_the_build_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dev.py's stamp names plait's modules bare and the adapters' with their package;
    a source changed since it was compiled, in either, is found (the .py files run)."""
    core, adapters = tmp_path / "src" / "plait", tmp_path / "adapters" / "plait_adapters"
    for folder in (core, adapters):
        folder.mkdir(parents=True)
    (core / "endpoint.py").write_text("x = 1\n")
    (adapters / "raw.py").write_text("y = 1\n")
    stamp = core / "_compiled.json"
    monkeypatch.setattr(_build, "STAMP", stamp)
    monkeypatch.setattr(_build, "_HERE", core)
    monkeypatch.setattr(_build, "_ADAPTERS", adapters)
    sha = {name: _build._sha(name) for name in ("endpoint", "plait_adapters.raw")}
    stamp.write_text(json.dumps({"setup.py": "any", **sha}))
    assert _build._stale() == []
    (adapters / "raw.py").write_text("y = 2\n")
    assert _build._stale() == ["plait_adapters.raw"]
    (core / "endpoint.py").unlink()
    assert _build._stale() == ["endpoint", "plait_adapters.raw"]


def test_a_wrong_type_is_plaits_usage_error_in_either_build() -> None:
    """Compiled functions check their arguments' types at the call; the public API's
    int arguments are declared so that plait's own check still speaks (`IntArg`)."""
    config = plait.Config(links=[plait.LinkConfig(rate_bps=5_000_000)] * 2)
    with pytest.raises(plait.errors.UsageError, match="int"):
        plait.Endpoint(config, initiator=True, now=1.5)  # type: ignore[arg-type]  # misuse on purpose
    ep = plait.Endpoint(config, initiator=True, now=0)
    with pytest.raises(plait.errors.UsageError, match="link"):
        ep.receive_datagram(b"", link="0", now=0)  # type: ignore[arg-type]  # misuse on purpose
    with pytest.raises(plait.errors.UsageError, match="bytes"):
        ep.send("text", now=0)  # type: ignore[arg-type]  # misuse on purpose
