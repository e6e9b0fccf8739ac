"""What an operator watches on a running ``plait relay`` (issue 17): its log file and
its live metrics. Two relay commands (subprocesses) on 127.0.0.1 over 3 links carry
datagrams both ways; every wait is bounded and generous (a loaded 2-core machine)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.relay_ends import LINKS, PSK, Ends, all_carrying, free_ports, link_flags

ROOT = Path(__file__).resolve().parent.parent


def _wait(ready: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while not ready() and time.monotonic() < end:
        time.sleep(0.05)
    return ready()


class _Commands:
    """Relay B (the responder, forwarding to the sink), then relay A (the initiator,
    listening), each with its own extra flags; stderr to files."""

    def __init__(self, ends: Ends, tmp: Path, extra_a: list[str], extra_b: list[str]) -> None:
        self.ends = ends
        key = tmp / "plait.key"
        key.write_bytes(PSK)
        a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
        self.listen = ("127.0.0.1", free_ports(1)[0])
        common = ["--psk-file", str(key), "--stats-interval", "0.2"]
        argv_a = ["--listen", f"127.0.0.1:{self.listen[1]}", "--initiator"]
        argv_a += [*link_flags(a_ports, b_ports), *common, *extra_a]
        argv_b = ["--forward", f"127.0.0.1:{ends.sink_port}", *link_flags(b_ports, a_ports)]
        argv_b += [*common, *extra_b]
        self.errs = {name: tmp / f"{name}.err" for name in "ab"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, argv in (("b", argv_b), ("a", argv_a)):
            with self.errs[name].open("wb") as f:
                cmd = [sys.executable, "-m", "plait", "relay", *argv]
                self.procs[name] = subprocess.Popen(cmd, stderr=f, cwd=ROOT)  # noqa: S603  (our own command)

    def err(self, name: str) -> str:
        return self.errs[name].read_text()

    def carrying(self) -> bool:
        return all(all_carrying(self.err(name)) for name in "ab")

    def stop(self, name: str, sig: int = signal.SIGINT) -> int:
        self.procs[name].send_signal(sig)
        return self.procs[name].wait(20.0)

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Callable[[list[str], list[str]], _Commands]]:
    ends = Ends()
    made: list[_Commands] = []

    def start(extra_a: list[str], extra_b: list[str]) -> _Commands:
        made.append(_Commands(ends, tmp_path, extra_a, extra_b))
        return made[-1]

    yield start
    for c in made:
        c.kill()
    ends.close()


def test_the_log_file_tells_the_session_and_the_links(
    commands: Callable[[list[str], list[str]], _Commands], tmp_path: Path
) -> None:
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    c = commands(["--log-file", str(log_a)], ["--log-file", str(log_b), "--log-level", "WARNING"])
    assert _wait(c.carrying), c.err("a") + c.err("b")
    assert c.stop("a") == 0
    assert _wait(lambda: "a new session waits" in c.err("b"))
    assert c.stop("b", signal.SIGTERM) == 0
    a, b = log_a.read_text(), log_b.read_text()
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) plait\.[a-z]+: "
    assert all(re.match(line, text) for text in a.splitlines())
    sid = re.search(r"INFO plait.session: session (0x[0-9a-f]{8}) established \(raw\)", a)
    assert sid is not None
    assert "INFO plait.session: session opening: initiator, 3 links (raw)" in a
    assert f"INFO plait.session: session {sid[1]} ended: application, by this end (code 0" in a
    assert a.count(" established") == 1  # the relay's own notice is not logged twice
    assert "INFO" not in b  # --log-level warning (B closed cleanly: nothing worse)
