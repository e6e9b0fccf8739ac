"""Test helpers for the network-namespace test: an impairment relay, a stream source and
a sink, each a small program run inside a namespace (``python -m tests.impair ...``).

* ``forward``: per link, a UDP forwarder between the link's outer address (the veth)
  and the local relay's link socket, both ways. Each datagram is dropped with
  probability ``--loss`` (a `random.Random` seeded per link and direction) or held for
  the link's fixed delay and then sent on. This stands in for netem, which this
  kernel lacks. Held datagrams wait in one heap, bounded (beyond it: dropped and
  counted). The loop sleeps in ``select`` with a microsecond timeout and its timer
  slack at 1 ns, and with ``--rt N`` runs at SCHED_FIFO priority N, ahead of the
  programs under test; how late each release was is recorded, so the stats show
  whether the forwarder's own scheduling mattered. With ``--switch LINK``, SIGUSR1
  takes that link down, both ways (whatever arrives on it is dropped and counted as
  ``cut``; the veth and its qdisc stay as they are), and SIGUSR2 brings it back; the
  stats record when each happened, and the first data-sized datagram (``--data-bytes``)
  that crossed the link each way after each return.
* ``source``: a paced stream of sequence-numbered, timestamped datagrams.
* ``sink``: receives the stream and records, per datagram, its one-way latency
  (CLOCK_MONOTONIC is one clock for every namespace of a host); ``--rt`` too.
* ``canary``: wakes every millisecond at normal priority and records how late each
  wake-up was: how long the machine held up an ordinary process meanwhile (the relays
  under test run at normal priority; what delays the canary delays them too).

Each program runs until it is done (source) or until SIGTERM/SIGINT, then writes its
stats as JSON to ``--stats FILE``.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

_HEAD: Final = struct.Struct("!QQ")
"""Stream datagrams start with (sequence number, send time in monotonic ns)."""
_MAX_HELD: Final = 20_000
_MAX_DATAGRAMS: Final = 200_000
_PR_SET_TIMERSLACK: Final = 29
_STALL_NS: Final = 2_000_000
_MAX_STALLS: Final = 1000


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _timer_slack() -> None:
    """Wake-ups on time: the kernel's default 50 us slack is added to every sleep."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


class _Stop:
    def __init__(self) -> None:
        self.stopped = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopped = True


