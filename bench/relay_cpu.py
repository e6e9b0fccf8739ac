"""The relay's CPU between network namespaces, against SRT and RIST in the same run.

    python3 dev.py bench relay_cpu             # as root, ~8 min; bench/results/relay_cpu.json
    python3 dev.py bench relay_cpu --quick     # a smoke run (one 5 s round), nothing written

Two namespaces, A and B, are joined by four veth pairs, each direction shaped by
``tc tbf`` at 2, 5, 8 and 10 Mbit/s (tests/netns_setup.py, as in tests/test_netns.py,
without the impairment relay: no loss or delay is added, so what is measured is the
cost of carrying the stream, not of repairing it). A source in A sends 4 Mbit/s of
1316-byte datagrams (380/s: seven MPEG-TS packets each, what SRT and RIST carry) to
the local end of a tunnel; a sink in B receives them from the far end. The tunnels:

* **plait compiled**: ``plait relay`` at each end with its default settings (psk, the
  4 links with their rates, FEC adaptive, ``busy_poll_us`` 0, ``spin_us`` 50), the core
  compiled with mypyc;
* **plait pure**: the same on the interpreted core (``PLAIT_PURE_PYTHON=1``);
* **SRT**: ``srt-live-transmit`` at each end (udp -> srt caller, srt listener -> udp),
  latency 150 ms, AES-128, over link 3 (10 Mbit/s) alone;
* **RIST**: ``ristsender`` / ``ristreceiver`` (main profile, AES-128, a 150 ms buffer)
  over link 3 alone;
* **UDP forwarder**: the floor of any relay in Python that wakes once per datagram:
  this script's ``--forwarder`` mode at each end (a blocking ``recv`` and a ``send``
  per datagram, nothing else) over link 3 alone.

The stream runs for ``--seconds`` + 3 s; each end's CPU (user + system time of the
whole process, all its threads, from /proc/PID/stat) is read 2 s after the stream
starts and ``--seconds`` later: the steady state, without start-up, handshake or the
path MTU search. It is given as a share of one core (100 % = one CPU busy the whole
time). CPU time is what the process itself used: a loaded machine adds none of its
waits, as it would to wall-clock latency, but still inflates it, since a process woken
among others runs with cold caches (plait's relays used up to twice as much with both
vCPUs busy), so each sample records the load average. Each round runs every tunnel
once, in a rotated order, so drift in the machine's load hits each alike; the medians
over the rounds are printed and written with every sample. For plait, the time of each thread (the
session's loop thread, and ``main``, which prints the stats) and its wake-ups are
also given.

Needs root, ``ip`` and ``tc`` (with tbf); SRT and RIST need ``srt-live-transmit`` and
``ristsender``/``ristreceiver`` (Debian: ``apt-get install srt-tools rist-tools``), and
their rows are skipped, saying so, without them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from _harness import write_json

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.netns_setup, tests.impair

import pytest  # noqa: E402  (shaped_namespaces skips through pytest.skip)

from tests.netns_setup import PSK, shaped_namespaces  # noqa: E402  (after the path)

RATES_MBIT: Final = (2, 5, 8, 10)
PEER_LINK: Final = 3
"""The link SRT and RIST use: the 10 Mbit/s one."""
STREAM_BPS: Final = 4_000_000
SIZE: Final = 1316
WARM_S: Final = 2.0
"""The stream runs this long before the CPU is read: start-up and the path MTU search."""
TAIL_S: Final = 1.0
LATENCY_MS: Final = 150
SRT_PASSPHRASE: Final = "plait-bench-relay-cpu"  # noqa: S105  (a bench's, not a secret)
TICK: Final = os.sysconf("SC_CLK_TCK")
RELAY_ARGS: list[str] = []
"""More arguments for both plait relays (``--relay-arg``), to measure a setting."""


def _tbf(mbit: int) -> tuple[str, ...]:
    return ("tbf", "rate", f"{mbit}mbit", "burst", "4kb", "latency", "50ms")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of `pid` so far: how often it slept."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            status = (task / "status").read_text()
            total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread of `pid`: ``main`` and the others by their tid."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = "main" if int(task.name) == pid else task.name
            out[name] = (int(fields[11]) + int(fields[12])) / TICK
    return out


@dataclass
class Tunnel:
    """One way to carry the stream: the command of each end (in A and in B), the
    environment, and the text in A's output that says it is ready (None: wait 2 s)."""

    name: str
    a: Callable[[Path], list[str]]
    b: Callable[[Path], list[str]]
    env: dict[str, str]
    ready: str | None
    needs: tuple[str, ...] = ()


