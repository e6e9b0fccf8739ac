"""``plait relay`` between two network namespaces over four shaped, lossy links.

Two namespaces, A and B, are joined by four veth pairs. Each direction of each pair
is shaped by ``tc tbf`` at the link's rate (2, 5, 8, 10 Mbit/s). Loss and delay come
from a user-space impairment relay in B (`tests.impair`, since this kernel has no
netem): 2 % loss per link and direction from a seeded `random.Random`, and a fixed
delay per link::

    ns A                                       ns B
    source -> relay A ==veth i, tbf==> impair i (2 % loss, d_i ms) -> relay B -> sink
                      <==veth i, tbf== impair i (2 % loss, d_i ms) <-

A 5 Mbit/s stream (1200-byte datagrams, ~520/s, sequence-numbered and timestamped)
runs through for `SECONDS`. The test asserts that >= 99.9 % arrive, each exactly once
and intact, and compares the one-way latency (source to sink, CLOCK_MONOTONIC, which
every namespace shares) with the floor of each link: its delay plus the time to
serialize one 1289-byte frame at its rate. The numbers are printed (``pytest -s``)
and written to ``netns.json`` in the test's tmp dir.

Needs root, ``ip`` and ``tc`` (with tbf); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest

ROOT = Path(__file__).resolve().parent.parent
RATES_MBIT: Final = (2, 5, 8, 10)
DELAYS_MS: Final = (30, 10, 20, 15)
LOSS: Final = 0.02
SECONDS: Final = 15.0
STREAM_BPS: Final = 5_000_000
SIZE: Final = 1200
LATENCY_MS: Final = 150.0
"""The relay's deadline (its default)."""
PLAIT_SHARE: Final = 0.95
"""The rate plait is given, as a share of the tbf rate: tbf also counts the 14-byte
Ethernet header of each frame, which plait's 28 bytes of IP + UDP overhead leave out."""
FRAME: Final = SIZE + 16 + 11 + 6 + 14 + 28 + 14
"""Bytes on the wire per stream datagram: payload, AEAD tag, plait header, echo and
DATA fields, IPv4 + UDP, Ethernet."""
PREFIX: Final = "plaitT-"
PSK: Final = bytes(range(100, 132))


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)  # noqa: S603  (ip/tc, fixed arguments)