def _pcts(values: Sequence[int]) -> dict[str, int]:
    if not values:
        return {"p50": 0, "p99": 0, "max": 0}
    s = sorted(values)
    return {"p50": s[len(s) // 2], "p99": s[min(len(s) - 1, len(s) * 99 // 100)], "max": s[-1]}


def _udp(bind: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
    sock.bind(bind)
    sock.setblocking(False)
    return sock


# --- the impairment relay -------------------------------------------------------------------


class _Direction:
    """One link, one way: where datagrams leave, the drop decision, the counters."""

    def __init__(
        self, out: socket.socket, to: tuple[str, int], rng: random.Random, loss: float
    ) -> None:
        self.out, self.to, self.rng, self.loss = out, to, rng, loss
        self.received = self.dropped = self.overflow = self.sent = self.errors = 0
        self.down = False
        """Switched off (`Switch`): everything that arrives is dropped."""
        self.cut = 0
        self.data_bytes = 0
        """Once set (after a return), the next datagram this large is recorded."""
        self.data_after_up: list[int] = []
        """For each return, when the first data-sized datagram arrived (ns)."""

    def stats(self) -> dict[str, int]:
        return {
            "received": self.received,
            "dropped": self.dropped,
            "overflow": self.overflow,
            "sent": self.sent,
            "errors": self.errors,
            "cut": self.cut,
        }


class Switch:
    """``--switch``: SIGUSR1 takes one link down both ways, SIGUSR2 brings it back (the
    handlers run between two datagrams: the loop's `select` is interrupted)."""

    def __init__(self, ways: Sequence[_Direction], data_bytes: int) -> None:
        self.ways, self.data_bytes = ways, data_bytes
        self.events: list[tuple[str, int]] = []
        signal.signal(signal.SIGUSR1, self._down)
        signal.signal(signal.SIGUSR2, self._up)

    def _down(self, signum: int, frame: object) -> None:
        for d in self.ways:
            d.down, d.data_bytes = True, 0
        self.events.append(("down", time.monotonic_ns()))

    def _up(self, signum: int, frame: object) -> None:
        for d in self.ways:
            d.down, d.data_bytes = False, self.data_bytes
        self.events.append(("up", time.monotonic_ns()))

    def stats(self) -> dict[str, Any]:
        inbound, outbound = self.ways
        return {
            "events_ns": self.events,
            "data_in_after_up_ns": inbound.data_after_up,
            "data_out_after_up_ns": outbound.data_after_up,
        }


Held = list[tuple[int, int, _Direction, bytes]]
"""Datagrams waiting for their time: (due ns, arrival order, direction, data), a heap."""


def _release(held: Held, late: array[int], stalls: list[tuple[int, int]]) -> None:
    """Send every held datagram that is due, recording how late each one went (and
    when, for those later than `_STALL_NS`)."""
    clock = time.monotonic_ns
    now = clock()
    while held and held[0][0] <= now:
        due, _, d, data = heapq.heappop(held)
        try:
            d.out.sendto(data, d.to)
            d.sent += 1
        except OSError:
            d.errors += 1
        behind = clock() - due
        if len(late) < _MAX_DATAGRAMS:
            late.append(behind)
        if behind > _STALL_NS and len(stalls) < _MAX_STALLS:
            stalls.append((due, behind))


def _take(sock: socket.socket, d: _Direction, delay: int, held: Held, order: int) -> int:
    """Read what `sock` holds: drop it, or hold it for `delay` ns. Returns `order`
    advanced by the datagrams held."""
    now = time.monotonic_ns()
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return order
        except OSError:
            d.errors += 1
            continue
        d.received += 1
        if d.down:
            d.cut += 1
            continue
        if d.data_bytes and len(data) >= d.data_bytes:
            d.data_after_up.append(now)
            d.data_bytes = 0
        if d.rng.random() < d.loss:
            d.dropped += 1
        elif len(held) >= _MAX_HELD:
            d.overflow += 1
        else:
            order += 1
            heapq.heappush(held, (now + delay, order, d, data))


def _realtime(priority: int) -> str:
    """Run ahead of the relays under test (SCHED_FIFO), so a busy CPU does not delay
    the "network"; returns what happened."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"refused: {exc.strerror}"
    return f"SCHED_FIFO {priority}"


def forward(
    links: Sequence[str],
    loss: float,
    seed: int,
    stats: Path,
    rt: int,
    switch: int | None = None,
    data_bytes: int = 1000,
) -> None:
    """Run the impairment relay. Each link is ``OUTER/PEER/INNER/TARGET/DELAY_MS``:
    datagrams arriving on OUTER go to TARGET from INNER, datagrams arriving on INNER go
    to PEER from OUTER, each after DELAY_MS unless dropped. Link `switch` (if any) goes
    down and up on SIGUSR1 and SIGUSR2 (`Switch`)."""
    _timer_slack()
    sched = _realtime(rt) if rt else "normal"
    stop = _Stop()
    route: dict[int, tuple[_Direction, int]] = {}  # fd -> (direction, delay ns)
    socks: list[socket.socket] = []
    names: list[str] = []
    for i, spec in enumerate(links):
        outer_s, peer_s, inner_s, target_s, delay_s = spec.split("/")
        delay = round(float(delay_s) * 1_000_000)
        outer, inner = _udp(_addr(outer_s)), _udp(_addr(inner_s))
        socks += [outer, inner]
        for name, src, dst, to in (
            (f"{i} in", outer, inner, _addr(target_s)),
            (f"{i} out", inner, outer, _addr(peer_s)),
        ):
            rng = random.Random(f"{seed}:{name}")
            route[src.fileno()] = (_Direction(dst, to, rng, loss), delay)
            names.append(name)
    directions = [d for d, _ in route.values()]
    ways = None if switch is None else Switch(directions[2 * switch : 2 * switch + 2], data_bytes)
    held: Held = []
    late = array("q")
    stalls: list[tuple[int, int]] = []
    order = 0
    while not stop.stopped:
        _release(held, late, stalls)
        timeout = max(0.0, (held[0][0] - time.monotonic_ns()) / 1e9) if held else 0.1
        for sock in select.select(socks, [], [], timeout)[0]:
            d, delay = route[sock.fileno()]
            order = _take(sock, d, delay, held, order)
    result: dict[str, Any] = {name: d.stats() for name, d in zip(names, directions, strict=True)}
    if ways is not None:
        result["switch"] = ways.stats()
    result["release_late_us"] = {k: v // 1000 for k, v in _pcts(late).items()}
    result["cpu_s"] = time.process_time()
    result["scheduling"] = sched
    result["stalls"] = [{"at_ns": at, "late_us": us // 1000} for at, us in stalls]
    stats.write_text(json.dumps(result, indent=2), encoding="utf-8")


# --- the stream ------------------------------------------------------------------------------


def source(
    to: tuple[str, int], rate_bps: int, size: int, seconds: float, stats: Path, first: int = 0
) -> None:
    """Send ``rate_bps`` of ``size``-byte datagrams for ``seconds``, on a fixed
    schedule (a late start is caught up at once, so the average rate holds), numbered
    from `first` (so several runs into one sink can be told apart)."""
    _timer_slack()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytearray(bytes(range(256)) * (size // 256 + 1))[:size]
    interval = size * 8 * 1_000_000_000 // rate_bps
    count = int(seconds * 1e9) // interval
    clock = time.monotonic_ns
    start = clock()
    errors = 0
    for seq in range(count):
        due = start + seq * interval
        wait = due - clock()
        if wait > 0:
            time.sleep(wait / 1e9)
        _HEAD.pack_into(payload, 0, first + seq, clock())
        try:
            sock.sendto(payload, to)
        except OSError:
            errors += 1
    elapsed = (clock() - start) / 1e9
    stats.write_text(
        json.dumps(
            {
                "sent": count,
                "first": first,
                "errors": errors,
                "seconds": elapsed,
                "size": size,
                "start_ns": start,
                "interval_ns": interval,
            }
        ),
        encoding="utf-8",
    )


def sink(bind: tuple[str, int], stats: Path, rt: int) -> None:
    """Receive the stream until SIGTERM; record each datagram's sequence number and
    one-way latency, and count duplicates, reordering and corrupted payloads."""
    _timer_slack()
    sched = _realtime(rt) if rt else "normal"
    stop = _Stop()
    sock = _udp(bind)
    seqs, lat_us = array("q"), array("q")
    seen = bytearray(_MAX_DATAGRAMS)
    duplicates = reordered = corrupt = 0
    highest = -1
    pattern: bytes | None = None
    clock = time.monotonic_ns
    while not stop.stopped:
        if not select.select([sock], [], [], 0.1)[0]:
            continue
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            now = clock()
            if len(data) < _HEAD.size:
                corrupt += 1
                continue
            seq, sent = _HEAD.unpack_from(data, 0)
            if pattern is None:
                pattern = bytes(bytes(range(256)) * (len(data) // 256 + 1))[: len(data)]
            if seq >= _MAX_DATAGRAMS or data[_HEAD.size :] != pattern[_HEAD.size :]:
                corrupt += 1
                continue
            if seen[seq]:
                duplicates += 1
                continue
            seen[seq] = 1
            if seq < highest:
                reordered += 1
            highest = max(highest, seq)
            seqs.append(seq)
            lat_us.append((now - sent) // 1000)
    stats.write_text(
        json.dumps(
            {
                "received": len(seqs),
                "duplicates": duplicates,
                "reordered": reordered,
                "corrupt": corrupt,
                "scheduling": sched,
                "seqs": seqs.tolist(),
                "latency_us": lat_us.tolist(),
            }
        ),
        encoding="utf-8",
    )


def canary(stats: Path, interval_ns: int = 1_000_000) -> None:
    """Sleep to each `interval_ns` tick until SIGTERM; record how late each wake-up was
    (a machine that is busy, or whose hypervisor steals the CPU, wakes it late)."""
    _timer_slack()
    stop = _Stop()
    late = array("q")
    clock = time.monotonic_ns
    due = clock() + interval_ns
    while not stop.stopped:
        wait = due - clock()
        if wait > 0:
            time.sleep(wait / 1e9)
        now = clock()
        if len(late) < _MAX_DATAGRAMS:
            late.append(now - due)
        due = max(due + interval_ns, now)  # a long stall is one late wake-up, not many
    result = {"late_us": {k: v // 1000 for k, v in _pcts(late).items()}, "wakeups": len(late)}
    stats.write_text(json.dumps(result, indent=2), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.impair")
    sub = p.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("forward")
    f.add_argument("--link", action="append", required=True, help="OUTER/PEER/INNER/TARGET/MS")
    f.add_argument("--loss", type=float, default=0.02)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--rt", type=int, default=0, help="SCHED_FIFO priority (0: normal)")
    f.add_argument("--switch", type=int, help="the link SIGUSR1 takes down, SIGUSR2 back")
    f.add_argument("--data-bytes", type=int, default=1000, help="a data datagram's least size")
    s = sub.add_parser("source")
    s.add_argument("--to", required=True)
    s.add_argument("--rate-bps", type=int, default=5_000_000)
    s.add_argument("--size", type=int, default=1200)
    s.add_argument("--seconds", type=float, default=15.0)
    s.add_argument("--first", type=int, default=0, help="the first sequence number")
    k = sub.add_parser("sink")
    k.add_argument("--bind", required=True)
    k.add_argument("--rt", type=int, default=0, help="SCHED_FIFO priority (0: normal)")
    c = sub.add_parser("canary")
    for q in (f, s, k, c):
        q.add_argument("--stats", type=Path, required=True)
    args = p.parse_args(argv)
    if args.mode == "forward":
        forward(args.link, args.loss, args.seed, args.stats, args.rt, args.switch, args.data_bytes)
    elif args.mode == "source":
        source(_addr(args.to), args.rate_bps, args.size, args.seconds, args.stats, args.first)
    elif args.mode == "canary":
        canary(args.stats)
    else:
        sink(_addr(args.bind), args.stats, args.rt)


if __name__ == "__main__":
    main(sys.argv[1:])
