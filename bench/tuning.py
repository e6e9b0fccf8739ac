"""OS tuning for the raw adapter, measured: what each knob buys on this machine.

    python3 dev.py bench tuning            # as root, ~2.5 min; bench/results/tuning.json
    python3 dev.py bench tuning --hog      # the same with a CPU hog per CPU; tuning_hog.json
    .venv/bin/python bench/tuning.py --quick       # a smoke run, nothing written

The case is bench/adapters.py's "raw, callback" ping-pong, with its helpers: this process
receives 200-byte pings on 3 links from a peer process (pinned to CPU 1, SCHED_FIFO 10)
and replies from the callback. recv is the peer's send call -> the callback; send is
`send()` -> the reply has left the socket; CPU is the adapter's loop thread's CPU time over
wall time while the pings flow. The adapter's own user-space busy-poll (50 us after
activity) is on in every variant.

Each variant sets one knob (or, in the last row, several) on top of an untuned baseline:
the loop thread free to run on any CPU at SCHED_OTHER, SO_BUSY_POLL 0, the kernel's
defaults everywhere. Each round runs every variant once, in a rotated order, so that load
drift hits all of them; the samples of all rounds are pooled, and every ratio is against
the baseline of the same run (also per round, for the p50, to show the spread). The
traffic goes over loopback and, with root, over a veth pair into a network namespace of
the bench's own.

Variants that change system settings need root; without it they are skipped, and the
output says so. Each setting is changed just before its run and put back just after,
also on Ctrl-C or SIGTERM; cpusets and a namespace left by a killed run are removed at
the next start. Around each run the counters in /proc/interrupts, /proc/softirqs and
/proc/stat are read, to show on which CPU the work lands.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _harness import write_json
from adapters import (
    APP_CPU,
    CLOCK,
    PEER_CPU,
    WARMUP,
    Times,
    instrument,
    links_pair,
    pcts,
    peer_result,
    plait_config,
    spawn_peer,
)

import plait
from plait_adapters import LinkSpec, raw

FIFO_PRIORITY: Final = 50
"""The loop thread's SCHED_FIFO priority (the peer runs at 10, on its own CPU)."""
BUSY_US: Final = 50
"""SO_BUSY_POLL and net.core.busy_read / busy_poll, in us, where a variant sets them."""
NS: Final = "plait-tuning"
VETH_APP, VETH_PEER = "pltune-a", "pltune-b"
APP_IP, PEER_IP = "10.231.77.1", "10.231.77.2"
VETH_PORT: Final = 47310
CPUSET: Final = Path("/sys/fs/cgroup/cpuset")
ISO, REST = CPUSET / "plait-tuning-iso", CPUSET / "plait-tuning-rest"
CPUS: Final = Path("/sys/devices/system/cpu")
NO_GOVERNOR: Final = (
    "no cpufreq driver (/sys/devices/system/cpu/cpu0/cpufreq is absent): in this VM the "
    "host sets the clock, the guest cannot pick a governor"
)
NOTES: dict[str, Any] = {}
"""What the helpers found (IRQs moved, tasks moved, NAPI ids), for the JSON."""


@dataclass(frozen=True)
class Variant:
    """One measured configuration: the untuned baseline plus the knobs set here."""

    name: str
    net: str = "loopback"  # or "veth"
    cpu: int | None = None  # the adapter's cpu=: the loop thread pinned (sched_setaffinity)
    fifo: bool = False  # the loop thread at SCHED_FIFO FIFO_PRIORITY
    so_busy_poll_us: int = 0  # the adapter's so_busy_poll_us= (SO_BUSY_POLL, every socket)
    busy_sysctls: bool = False  # net.core.busy_read = busy_poll = BUSY_US
    rps: bool = False  # receive softirqs steered to the peer's CPU (rps_cpus)
    irqs_away: bool = False  # every device IRQ that may move to the peer's CPU
    no_idle_halt: bool = False  # the app CPU's cpuidle states but POLL disabled
    governor: bool = False  # cpufreq governor "performance" on every CPU
    cpuset: bool = False  # isolcpus' stand-in: `cpuset_partition`
    napi: bool = False  # veth: GRO on the app's end and TSO off the peer's (veth NAPI)

    @property
    def root_only(self) -> bool:
        system = (self.busy_sysctls, self.rps, self.irqs_away, self.no_idle_halt, self.governor)
        return self.net == "veth" or any((self.fifo, self.so_busy_poll_us, self.cpuset, *system))


