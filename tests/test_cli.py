"""The ``plait`` command line behaves like a networking tool's (issue 17): a version,
quiet on a closed pipe, numbers checked with their defaults shown, one-line usage
errors, ``--plot`` checked before the demo runs, ``--help`` texts that stand alone."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import plait
from plait import cli, demo
from plait_adapters._relay_config import RelayConfig, build_parser, parse


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"plait {plait.__version__}"


def test_a_closed_pipe_ends_the_demo_quietly() -> None:
    """``plait demo | head -1``: the reader is gone before the summary is printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "plait", "demo", "--scenario", "clean", "--duration", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # like `head` when it has read enough
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "1e9", "soon"])
def test_duration_refuses_what_is_not_a_length(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["demo", "--duration", value], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1  # one line, no usage block
    assert err.startswith("plait demo: error: argument --duration: ")
    assert err.rstrip().endswith("(see plait demo --help)")


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["demo", "--scenario", "nowhere"], ["frobnicate"], [], ["selfcheck", "-x"]):
        code, _, err = _run(argv, capsys)
        assert code == 2, argv
        assert err.count("\n") == 1, (argv, err)
        assert "usage:" not in err
        assert "--help)" in err


def test_help_shows_defaults_and_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["demo", "--help"], capsys)
    assert code == 0
    assert "(default: the scenario's own, 10 s)" in " ".join(out.split())
    assert "(default: lossy)" in out
    code, out, _ = _run(["selfcheck", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert "--seed SEED seed of the random packets and losses (default: 1)" in flat
    assert "--json print the report as JSON" in flat


def test_selfcheck_no_longer_promises_a_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["selfcheck"], capsys)
    assert code == 0
    assert "arrives" not in out
    assert "plait demo" in out


def test_plot_without_matplotlib_fails_before_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like

    def not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo ran before matplotlib was checked")

    monkeypatch.setattr(demo, "demo", not_run)
    code, out, err = _run(["demo", "--plot", str(tmp_path / "p.png")], capsys)
    assert code == 2
    assert out == ""
    assert err == "plait demo: error: --plot needs matplotlib: pip install 'plait[plot]'\n"


def test_relay_help_stands_alone_and_its_example_parses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _run(["relay", "--help"], capsys)
    assert code == 0
    assert "docs/" not in out  # a pip user has no docs folder
    assert out == build_parser().format_help()
    # The example in the epilog is a working pair of configurations.
    lines = out.split("example,")[1].splitlines()
    commands = [" ".join(lines[i : i + 2]).replace("\\", " ") for i in (1, 3)]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key").write_bytes(bytes(range(32)))
    for command in commands:
        argv = shlex.split(command.split(":", 1)[1])
        assert argv[:2] == ["plait", "relay"]
        cfg = parse(argv[2:])
        assert isinstance(cfg, RelayConfig)
        assert len(cfg.links) == 2