def _why_not() -> str | None:
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


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by four shaped veth pairs; always deleted afterwards."""
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    _stale()
    a, b = f"{PREFIX}{os.getpid()}-a", f"{PREFIX}{os.getpid()}-b"
    made: list[str] = []
    try:
        for ns in (a, b):
            try:
                _run("ip", "netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
            made.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        for i, mbit in enumerate(RATES_MBIT):
            peer = ("peer", "name", f"pb{i}", "netns", b)
            _run("ip", "link", "add", f"pa{i}", "netns", a, "type", "veth", *peer)
            for ns, dev, host in ((a, f"pa{i}", 1), (b, f"pb{i}", 2)):
                _run("ip", "-n", ns, "addr", "add", f"10.77.{i}.{host}/30", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
                try:
                    _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *_tbf(mbit))
                except subprocess.CalledProcessError as exc:
                    pytest.skip(f"tc tbf refused: {exc.stderr.decode().strip()}")
        yield a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)  # noqa: S603, S607  (ip, fixed arguments)


class _Procs:
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

    def wait_for(self, name: str, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while text not in self.err(name):
            assert self.procs[name].poll() is None, f"{name} exited:\n{self.err(name)}"
            assert time.monotonic() < end, f"no {text!r} from {name} in {timeout} s"
            time.sleep(0.05)

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


def _tbf(mbit: int) -> tuple[str, ...]:
    """A token bucket at `mbit` holding about three frames: no burst to speak of."""
    return ("tbf", "rate", f"{mbit}mbit", "burst", "4kb", "latency", "50ms")


def _pct(values: Sequence[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def test_relay_over_four_shaped_lossy_links(namespaces: tuple[str, str], tmp_path: Path) -> None:
    ns_a, ns_b = namespaces
    key = tmp_path / "plait.key"
    key.write_text(PSK.hex(), encoding="ascii")
    common = ["--psk-file", str(key), "--stats-interval", "1"]
    links_a, links_b, impair = [], [], []
    for i, (mbit, delay) in enumerate(zip(RATES_MBIT, DELAYS_MS, strict=True)):
        rate = f"{round(mbit * PLAIT_SHARE * 1000)}k"
        links_a += ["--link", f"10.77.{i}.1:7000=10.77.{i}.2:7000@pa{i}:{rate}"]
        links_b += ["--link", f"127.0.0.1:{7100 + i}=127.0.0.1:{7200 + i}:{rate}"]
        ends = (f"10.77.{i}.2:7000", f"10.77.{i}.1:7000", f"127.0.0.1:{7200 + i}")
        impair += ["--link", "/".join((*ends, f"127.0.0.1:{7100 + i}", str(delay)))]
    relay = ["-m", "plait", "relay", *common]
    procs = _Procs(tmp_path)
    t0 = time.monotonic()
    try:
        helper = ["-m", "tests.impair"]
        rt = ["--rt", "20"]  # the "network" and the clock at the sink run ahead of the relays
        procs.start("sink", ns_b, [*helper, "sink", "--bind", "127.0.0.1:9000", *rt])
        procs.start("impair", ns_b, [*helper, "forward", *impair, "--loss", str(LOSS), *rt])
        procs.start("relay_b", ns_b, [*relay, *links_b, "--forward", "127.0.0.1:9000", "--once"])
        procs.start("relay_a", ns_a, [*relay, *links_a, "--listen", ":5000", "--initiator"])
        procs.wait_for("relay_a", "established", 20.0)
        procs.wait_for("relay_b", "established", 5.0)
        time.sleep(0.5)  # the first RTT samples
        stream = ["--to", "127.0.0.1:5000", "--rate-bps", str(STREAM_BPS), "--size", str(SIZE)]
        procs.start("source", ns_a, [*helper, "source", *stream, "--seconds", str(SECONDS)])
        assert procs.procs["source"].wait(SECONDS + 10.0) == 0, procs.err("source")
        time.sleep(0.5)  # the last datagrams' deadlines
        assert procs.stop("relay_a") == 0, procs.err("relay_a")  # Ctrl-C: CLOSE to B
        assert procs.procs["relay_b"].wait(10.0) == 0, procs.err("relay_b")  # --once: it ends too
        for name in ("sink", "impair"):
            assert procs.stop(name, signal.SIGTERM) == 0, procs.err(name)
    finally:
        procs.kill_all()
    elapsed = time.monotonic() - t0
    load = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in procs.procs}
    report = _report(load, elapsed)
    print("\n" + _render(report))
    (tmp_path / "netns.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"  written    {tmp_path / 'netns.json'}")

    sent, sink = load["source"]["sent"], load["sink"]
    assert sink["corrupt"] == sink["duplicates"] == sink["reordered"] == 0  # in order, once
    assert report["delivered_pct"] >= 99.9
    assert "Traceback" not in procs.err("relay_a") + procs.err("relay_b")
    assert sent > 0.95 * SECONDS * STREAM_BPS / (SIZE * 8)
    # Nothing arrives sooner than the shortest delay: the impairment relay did its job,
    # and the latency is measured on one clock.
    lat, floors = report["latency_ms"], report["floor_ms"]
    assert lat["min"] >= min(DELAYS_MS)
    # The floors: the best link's (12.1 ms) is what one perfect path would give; the
    # worst link's (35.2 ms) is what in-order delivery waits for when a message rides
    # the slowest link and FEC does not rebuild it sooner. The median stays within
    # twice the best floor; p99 within the worst floor + 15 ms (a parity packet or a
    # re-send); nothing comes later than its deadline, + 10 ms for the two local hops.
    assert lat["p50"] <= 2 * min(floors)
    assert lat["p99"] <= max(floors) + 15.0
    assert lat["max"] <= LATENCY_MS + 10.0
    impair_late = report["impair"]["release_late_us"]
    # the impairment relay's own release lateness: a sanity bound on the harness that holds
    # on a loaded 2-core machine (3 ms p99 was seen there; 1 ms failed the suite once)
    assert impair_late["p99"] < 10_000


def _report(load: dict[str, Any], elapsed: float) -> dict[str, Any]:
    lat = load["sink"]["latency_us"]
    a, b = load["relay_a"], load["relay_b"]
    fec_b = b["session"]["endpoint"]["fec"]
    drops = {
        k: v["dropped"] for k, v in load["impair"].items() if isinstance(v, dict) and "dropped" in v
    }
    return {
        "setup": {
            "rates_mbit": RATES_MBIT,
            "delays_ms": DELAYS_MS,
            "loss_per_link_and_direction": LOSS,
            "plait_rates_bps": [ln_rate(m) for m in RATES_MBIT],
            "stream_bps": STREAM_BPS,
            "datagram_bytes": SIZE,
            "seconds": SECONDS,
        },
        "sent": load["source"]["sent"],
        "received": load["sink"]["received"],
        "delivered_pct": 100.0 * load["sink"]["received"] / load["source"]["sent"],
        "reordered": load["sink"]["reordered"],
        "latency_ms": {
            "min": min(lat) / 1000,
            "p50": _pct(lat, 0.5) / 1000,
            "p99": _pct(lat, 0.99) / 1000,
            "p999": _pct(lat, 0.999) / 1000,
            "max": max(lat) / 1000,
        },
        "floor_ms": [
            round(d + FRAME * 8 / (m * 1e6) * 1000, 2)
            for d, m in zip(DELAYS_MS, RATES_MBIT, strict=True)
        ],
        "fec_rebuilt": fec_b["recovered"] if fec_b else 0,
        "originals_after_rebuild": b["session"]["endpoint"]["duplicates_dropped"],
        "lost_inbound": sum(ln["inbound_lost"] for ln in b["session"]["endpoint"]["links"]),
        "resent": a["session"]["endpoint"]["repairs"],
        "expired": b["session"]["endpoint"]["messages_expired_receiving"]
        + a["session"]["endpoint"]["messages_expired_sending"],
        "impair": {"dropped": drops, "release_late_us": load["impair"]["release_late_us"]},
        "cpu_pct": {
            "relay_a": 100.0 * a["cpu_s"] / a["elapsed_s"],
            "relay_b": 100.0 * b["cpu_s"] / b["elapsed_s"],
            "impair": 100.0 * load["impair"]["cpu_s"] / elapsed,
        },
        "relay_timer_late_us": {
            name: [r["session"][f"timer_late_{q}_ns"] // 1000 for q in ("p50", "p99", "max")]
            for name, r in (("relay_a", a), ("relay_b", b))
        },
        "link_share": [ln["datagrams_sent"] for ln in a["session"]["endpoint"]["links"]],
        "test_seconds": elapsed,
    }


def ln_rate(mbit: int) -> int:
    return round(mbit * PLAIT_SHARE * 1000) * 1000


def _render(r: dict[str, Any]) -> str:
    lat, cpu = r["latency_ms"], r["cpu_pct"]
    return "\n".join(
        [
            "netns: plait relay, 4 links 2/5/8/10 Mbit/s (tbf), delays "
            f"{'/'.join(map(str, DELAYS_MS))} ms, {LOSS:.0%} loss each way",
            f"  stream     {r['sent']} sent, {r['received']} received "
            f"({r['delivered_pct']:.3f} %), {r['reordered']} out of order",
            f"  latency    min {lat['min']:.1f}  p50 {lat['p50']:.1f}  p99 {lat['p99']:.1f}  "
            f"p99.9 {lat['p999']:.1f}  max {lat['max']:.1f} ms",
            f"  floor      {' / '.join(f'{f:.1f}' for f in r['floor_ms'])} ms "
            "(per link: delay + one frame at its rate)",
            f"  repair     {r['fec_rebuilt']} rebuilt by FEC ({r['originals_after_rebuild']} "
            f"originals came later), {r['resent']} re-sent, {r['expired']} expired; "
            f"{r['lost_inbound']} datagrams lost at B",
            f"  impair     dropped {sum(r['impair']['dropped'].values())}, release late "
            f"p50/p99/max {'/'.join(str(v) for v in r['impair']['release_late_us'].values())} us",
            f"  cpu        relay A {cpu['relay_a']:.0f} %, relay B {cpu['relay_b']:.0f} %, "
            f"impair {cpu['impair']:.0f} %",
            f"  timers     relay A late p50/p99/max {r['relay_timer_late_us']['relay_a']} us, "
            f"relay B {r['relay_timer_late_us']['relay_b']} us",
            f"  links      datagrams sent by A per link {r['link_share']}",
            f"  took       {r['test_seconds']:.1f} s",
        ]
    )