VARIANTS: Final = [  # the first of each `net` is that group's baseline
    Variant("baseline (untuned)"),
    Variant("pinned: cpu=0", cpu=APP_CPU),
    Variant("SCHED_FIFO 50", fifo=True),
    Variant("pinned + SCHED_FIFO 50", cpu=APP_CPU, fifo=True),
    Variant("cpuset partition (isolcpus stand-in)", cpuset=True),
    Variant("SO_BUSY_POLL 50 us", so_busy_poll_us=BUSY_US),
    Variant("SO_BUSY_POLL + busy_read/busy_poll 50", so_busy_poll_us=BUSY_US, busy_sysctls=True),
    Variant("RPS: rx softirqs -> CPU 1", rps=True),
    Variant("device IRQs -> CPU 1", irqs_away=True),
    Variant("CPU 0 never halts (cpuidle)", no_idle_halt=True),
    Variant("governor performance", governor=True),
    Variant(
        "cpuset + FIFO + IRQs -> 1 + no halt",
        cpuset=True,
        fifo=True,
        irqs_away=True,
        no_idle_halt=True,
    ),
    Variant("veth baseline", net="veth"),
    Variant("veth SO_BUSY_POLL + sysctls", net="veth", so_busy_poll_us=BUSY_US, busy_sysctls=True),
    Variant("veth RPS: rx softirqs -> CPU 1", net="veth", rps=True),
    Variant("veth NAPI (GRO on, TSO off)", net="veth", napi=True),
    Variant(
        "veth NAPI + SO_BUSY_POLL + sysctls",
        net="veth",
        napi=True,
        so_busy_poll_us=BUSY_US,
        busy_sysctls=True,
    ),
]
Queues = list[tuple[str | None, str]]
RPS_QUEUES: Final[dict[str, Queues]] = {  # (netns, device) of each receive queue on the path
    "loopback": [(None, "lo")],
    "veth": [(None, VETH_APP), (NS, VETH_PEER)],
}


# --- system settings, each put back on the way out ---------------------------------------------


