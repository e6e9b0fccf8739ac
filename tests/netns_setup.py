"""What the network-namespace tests share: two namespaces joined by shaped veth pairs,
and the programs run inside them.

`shaped_namespaces` makes namespaces A and B, joined by one veth pair per link (``pa<i>`` in A,
``pb<i>`` in B, addresses 10.77.<i>.1 and .2), each direction shaped by the ``tc``
qdisc the caller names; they are deleted however the test ends, and ones left by a
killed run are deleted at the next. `Procs` starts programs inside a namespace (relays,
``tests.impair`` helpers), reads what they print and stops them. `tc_stats` reads the
qdiscs' counters. Everything needs root, ``ip`` and ``tc``; `why_not` says what is
missing, and the caller skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest

ROOT: Final = Path(__file__).resolve().parent.parent
PREFIX: Final = "plaitT-"
"""Namespace names start with this, then the pid of the test run that made them."""
PSK: Final = bytes(range(100, 132))
STATE: Final = re.compile(r"\b(\d+):(UP|DOWN|DEGRADED|PROBATION) ")
"""A link's state in the relay's status line."""
CARRYING: Final = ("UP", "DEGRADED")
Qdisc = Callable[[int], tuple[str, ...]]
"""A link's index -> the ``tc qdisc add ... root`` arguments that shape it."""


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)  # noqa: S603  (ip/tc, fixed arguments)


def ip(ns: str, *args: str) -> None:
    run("ip", "-n", ns, *args)


def why_not() -> str | None:
    """Why the namespace tests cannot run here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (iproute2)"
    return None


def _stale() -> None:
    """Delete namespaces left by earlier runs whose process is gone."""
    with contextlib.suppress(OSError):
        for name in os.listdir("/var/run/netns"):
            pid = name.removeprefix(PREFIX).split("-")[0]
            if name.startswith(PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)  # noqa: S603, S607  (ip, fixed arguments)


@contextlib.contextmanager
def shaped_namespaces(links: int, qdisc: Qdisc) -> Iterator[tuple[str, str]]:
    """Two namespaces joined by `links` veth pairs, both directions of pair i shaped by
    ``qdisc(i)``; always deleted afterwards. Skips the test when it cannot make them."""
    why = why_not()
    if why is not None:
        pytest.skip(why)
    _stale()
    a, b = f"{PREFIX}{os.getpid()}-a", f"{PREFIX}{os.getpid()}-b"
    made: list[str] = []
    try:
        for ns in (a, b):
            try:
                run("ip", "netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
            made.append(ns)
            ip(ns, "link", "set", "lo", "up")
        for i in range(links):
            peer = ("peer", "name", f"pb{i}", "netns", b)
            run("ip", "link", "add", f"pa{i}", "netns", a, "type", "veth", *peer)
            for ns, dev, host in ((a, f"pa{i}", 1), (b, f"pb{i}", 2)):
                ip(ns, "addr", "add", f"10.77.{i}.{host}/30", "dev", dev)
                ip(ns, "link", "set", dev, "up")
                try:
                    run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *qdisc(i))
                except subprocess.CalledProcessError as exc:
                    pytest.skip(f"tc refused {qdisc(i)}: {exc.stderr.decode().strip()}")
        yield a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)  # noqa: S603, S607  (ip, fixed arguments)


def tc_stats(ns: str) -> dict[str, dict[str, int]]:
    """Each root qdisc's counters in `ns`, by device: ``bytes`` and ``packets`` sent
    (dequeued), ``drops`` (packets: a full queue), ``backlog`` (bytes queued now)."""
    out = subprocess.run(  # noqa: S603  (tc, fixed arguments)
        ["tc", "-n", ns, "-s", "-j", "qdisc", "show"],  # noqa: S607
        check=True,
        capture_output=True,
        timeout=10,
    ).stdout
    keys = ("bytes", "packets", "drops", "backlog")
    return {q["dev"]: {k: int(q.get(k, 0)) for k in keys} for q in json.loads(out) if q.get("root")}


class Procs:
    """Programs started inside a namespace; stopped (and reaped) however the test ends."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, ns: str, args: Sequence[str]) -> None:
        """Run ``python ARGS`` in `ns`, with stats to NAME.json and output to NAME.err."""
        err = (self.tmp / f"{name}.err").open("wb")
        flag = "--stats-json" if "relay" in args else "--stats"
        cmd = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            *args,
            flag,
            str(self.tmp / f"{name}.json"),
        ]
        self.procs[name] = subprocess.Popen(cmd, stderr=err, stdout=err, cwd=ROOT)  # noqa: S603  (our own programs)
        err.close()

    def err(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def load(self) -> dict[str, Any]:
        """Every program's stats file (each has stopped and written it)."""
        return {n: json.loads((self.tmp / f"{n}.json").read_text()) for n in self.procs}

    def wait_for(self, name: str, text: str, timeout: float) -> None:
        self.wait_until(name, lambda: text in self.err(name), repr(text), timeout)

    def states(self, name: str) -> dict[int, str]:
        """Each link's state in the last status line `name` (a relay) printed."""
        lines = [line for line in self.err(name).splitlines() if " | " in line]
        return {int(k): v for k, v in STATE.findall(lines[-1])} if lines else {}

    def wait_carrying(self, name: str, links: Sequence[int], timeout: float) -> None:
        """Until `name`'s status line shows each of `links` carrying data (UP or
        DEGRADED): a round trip confirmed on it, and probation served."""
        self.wait_until(
            name,
            lambda: all(self.states(name).get(i) in CARRYING for i in links),
            f"links {list(links)} carrying",
            timeout,
        )

    def wait_until(self, name: str, ready: Callable[[], bool], what: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not ready():
            assert self.procs[name].poll() is None, f"{name} exited:\n{self.err(name)}"
            assert time.monotonic() < end, f"{name}: not {what} in {timeout} s: {self.err(name)}"
            time.sleep(0.05)

    def send_signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def stop(self, name: str, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def pct(values: Sequence[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]