def _plait_a(tmp: Path) -> list[str]:
    links = []
    for i, mbit in enumerate(RATES_MBIT):
        rate = f"{round(mbit * 950)}k"  # 95 % of tbf's rate: docs/relay.md, Rates
        links += ["--link", f"10.77.{i}.1:7000=10.77.{i}.2:7000@pa{i}:{rate}"]
    return [
        sys.executable,
        "-m",
        "plait",
        "relay",
        "--initiator",
        "--listen",
        "127.0.0.1:5000",
        "--psk-file",
        str(tmp / "plait.key"),
        "--stats-json",
        str(tmp / "a.json"),
        *links,
        *RELAY_ARGS,
    ]


def _plait_b(tmp: Path) -> list[str]:
    links = []
    for i, mbit in enumerate(RATES_MBIT):
        links += ["--link", f"10.77.{i}.2:7000=10.77.{i}.1:7000:{round(mbit * 950)}k"]
    return [
        sys.executable,
        "-m",
        "plait",
        "relay",
        "--forward",
        "127.0.0.1:9000",
        "--psk-file",
        str(tmp / "plait.key"),
        "--stats-json",
        str(tmp / "b.json"),
        *links,
        *RELAY_ARGS,
    ]


def _forwarder(listen: str, to: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [sys.executable, str(Path(__file__).resolve()), "--forwarder", listen, to]


def forward(listen: str, to: str) -> None:
    """``--forwarder``: each datagram that arrives at `listen` goes on to `to`, until
    a signal ends the process."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    host, _, port = listen.rpartition(":")
    out_host, _, out_port = to.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.connect((out_host, int(out_port)))
    buf = bytearray(65536)
    while True:
        n = sock.recv_into(buf)
        with contextlib.suppress(OSError):
            out.send(memoryview(buf)[:n])


_SRT: Final = f"latency={LATENCY_MS}&passphrase={SRT_PASSPHRASE}&pbkeylen=16"
_RIST: Final = ["-p", "1", "-b", str(LATENCY_MS), "-s", SRT_PASSPHRASE, "-e", "128"]
_RIST_QUIET: Final = ["-S", "0", "-v", "3"]
_PEER_IP: Final = f"10.77.{PEER_LINK}.2"

TUNNELS: Final = (
    Tunnel("plait compiled", _plait_a, _plait_b, {}, "established"),
    Tunnel("plait pure", _plait_a, _plait_b, {"PLAIT_PURE_PYTHON": "1"}, "established"),
    Tunnel(
        "SRT",
        lambda tmp: [
            "srt-live-transmit",
            "-q",
            "-chunk:1316",
            "udp://127.0.0.1:5000",
            f"srt://{_PEER_IP}:7600?mode=caller&{_SRT}",
        ],
        lambda tmp: [
            "srt-live-transmit",
            "-q",
            "-chunk:1316",
            f"srt://{_PEER_IP}:7600?mode=listener&{_SRT}",
            "udp://127.0.0.1:9000",
        ],
        {},
        None,
        ("srt-live-transmit",),
    ),
    Tunnel(
        "RIST",
        lambda tmp: [
            "ristsender",
            *_RIST,
            *_RIST_QUIET,
            "-i",
            "udp://127.0.0.1:5000",
            "-o",
            f"rist://{_PEER_IP}:7700",
        ],
        lambda tmp: [
            "ristreceiver",
            *_RIST,
            *_RIST_QUIET,
            "-i",
            f"rist://@{_PEER_IP}:7700",
            "-o",
            "udp://127.0.0.1:9000",
        ],
        {},
        None,
        ("ristsender", "ristreceiver"),
    ),
    Tunnel(
        "UDP forwarder",
        _forwarder("127.0.0.1:5000", f"{_PEER_IP}:7800"),
        _forwarder(f"{_PEER_IP}:7800", "127.0.0.1:9000"),
        {},
        None,
    ),
)


class Run:
    """The processes of one tunnel's run; all stopped however it ends."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, ns: str, cmd: Sequence[str], env: dict[str, str]) -> int:
        out = (self.tmp / f"{name}.err").open("wb")
        # `ip netns exec` execs the command: the pid is the program's own
        self.procs[name] = subprocess.Popen(  # noqa: S603  (our programs and the peers', fixed)
            ["ip", "netns", "exec", ns, *cmd],  # noqa: S607
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=os.environ | env,
        )
        out.close()
        return self.procs[name].pid

    def err(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def wait_for(self, name: str, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while text not in self.err(name):
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.err(name)}")
            if time.monotonic() > end:
                raise RuntimeError(f"{name}: no {text!r} in {timeout} s: {self.err(name)}")
            time.sleep(0.05)

    def stop(self, name: str, sig: int = signal.SIGINT) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_one(tunnel: Tunnel, ns_a: str, ns_b: str, seconds: float) -> dict[str, Any]:
    """Carry the stream once through `tunnel`; each end's CPU over the steady state."""
    with tempfile.TemporaryDirectory(prefix="plait-relay-cpu-") as d:
        tmp = Path(d)
        (tmp / "plait.key").write_text(PSK.hex(), encoding="ascii")
        run = Run(tmp)
        helper = [sys.executable, "-m", "tests.impair"]
        try:
            sink = [*helper, "sink", "--bind", "127.0.0.1:9000", "--stats", str(tmp / "sink.json")]
            run.start("sink", ns_b, sink, {})
            pid_b = run.start("b", ns_b, tunnel.b(tmp), tunnel.env)
            time.sleep(0.3)  # the listener first
            pid_a = run.start("a", ns_a, tunnel.a(tmp), tunnel.env)
            if tunnel.ready is not None:
                run.wait_for("a", tunnel.ready, 30.0)
            time.sleep(2.0)  # links up (plait: probation), the peers connected
            stream = ["--to", "127.0.0.1:5000", "--rate-bps", str(STREAM_BPS), "--size", str(SIZE)]
            stream += ["--seconds", str(WARM_S + seconds + TAIL_S)]
            run.start(
                "source", ns_a, [*helper, "source", *stream, "--stats", str(tmp / "src.json")], {}
            )
            time.sleep(WARM_S)
            t0 = time.monotonic()
            c0 = {"a": cpu_s(pid_a), "b": cpu_s(pid_b)}
            th0 = {"a": thread_cpu_s(pid_a), "b": thread_cpu_s(pid_b)}
            w0 = {"a": wakeups(pid_a), "b": wakeups(pid_b)}
            time.sleep(seconds)
            c1 = {"a": cpu_s(pid_a), "b": cpu_s(pid_b)}
            th1 = {"a": thread_cpu_s(pid_a), "b": thread_cpu_s(pid_b)}
            w1 = {"a": wakeups(pid_a), "b": wakeups(pid_b)}
            wall = time.monotonic() - t0
            assert run.procs["source"].wait(TAIL_S + 30.0) == 0, run.err("source")
            time.sleep(0.5)  # the last datagrams' way
            run.stop("a")
            run.stop("b")
            run.stop("sink", signal.SIGTERM)
        finally:
            run.kill_all()
        sent = json.loads((tmp / "src.json").read_text())["sent"]
        sink_stats = json.loads((tmp / "sink.json").read_text())
        lat = sorted(sink_stats["latency_us"]) or [0]
        out: dict[str, Any] = {
            "cpu_pct": {e: round(100.0 * (c1[e] - c0[e]) / wall, 2) for e in ("a", "b")},
            "delivered_pct": round(100.0 * sink_stats["received"] / sent, 3),
            "latency_ms": {
                "p50": lat[len(lat) // 2] / 1000,
                "p99": lat[min(len(lat) - 1, len(lat) * 99 // 100)] / 1000,
            },
            "wakeups_per_s": {e: round((w1[e] - w0[e]) / wall) for e in ("a", "b")},
            "window_s": round(wall, 3),
            "loadavg_1min": round(os.getloadavg()[0], 2),
        }
        if tunnel.ready is not None:  # plait: the loop thread and the main thread apart
            out["threads_pct"] = {
                e: {
                    t: round(100.0 * (th1[e][t] - th0[e].get(t, 0.0)) / wall, 2)
                    for t in sorted(th1[e])
                }
                for e in ("a", "b")
            }
            for end in ("a", "b"):
                session = json.loads((tmp / f"{end}.json").read_text())["session"]
                out.setdefault("timer_late_p99_us", {})[end] = session["timer_late_p99_ns"] // 1000
        return out


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2)


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        out[name] = {
            "cpu_pct_a": _median([r["cpu_pct"]["a"] for r in runs]),
            "cpu_pct_b": _median([r["cpu_pct"]["b"] for r in runs]),
            "delivered_pct": min(r["delivered_pct"] for r in runs),
            "latency_p50_ms": _median([r["latency_ms"]["p50"] for r in runs]),
            "latency_p99_ms": _median([r["latency_ms"]["p99"] for r in runs]),
            "loadavg_1min": _median([r["loadavg_1min"] for r in runs]),
        }
    for peer in ("SRT", "RIST"):
        if peer in out and "plait compiled" in out:
            p, q = out["plait compiled"], out[peer]
            both = (p["cpu_pct_a"] + p["cpu_pct_b"]) / max(0.01, q["cpu_pct_a"] + q["cpu_pct_b"])
            out["plait compiled"][f"vs_{peer}"] = round(both, 2)
    return out


def render(summary: dict[str, Any], rounds: int, seconds: float) -> str:
    lines = [
        f"relay CPU, {STREAM_BPS / 1e6:g} Mbit/s of {SIZE}-byte datagrams between namespaces, "
        f"medians of {rounds} x {seconds:g} s (% of one core, user + system)",
        f"  {'tunnel':<16} {'end A':>7} {'end B':>7}   {'delivered':>9}   latency p50 / p99",
    ]
    for name, s in summary.items():
        lines.append(
            f"  {name:<16} {s['cpu_pct_a']:6.2f}% {s['cpu_pct_b']:6.2f}%   "
            f"{s['delivered_pct']:8.2f}%   {s['latency_p50_ms']:.1f} / {s['latency_p99_ms']:.1f} ms"
        )
    loads = [s["loadavg_1min"] for s in summary.values() if "loadavg_1min" in s]
    if loads:
        lines.append(f"  load average (1 min, medians per tunnel) {min(loads):g} to {max(loads):g}")
    ratios = [
        f"{k[3:]} {v:.2f}x"
        for k, v in summary.get("plait compiled", {}).items()
        if k.startswith("vs_")
    ]
    if ratios:
        lines.append("  plait compiled (A + B) against " + ", ".join(ratios))
    return "\n".join(lines)


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    with shaped_namespaces(len(RATES_MBIT), lambda i: _tbf(RATES_MBIT[i])) as pair:
        yield pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 5 s round; nothing written")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument(
        "--only",
        action="append",
        help="run only this tunnel (repeatable): " + ", ".join(t.name for t in TUNNELS),
    )
    parser.add_argument(
        "--relay-arg",
        action="append",
        default=[],
        help="an argument for both plait relays (repeatable), e.g. --relay-arg=--spin-us=0",
    )
    parser.add_argument("--forwarder", nargs=2, metavar=("LISTEN", "TO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.forwarder:
        forward(*args.forwarder)
        return
    RELAY_ARGS.extend(args.relay_arg)
    rounds, seconds = (1, 5.0) if args.quick else (args.rounds, args.seconds)
    tunnels = [t for t in TUNNELS if args.only is None or t.name in args.only]
    skipped = {}
    for t in tunnels:
        missing = [tool for tool in t.needs if shutil.which(tool) is None]
        if missing:
            skipped[t.name] = f"needs {', '.join(missing)} (apt-get install srt-tools rist-tools)"
    tunnels = [t for t in tunnels if t.name not in skipped]
    for name, why in skipped.items():
        print(f"  {name}: skipped, {why}")
    samples: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tunnels}
    try:
        with namespaces() as (ns_a, ns_b):
            for r in range(rounds):
                order = tunnels[r % len(tunnels) :] + tunnels[: r % len(tunnels)]
                for t in order:
                    got = run_one(t, ns_a, ns_b, seconds)
                    samples[t.name].append(got)
                    print(f"  round {r + 1} {t.name:<16} {json.dumps(got)}", flush=True)
    except pytest.skip.Exception as exc:
        sys.exit(f"relay_cpu: cannot run here: {exc}")
    summary = summarize(samples)
    print(render(summary, rounds, seconds))
    if not args.quick:
        path = write_json(
            "relay_cpu",
            {
                "setup": {
                    "rates_mbit": RATES_MBIT,
                    "peer_link": PEER_LINK,
                    "stream_bps": STREAM_BPS,
                    "datagram_bytes": SIZE,
                    "window_s": seconds,
                    "rounds": rounds,
                    "loadavg": os.getloadavg(),
                    "cpus": os.cpu_count(),
                },
                "skipped": skipped,
                "summary": summary,
                "samples": samples,
            },
        )
        print(f"written {path}")


if __name__ == "__main__":
    main()