def _ip(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(  # noqa: S603  (ip, arguments made here)
        ["ip", *args],  # noqa: S607  (iproute2 from PATH, as tests/test_netns.py)
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        start_new_session=True,  # a Ctrl-C at the terminal is for us, not for a restore
    )
    if done.returncode:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _read(path: Path, netns: str | None) -> str:
    if netns is None:
        return path.read_text().strip()
    return _ip("netns", "exec", netns, "cat", str(path)).strip()  # /sys as that namespace sees it


def _write(path: Path, value: str, netns: str | None) -> None:
    if netns is None:
        path.write_text(value)
    else:
        _ip("netns", "exec", netns, "tee", str(path), stdin=value)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM (they arrive after the block): for putting back."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def written(path: Path, value: str, netns: str | None = None) -> Iterator[None]:
    """Write `value` to a /proc or /sys file (of `netns`); the old value goes back on the
    way out, however the block ends (and nothing is written back if the write failed)."""
    old = _read(path, netns)
    try:
        _write(path, value, netns)
        yield
    finally:
        with uninterrupted():
            if _read(path, netns) != old:
                _write(path, old, netns)


def cpu_mask(cpu: int) -> str:
    return f"{1 << cpu:x}"


@contextlib.contextmanager
def device_irqs_to(cpu: int) -> Iterator[None]:
    """Every device IRQ whose affinity may change, to `cpu` (managed ones refuse)."""
    moved, refused = [], []
    with contextlib.ExitStack() as stack:
        for irq in sorted(int(d.name) for d in Path("/proc/irq").iterdir() if d.name.isdigit()):
            try:
                stack.enter_context(written(Path(f"/proc/irq/{irq}/smp_affinity"), cpu_mask(cpu)))
                moved.append(irq)
            except OSError:
                refused.append(irq)
        NOTES["IRQs moved"], NOTES["IRQs that refused"] = moved, refused
        yield


def idle_states(cpu: int = APP_CPU) -> list[Path]:
    """The cpuidle states of `cpu` other than POLL (here: haltpoll, a HLT to the host)."""
    states = sorted((CPUS / f"cpu{cpu}" / "cpuidle").glob("state*"))
    return [d for d in states if (d / "name").read_text().strip() != "POLL"]


def governors() -> list[Path]:
    return sorted(CPUS.glob("cpu[0-9]*/cpufreq/scaling_governor"))


# isolcpus' runtime stand-in: cgroup-v1 cpusets


def _tasks(cpuset: Path) -> list[int]:
    return [int(t) for t in (cpuset / "tasks").read_text().split()]


def _mkcpuset(path: Path, cpus: list[int], *, exclusive: bool) -> None:
    path.mkdir()
    (path / "cpuset.cpus").write_text(",".join(map(str, cpus)))
    (path / "cpuset.mems").write_text((CPUSET / "cpuset.mems").read_text().strip())
    if exclusive:
        (path / "cpuset.cpu_exclusive").write_text("1")


def dissolve_cpusets() -> None:
    """Put every task of the bench's cpusets back in the root cpuset; remove them."""
    for _ in range(200):
        left = [d for d in (ISO, REST) if d.exists()]
        if not left:
            return
        for d in left:
            for tid in _tasks(d):
                with contextlib.suppress(OSError):  # exited meanwhile
                    (CPUSET / "tasks").write_text(str(tid))
            with contextlib.suppress(OSError):  # EBUSY: a task forked meanwhile; again
                d.rmdir()
        time.sleep(0.01)
    raise RuntimeError(f"could not remove {ISO} and {REST}; move their tasks and rmdir them")


@contextlib.contextmanager
def cpuset_partition(cpu: int) -> Iterator[Callable[[int], None]]:
    """An exclusive cpuset holding only `cpu`, every task that may move put in a cpuset
    of the other CPUs, and load balancing off at the root, so the scheduler places nothing
    else on `cpu`. Per-CPU kernel threads, timers and IRQs stay (isolcpus=, nohz_full= and
    irqaffinity= would also move those, at boot). Yields: put a thread (tid) in the set.
    Tasks go back to the root cpuset, with the affinity they had, on the way out."""
    balance = CPUSET / "cpuset.sched_load_balance"
    old_balance = balance.read_text().strip()
    affinity: dict[int, set[int]] = {}
    others = sorted(set(range(os.cpu_count() or 1)) - {cpu})
    stayed = 0
    try:
        _mkcpuset(ISO, [cpu], exclusive=True)
        _mkcpuset(REST, others, exclusive=False)
        for tid in _tasks(CPUSET):
            try:
                affinity[tid] = os.sched_getaffinity(tid)
                (REST / "tasks").write_text(str(tid))
            except OSError:  # per-CPU kernel threads may not move (and exited ones)
                stayed += 1
        balance.write_text("0")
        NOTES["cpuset partition"] = f"{len(affinity) - stayed} tasks moved, {stayed} stayed"

        def isolate(tid: int) -> None:
            (ISO / "tasks").write_text(str(tid))

        yield isolate
    finally:
        with uninterrupted():
            balance.write_text(old_balance)
            dissolve_cpusets()
            for tid, cpus in affinity.items():
                with contextlib.suppress(OSError):  # exited meanwhile
                    if os.sched_getaffinity(tid) != cpus:
                        os.sched_setaffinity(tid, cpus)


# the veth pair, and namespaces


_CLONE_NEWNET: Final = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """The calling thread in network namespace `name` (None: stay): the sockets it opens
    and the processes it starts meanwhile live there."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(home)
        os.close(target)
        os.close(home)


def _drop_veth() -> None:
    for args in (("netns", "del", NS), ("link", "del", VETH_APP)):
        with contextlib.suppress(OSError):  # not there
            _ip(*args)


@contextlib.contextmanager
def veth_pair() -> Iterator[str | None]:
    """A veth pair from this namespace into a new one, NS, deleted on the way out;
    yields None, or why there is none."""
    if os.geteuid() != 0:
        yield "needs root"
        return
    _drop_veth()  # left by a killed run
    try:
        try:
            _ip("netns", "add", NS)
            _ip("link", "add", VETH_APP, "type", "veth", "peer", "name", VETH_PEER, "netns", NS)
            _ip("addr", "add", f"{APP_IP}/30", "dev", VETH_APP)
            _ip("link", "set", VETH_APP, "up")
            _ip("-n", NS, "addr", "add", f"{PEER_IP}/30", "dev", VETH_PEER)
            _ip("-n", NS, "link", "set", VETH_PEER, "up")
        except OSError as exc:
            yield str(exc)
        else:
            yield None
    finally:
        with uninterrupted():
            _drop_veth()


def veth_links() -> tuple[list[LinkSpec], list[LinkSpec]]:
    ports = range(VETH_PORT, VETH_PORT + 3)
    app = [LinkSpec((APP_IP, p), (PEER_IP, p)) for p in ports]
    return app, [LinkSpec((PEER_IP, p), (APP_IP, p)) for p in ports]


_SIOCETHTOOL: Final = 0x8946
_ETHTOOL_GTSO: Final = 0x1E  # each ETHTOOL_S* is its G* + 1
_ETHTOOL_GGRO: Final = 0x2B


def _ethtool(dev: str, cmd: int, value: int = 0) -> int:
    """One on/off feature through the ioctl `ethtool -K` makes (no ethtool here)."""
    buf = ctypes.create_string_buffer(struct.pack("II", cmd, value))
    ifreq = struct.pack("16sP", dev.encode(), ctypes.addressof(buf)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    got: int = struct.unpack_from("II", buf.raw)[1]
    return got


@contextlib.contextmanager
def feature(dev: str, get: int, value: int, netns: str | None = None) -> Iterator[None]:
    with in_netns(netns):
        old = _ethtool(dev, get)
    try:
        with in_netns(netns):
            _ethtool(dev, get + 1, value)
        yield
    finally:
        with uninterrupted(), in_netns(netns):
            if _ethtool(dev, get) != old:
                _ethtool(dev, get + 1, old)


@contextlib.contextmanager
def veth_napi() -> Iterator[None]:
    """NAPI on the app's veth end: GRO on there, and TSO off the peer's end, since veth
    hands a UDP datagram to NAPI only then. Its datagrams then carry a NAPI id, which is
    what SO_BUSY_POLL and the busy_poll sysctl need to poll anything."""
    with feature(VETH_APP, _ETHTOOL_GGRO, 1), feature(VETH_PEER, _ETHTOOL_GTSO, 0, NS):
        yield


def apply(v: Variant, stack: contextlib.ExitStack) -> Callable[[int], None] | None:
    """Change the system settings `v` asks for (`stack` puts them back); returns how to
    put the loop thread into the isolated cpuset, if `v` has one."""
    if v.busy_sysctls:
        for key in ("busy_read", "busy_poll"):
            stack.enter_context(written(Path("/proc/sys/net/core") / key, str(BUSY_US)))
    if v.rps:
        for netns, dev in RPS_QUEUES[v.net]:
            path = Path(f"/sys/class/net/{dev}/queues/rx-0/rps_cpus")
            stack.enter_context(written(path, cpu_mask(PEER_CPU), netns))
    if v.irqs_away:
        stack.enter_context(device_irqs_to(PEER_CPU))
    if v.no_idle_halt:
        for state in idle_states():
            stack.enter_context(written(state / "disable", "1"))
    if v.governor:
        for path in governors():
            stack.enter_context(written(path, "performance"))
    if v.napi:
        stack.enter_context(veth_napi())
    if v.cpuset:
        return stack.enter_context(cpuset_partition(APP_CPU))
    return None


def why_not(v: Variant, veth: str | None) -> str | None:
    """Why `v` cannot run here, or None."""
    checks = [
        (v.root_only and os.geteuid() != 0, "needs root"),
        (v.net == "veth" and veth is not None, f"no veth pair: {veth}"),
        ((v.cpuset or v.rps or v.irqs_away) and PEER_CPU == APP_CPU, "needs 2 CPUs"),
        (v.cpuset and not (CPUSET / "cpuset.cpus").exists(), f"no cgroup-v1 cpuset at {CPUSET}"),
        (v.no_idle_halt and not idle_states(), "no cpuidle states but POLL"),
        (v.governor and not governors(), NO_GOVERNOR),
    ]
    return next((why for bad, why in checks if bad), None)


# --- where the work lands ---------------------------------------------------------------------


def counters() -> dict[str, list[int]]:
    """Per-CPU counts: device IRQs (the numbered lines of /proc/interrupts), the IPIs that
    matter here (RES: wake a CPU to reschedule; CAL: run a function there, RPS's kicks
    among them), the NET_RX/NET_TX softirqs, and /proc/stat's busy, softirq and steal
    ticks."""
    n = os.cpu_count() or 1
    out: dict[str, list[int]] = {"device IRQs": [0] * n}
    for line in Path("/proc/interrupts").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields = rest.split()[:n]
        if len(fields) < n or not all(f.isdigit() for f in fields):
            continue
        counts = [int(f) for f in fields]
        if name.strip().isdigit():
            out["device IRQs"] = [a + b for a, b in zip(out["device IRQs"], counts, strict=True)]
        elif name.strip() in ("RES", "CAL"):
            out[name.strip() + " IPIs"] = counts
    for line in Path("/proc/softirqs").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name.strip() in ("NET_RX", "NET_TX"):
            out[name.strip()] = [int(f) for f in rest.split()[:n]]
    ticks = {"busy ticks": [0] * n, "softirq ticks": [0] * n, "steal ticks": [0] * n}
    for line in Path("/proc/stat").read_text().splitlines():
        label, *vals = line.split()
        if label.startswith("cpu") and label[3:].isdigit():
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, vals[:8])
            cpu = int(label[3:])
            ticks["busy ticks"][cpu] = user + nice + system + irq + softirq
            ticks["softirq ticks"][cpu] = softirq
            ticks["steal ticks"][cpu] = steal
    return out | ticks


# --- running it -------------------------------------------------------------------------------


Mark = tuple[int, int, dict[str, list[int]]]  # (wall, loop thread CPU, counters()), in ns
_SO_INCOMING_NAPI_ID: Final = getattr(socket, "SO_INCOMING_NAPI_ID", 56)


@dataclass
class Tally:
    """A variant's results, pooled over the rounds."""

    recv: list[int] = field(default_factory=list)
    send: list[int] = field(default_factory=list)
    round_p50_us: list[float] = field(default_factory=list)
    cpu_ns: int = 0  # the loop thread's, between the first counted ping and the last
    wall_ns: int = 0  # between those pings
    pings: int = 0  # between those pings
    work: dict[str, list[int]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def loop_tid(s: raw.RawSession) -> int:
    thread = s._loop_thread
    if thread is None or thread.native_id is None:
        raise RuntimeError("the session's loop thread is not running")
    return thread.native_id


def ping_pong(v: Variant, n: int, isolate: Callable[[int], None] | None, tally: Tally) -> None:
    """One run of `n` pings with the application tuned as `v` says; into `tally`."""
    app_links, peer_links = links_pair(3) if v.net == "loopback" else veth_links()
    times, first = Times(n), min(WARMUP, n // 10)
    marks: list[Mark] = []  # at the first counted ping and the last
    held: list[raw.RawSession] = []

    def on_message(m: plait.MessageReceived) -> None:
        i, reply = times.on_ping(m.data, CLOCK())
        if i in (first, n - 1):  # between pings: the peer waits for this reply
            marks.append((CLOCK(), time.thread_time_ns(), counters()))
        times.call[i] = CLOCK()
        held[0].send(reply)

    with raw.open_session(
        plait_config(),
        app_links,
        initiator=False,
        on_message=on_message,
        cpu=v.cpu,
        so_busy_poll_us=v.so_busy_poll_us,
    ) as s:
        held.append(s)
        instrument(s._sends, b"R", times.done, before=False)
        tid = loop_tid(s)
        if v.fifo:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))
        if isolate is not None:
            isolate(tid)
        with in_netns(NS if v.net == "veth" else None):
            proc = spawn_peer("plait", peer_links, n, PEER_CPU)
        try:
            sent = peer_result(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        sock = s._links.socks[0]
        napi_id = sock.getsockopt(socket.SOL_SOCKET, _SO_INCOMING_NAPI_ID) if sock else -1
        tally.notes |= dict(s._session.notes) | {"app socket NAPI id": str(napi_id)}
    keep = range(first, n)
    recv = [times.recv[i] - sent[i] for i in keep if times.recv[i] and sent[i]]
    tally.recv += recv
    tally.send += [times.done[i] - times.call[i] for i in keep if times.done[i] and times.call[i]]
    tally.round_p50_us.append(pcts(recv)["p50_us"])
    if len(marks) != 2:
        raise RuntimeError(f"{v.name}: lost the first or the last ping")
    (t0, cpu0, before), (t1, cpu1, after) = marks
    tally.cpu_ns += cpu1 - cpu0
    tally.wall_ns += t1 - t0
    tally.pings += n - 1 - first
    for key, counts in after.items():
        old = tally.work.get(key, [0] * len(counts))
        tally.work[key] = [o + a - b for o, a, b in zip(old, counts, before[key], strict=True)]


def measure(active: list[Variant], rounds: int, n: int) -> dict[str, Tally]:
    """Every variant once per round, the order rotated each round; system settings are
    changed for a run only and put back after it."""
    tallies = {v.name: Tally() for v in active}
    for r in range(rounds):
        k = r % len(active)
        for v in active[k:] + active[:k]:
            with contextlib.ExitStack() as stack:
                isolate = apply(v, stack)
                ping_pong(v, n, isolate, tallies[v.name])
        print(f"  round {r + 1}/{rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    return tallies


def summary(t: Tally, base: Tally | None) -> dict[str, Any]:
    recv, send = pcts(t.recv), pcts(t.send)
    cpu = 100 * t.cpu_ns / t.wall_ns if t.wall_ns else float("nan")
    out: dict[str, Any] = {"samples": len(t.recv), "recv": recv, "send": send}
    out["loop_thread_cpu_percent"] = cpu
    if base is not None:
        b = pcts(base.recv)
        base_cpu = 100 * base.cpu_ns / base.wall_ns if base.wall_ns else float("nan")
        out["ratio"] = {k: recv[k] / b[k] for k in recv} | {"cpu": cpu / base_cpu}
        per_round = [a / b for a, b in zip(t.round_p50_us, base.round_p50_us, strict=True)]
        out["ratio"]["p50_per_round"] = [min(per_round), max(per_round)]
    seconds = t.wall_ns / 1e9 * os.sysconf("SC_CLK_TCK")
    out["per_1000_pings"] = {
        k: [round(1000 * c / t.pings, 1) for c in v]
        for k, v in t.work.items()
        if not k.endswith("ticks")
    }
    out["cpu_percent"] = {
        k.removesuffix(" ticks"): [round(100 * c / seconds, 1) for c in v]
        for k, v in t.work.items()
        if k.endswith("ticks")
    }
    out["notes"] = t.notes
    return out


def report(tallies: dict[str, Tally], skipped: dict[str, str]) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for net in ("loopback", "veth"):
        rows = [v for v in VARIANTS if v.net == net]
        base = tallies.get(rows[0].name)
        out: dict[str, Any] = {}
        groups[net] = out
        print(
            f"\n{net:38} {'recv p50':>8} {'p99':>7} {'p99.9':>7}   x p50   x p99 x p99.9"
            f"  {'send p50':>8}  CPU %   x CPU"
        )
        for v in rows:
            if v.name in skipped:
                out[v.name] = {"skipped": skipped[v.name]}
                print(f"{v.name:38} skipped: {skipped[v.name]}")
                continue
            out[v.name] = r = summary(tallies[v.name], base)
            rv, ra = r["recv"], r.get("ratio", {})
            ratios = "".join(f"{ra.get(k, float('nan')):8.2f}" for k in ("p50_us", "p99_us"))
            ratios += f"{ra.get('p999_us', float('nan')):8.2f}"
            print(
                f"{v.name:38} {rv['p50_us']:8.1f} {rv['p99_us']:7.1f} {rv['p999_us']:7.1f}"
                f"{ratios}  {r['send']['p50_us']:8.1f} {r['loop_thread_cpu_percent']:6.0f}"
                f" {ra.get('cpu', float('nan')):7.2f}"
            )
        print(
            f"\n{'where the work lands (CPU 0 / CPU 1)':38} {'dev IRQ':>9} {'RES':>9} {'CAL':>9}"
            f" {'NET_RX':>11}  {'busy %':>9} {'softirq %':>9} {'steal %':>8}"
        )
        print(f"{'':38} {'(per 1000 pings)':>40}")
        for name, r in out.items():
            if "skipped" in r:
                continue
            per1k, pct = r["per_1000_pings"], r["cpu_percent"]
            cells = [(per1k[key], 4) for key in ("device IRQs", "RES IPIs", "CAL IPIs")]
            cells += [
                (per1k["NET_RX"], 5),
                (pct["busy"], 4),
                (pct["softirq"], 4),
                (pct["steal"], 3),
            ]
            print(f"{name:38}" + "".join(_pair(*cell) for cell in cells))
    return groups


def _pair(per_cpu: list[float], width: int) -> str:
    """The app's CPU / the peer's, for a column of the work table."""
    return f" {per_cpu[APP_CPU]:{width}.0f}/{per_cpu[PEER_CPU]:<{width}.0f}"


def conditions() -> dict[str, Any]:
    isolated = CPUS / "isolated"
    return {
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "isolated cpus at boot": isolated.read_text().strip() if isolated.exists() else "?",
        "cpufreq governor": [p.read_text().strip() for p in governors()] or NO_GOVERNOR,
        "cpuidle states (app CPU)": [(d / "name").read_text().strip() for d in idle_states()],
        "net.core.busy_read": Path("/proc/sys/net/core/busy_read").read_text().strip(),
        "net.core.busy_poll": Path("/proc/sys/net/core/busy_poll").read_text().strip(),
    }


@contextlib.contextmanager
def hogs(count: int) -> Iterator[None]:
    """`count` CPU-bound processes at SCHED_OTHER, free to run anywhere: other work."""
    busy = [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(busy) for _ in range(count)]  # noqa: S603  (this Python)
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _exit_on(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with` blocks, which put settings back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; nothing written")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pings", type=int, default=4000, help="per run")
    parser.add_argument(
        "--hog",
        action="store_true",
        help="with one CPU-bound process per CPU running throughout (SCHED_OTHER, free to"
        " run anywhere): the load that isolation is for; writes tuning_hog.json",
    )
    args = parser.parse_args()
    rounds, n = (1, 600) if args.quick else (args.rounds, args.pings)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # untuned: not even inherited pinning
    if os.geteuid() != 0:
        print(
            "not root: the variants that change system settings (sysctls, /proc/irq, cpusets,"
            " cpuidle, RPS, SCHED_FIFO, SO_BUSY_POLL > 0, the veth namespace) are skipped;"
            " run as root for the whole table"
        )
    elif ISO.exists() or REST.exists():
        print("removing the cpusets of an earlier, killed run")
        dissolve_cpusets()
        (CPUSET / "cpuset.sched_load_balance").write_text("1")
    before = conditions()
    n_hogs = (os.cpu_count() or 1) if args.hog else 0
    with veth_pair() as veth, hogs(n_hogs):
        skipped = {v.name: why for v in VARIANTS if (why := why_not(v, veth)) is not None}
        active = [v for v in VARIANTS if v.name not in skipped]
        print(
            f"{len(active)} variants x {rounds} rounds x {n} pings, {n_hogs} CPU hogs;"
            f" load {before['loadavg']}"
        )
        tallies = measure(active, rounds, n)
    groups = report(tallies, skipped)
    after = conditions()
    if before != after | {"loadavg": before["loadavg"]}:
        print("warning: the system settings differ from before the run:", before, after)
    if not args.quick:
        path = write_json(
            "tuning_hog" if args.hog else "tuning",
            {
                "command": " ".join(["python3 dev.py bench tuning", *sys.argv[1:]]),
                "cpu_hogs": n_hogs,
                "rounds": rounds,
                "pings_per_run": n,
                "app_cpu": APP_CPU,
                "peer_cpu": PEER_CPU,
                "fifo_priority": FIFO_PRIORITY,
                "busy_poll_us": BUSY_US,
                "conditions": {"before": before, "after": after},
                "found": NOTES,
                "variants": {v.name: dataclasses.asdict(v) for v in VARIANTS},
                "results": groups,
            },
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
