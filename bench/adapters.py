"""Adapter latency on loopback: send() to the socket, and the socket to the application.

    .venv/bin/python bench/adapters.py            # ~30 s; bench/results/adapters.json
    .venv/bin/python bench/adapters.py --quick    # a smoke run, nothing written

Each latency case is a ping-pong over 127.0.0.1 between this process (the application
under test, pinned to CPU 0) and a peer process started for the case (CPU 1 when there
is one, SCHED_FIFO when allowed, so that other work on that CPU cannot delay it). The
peer sends ping i, a 200-byte message, and notes the time just before the system call
that sends its datagram. The application receives it, notes the time, replies at once,
and the reply's datagram is timed when the application's socket `send()` returns (the
adapters' link send functions are wrapped for that; nothing else changes). So, per
ping, in one monotonic clock:

* recv: the peer's send call -> the message reaches the application (the callback
  runs, or the iterator yields): loopback, the wake-up, the adapter and the endpoint;
* send: the application calls ``send()`` -> the datagram has left through the socket.

Rows: a plain blocking UDP socket (the floor: one `recv` and one `send`; also with both
processes on one CPU, where a wake-up is a context switch and costs far less), each
adapter (plait with 3 links, no FEC, no psk: this times the adapter and the endpoint's
per-datagram work, not FEC or AEAD), and aioquic's asyncio DATAGRAM path when aioquic is
installed (its server side under test, stock asyncio; the send column is
`send_datagram_frame` + `transmit`). The io_uring adapter sends a whole flush in one
submission, so its send column ends when that submission returns (the kernel runs a UDP
send inline, within it); the row is skipped, with the reason, where io_uring is not
available. The first `WARMUP` pings are not counted.

The timer table: the application sends a burst of 600 x 1200-byte messages over 3 links
paced at 5 Mbit/s each (a release every ~0.65 ms), and the adapter reports how late its
`handle_timer` ran after the deadline the endpoint asked for (p50/p99), with the
process's CPU use during the burst; each adapter with its sub-millisecond wait on (the
default: the raw adapter sleeps until 100 us before and spins the rest, with 1 ns timer
slack; the async ones wake 1 ms early and spin the loop) and off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from _harness import write_json

import plait
from plait_adapters import LinkSpec, aio, raw, uring

CLOCK = time.monotonic_ns
MAGIC = b"\xa5plait-bench"
SIZE = 200
WARMUP = 300
HOST = "127.0.0.1"
Sends = list[Callable[[bytes], object]]
APP_CPU = 0
PEER_CPU = 1 if (os.cpu_count() or 1) >= 2 else 0
PEER_POLICY: set[str] = set()  # the peers' scheduling policies, for the JSON
URING_UNAVAILABLE = uring.availability()  # None, or why the io_uring rows are skipped


def payload(kind: bytes, i: int) -> bytes:
    head = MAGIC + kind + i.to_bytes(4, "big")
    return head + bytes(SIZE - len(head))


def index_of(data: bytes, kind: bytes) -> int:
    at = data.find(MAGIC + kind)
    if at < 0:
        return -1
    at += len(MAGIC) + 1
    return int.from_bytes(data[at : at + 4], "big")


def plait_config(rate_bps: int = 100_000_000, latency_ns: int = 1_000_000_000) -> plait.Config:
    return plait.Config(
        links=[plait.LinkConfig(rate_bps=rate_bps)] * 3, fec=None, latency_ns=latency_ns
    )


def instrument(sends: Sends, kind: bytes, times: list[int], *, before: bool) -> None:
    """Wrap an adapter's link send functions: note when the datagram carrying message
    `kind` i is handed to the kernel (`before`: the peer's pings) or has left (the send
    system call returned: the application's replies)."""
    for link, send in enumerate(sends):

        def timed(data: bytes, send: Callable[[bytes], object] = send) -> object:
            t = CLOCK()
            result = send(data)
            if not before:
                t = CLOCK()
            i = index_of(data, kind)
            if 0 <= i < len(times) and not times[i]:
                times[i] = t
            return result

        sends[link] = timed


def instrument_batch(transport: uring.UringTransport, kind: bytes, times: list[int]) -> None:
    """`instrument` for the io_uring adapter, which sends a flush as one batch: the
    datagrams have left once the batch's submission returns."""
    send_batch = transport.send_batch

    def timed(items: Iterable[tuple[bytes, int]]) -> None:
        items = list(items)
        send_batch(items)
        t = CLOCK()
        for data, _ in items:
            i = index_of(data, kind)
            if 0 <= i < len(times) and not times[i]:
                times[i] = t

    transport.send_batch = timed  # type: ignore[method-assign]  # timing it


def remote_of(link: LinkSpec) -> tuple[str, int]:
    """A bench link's peer address (every link here has one)."""
    if link.remote is None:
        raise ValueError("the bench's links are connected: each needs a remote")
    return link.remote


def links_pair(n: int) -> tuple[list[LinkSpec], list[LinkSpec]]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2 * n)]
    for sock in socks:
        sock.bind((HOST, 0))
    addrs = [sock.getsockname() for sock in socks]
    for sock in socks:
        sock.close()
    app = [LinkSpec(addrs[i], addrs[n + i]) for i in range(n)]
    peer = [LinkSpec(addrs[n + i], addrs[i]) for i in range(n)]
    return app, peer


# --- the peer (a process of its own) --------------------------------------------------------


def peer_main(spec: dict[str, Any]) -> None:
    if spec["cpu"] is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    policy = "SCHED_OTHER"
    with contextlib.suppress(OSError):  # not preempted by other work on its CPU (root)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        policy = "SCHED_FIFO"
    links = [LinkSpec(tuple(local), tuple(remote)) for local, remote in spec["links"]]
    n: int = spec["n"]
    sent = [0] * n
    kind = spec["kind"]
    if kind == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(links[0].local)
        sock.connect(remote_of(links[0]))
        sock.settimeout(10)
        for i in range(n):
            sent[i] = CLOCK()
            sock.send(payload(b"P", i))
            sock.recv(2048)
    elif kind == "plait":
        _peer_plait(links, n, sent)
    elif kind == "sink":
        with raw.open_session(
            plait_config(5_000_000), links, initiator=True, busy_poll_ns=0, spin_ns=0
        ) as s:
            for _ in s:
                pass
    else:
        asyncio.run(_peer_quic(links[0], n, sent))
    print(json.dumps({"sent": sent, "policy": policy}), flush=True)


def _peer_plait(links: list[LinkSpec], n: int, sent: list[int]) -> None:
    done = threading.Event()
    held: list[raw.RawSession] = []

    def on_message(m: plait.MessageReceived) -> None:
        i = index_of(m.data, b"R") + 1
        if i >= n:
            done.set()
        else:
            held[0].send(payload(b"P", i))

    with raw.open_session(
        plait_config(), links, initiator=True, on_message=on_message, busy_poll_ns=0, spin_ns=0
    ) as s:
        held.append(s)
        instrument(s._sends, b"P", sent, before=True)
        if not s.wait_established(10):
            raise SystemExit("peer: no session")
        s.send(payload(b"P", 0))
        done.wait(60)


async def _peer_quic(link: LinkSpec, n: int, sent: list[int]) -> None:
    from aioquic.asyncio.client import connect  # noqa: PLC0415
    from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: PLC0415
    from aioquic.quic.configuration import QuicConfiguration  # noqa: PLC0415
    from aioquic.quic.events import DatagramFrameReceived, QuicEvent  # noqa: PLC0415

    class Client(QuicConnectionProtocol):
        waiter: asyncio.Future[bytes] | None = None

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, DatagramFrameReceived) and self.waiter is not None:
                self.waiter.set_result(event.data)

    import ssl  # noqa: PLC0415

    cfg = QuicConfiguration(
        is_client=True,
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
        alpn_protocols=["bench"],
        max_datagram_frame_size=65536,
    )
    loop = asyncio.get_running_loop()
    async with connect(
        *remote_of(link),
        configuration=cfg,
        create_protocol=Client,
        local_port=link.local[1],
    ) as client:
        assert isinstance(client, Client)
        transport = client._transport
        assert transport is not None
        real_sendto, pending = transport.sendto, [-1]

        def timed_sendto(data: Any, addr: Any = None) -> None:
            if pending[0] >= 0:  # the first datagram since the frame was queued
                sent[pending[0]] = CLOCK()
                pending[0] = -1
            real_sendto(data, addr)

        transport.sendto = timed_sendto  # type: ignore[method-assign]  # timing it
        for i in range(n):
            client.waiter = loop.create_future()
            client._quic.send_datagram_frame(payload(b"P", i))
            pending[0] = i
            client.transmit()
            with contextlib.suppress(TimeoutError):  # DATAGRAM frames may be dropped: go on
                await asyncio.wait_for(client.waiter, 0.1)


def spawn_peer(kind: str, links: list[LinkSpec], n: int, cpu: int | None) -> subprocess.Popen[str]:
    spec = {"kind": kind, "links": [(ln.local, ln.remote) for ln in links], "n": n, "cpu": cpu}
    return subprocess.Popen(  # noqa: S603  (this script, with arguments it made)
        [sys.executable, __file__, "--peer", json.dumps(spec)], stdout=subprocess.PIPE, text=True
    )


def peer_result(proc: subprocess.Popen[str]) -> list[int]:
    out, _ = proc.communicate(timeout=60)
    if proc.returncode:
        raise RuntimeError(f"peer exited with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    PEER_POLICY.add(result["policy"])
    sent: list[int] = result["sent"]
    return sent


# --- the application under test ---------------------------------------------------------------


class Times:
    def __init__(self, n: int) -> None:
        self.recv = [0] * n
        self.call = [0] * n
        self.done = [0] * n

    def on_ping(self, data: bytes, t: int) -> tuple[int, bytes]:
        i = index_of(data, b"P")
        self.recv[i] = t
        return i, payload(b"R", i)


def app_udp(times: Times, n: int, cpu: int | None) -> list[int]:
    app, peer = links_pair(1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind(app[0].local)
        sock.connect(remote_of(app[0]))
        sock.settimeout(10)
        proc = spawn_peer("udp", peer, n, cpu)
        for _ in range(n):
            data = sock.recv(2048)
            i, reply = times.on_ping(data, CLOCK())
            times.call[i] = CLOCK()
            sock.send(reply)
            times.done[i] = CLOCK()
        return peer_result(proc)


def app_raw(
    times: Times,
    n: int,
    cpu: int | None,
    *,
    callback: bool,
    opener: Callable[..., Any] = raw.open_session,
    **opts: Any,
) -> list[int]:
    """A thread-driven adapter: `raw`, or `uring` (``opener=uring.open_session``)."""
    app, peer = links_pair(3)
    held: list[Any] = []

    def on_message(m: plait.MessageReceived) -> None:
        i, reply = times.on_ping(m.data, CLOCK())
        times.call[i] = CLOCK()
        held[0].send(reply)

    handler = on_message if callback else None
    with opener(plait_config(), app, initiator=False, on_message=handler, **opts) as s:
        held.append(s)
        if isinstance(s, uring.UringSession):
            instrument_batch(s._transport, b"R", times.done)
        else:
            instrument(s._sends, b"R", times.done, before=False)
        proc = spawn_peer("plait", peer, n, cpu)
        if not callback:
            for _ in range(n):
                m = s.receive(10)
                i, reply = times.on_ping(m.data, CLOCK())
                times.call[i] = CLOCK()
                s.send(reply)
        return peer_result(proc)


def app_aio(
    times: Times,
    n: int,
    cpu: int | None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    **opts: Any,
) -> list[int]:
    async def main() -> list[int]:
        app, peer = links_pair(3)
        async with aio.open_session(plait_config(), app, initiator=False, **opts) as s:
            instrument(s._sends, b"R", times.done, before=False)
            proc = spawn_peer("plait", peer, n, cpu)
            for _ in range(n):
                m = await s.receive()
                i, reply = times.on_ping(m.data, CLOCK())
                times.call[i] = CLOCK()
                await s.send(reply)
            return peer_result(proc)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def app_trio(times: Times, n: int, cpu: int | None, **opts: Any) -> list[int]:
    import trio  # noqa: PLC0415

    from plait_adapters import trio_  # noqa: PLC0415

    async def main() -> list[int]:
        app, peer = links_pair(3)
        async with trio_.open_session(plait_config(), app, initiator=False, **opts) as s:
            instrument(s._sends, b"R", times.done, before=False)
            proc = spawn_peer("plait", peer, n, cpu)
            for _ in range(n):
                m = await s.receive()
                i, reply = times.on_ping(m.data, CLOCK())
                times.call[i] = CLOCK()
                await s.send(reply)
            return peer_result(proc)

    return trio.run(main)


def app_quic(times: Times, n: int, cpu: int | None) -> list[int]:
    from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: PLC0415
    from aioquic.asyncio.server import serve  # noqa: PLC0415
    from aioquic.quic.configuration import QuicConfiguration  # noqa: PLC0415
    from aioquic.quic.events import DatagramFrameReceived, QuicEvent  # noqa: PLC0415

    class Server(QuicConnectionProtocol):
        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, DatagramFrameReceived):
                i, reply = times.on_ping(event.data, CLOCK())
                times.call[i] = CLOCK()
                self._quic.send_datagram_frame(reply)
                self.transmit()
                times.done[i] = CLOCK()

    async def main() -> list[int]:
        app, peer = links_pair(1)
        cert, key = _certificate()
        cfg = QuicConfiguration(
            is_client=False,
            certificate=cert,
            private_key=key,
            alpn_protocols=["bench"],
            max_datagram_frame_size=65536,
        )
        server = await serve(*app[0].local, configuration=cfg, create_protocol=Server)
        proc = spawn_peer("quic", peer, n, cpu)
        try:  # read its output while it runs (it is larger than a pipe holds)
            return await asyncio.get_running_loop().run_in_executor(None, peer_result, proc)
        finally:
            server.close()

    return asyncio.run(main())


def _certificate() -> tuple[Any, Any]:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert, key


# --- the timer table --------------------------------------------------------------------------

BURST = 600


def _busy(stats: Any) -> bool:
    return bool(stats.endpoint.messages_sent < BURST or stats.endpoint.buffered_bytes)


def _burst_result(stats: Any, cpu0: float, t0: int) -> dict[str, float]:
    wall = (CLOCK() - t0) / 1e9
    return {
        "timer_late_p50_us": stats.timer_late_p50_ns / 1e3,
        "timer_late_p99_us": stats.timer_late_p99_ns / 1e3,
        "timers": stats.timers,
        "cpu_percent": 100 * (time.process_time() - cpu0) / wall,
        "burst_ms": wall * 1e3,
    }


def timers_raw(opener: Callable[..., Any] = raw.open_session, **opts: Any) -> dict[str, float]:
    app, peer = links_pair(3)
    with opener(plait_config(5_000_000, 10**10), app, initiator=False, **opts) as s:
        proc = spawn_peer("sink", peer, 0, PEER_CPU)
        s.wait_established(10)
        t0, cpu0 = CLOCK(), time.process_time()
        for i in range(BURST):
            s.send(payload(b"B", i) + bytes(1000), timeout=10)
        while _busy(s.stats()):
            time.sleep(0.005)
        result = _burst_result(s.stats(), cpu0, t0)
    proc.communicate(timeout=20)
    return result


def timers_async(
    run: Callable[[Callable[[], Coroutine[Any, Any, dict[str, float]]]], dict[str, float]],
    opener: Callable[..., Any],
    sleep: Callable[[float], Coroutine[Any, Any, None]],
    **opts: Any,
) -> dict[str, float]:
    app, peer = links_pair(3)

    async def main() -> dict[str, float]:
        async with opener(plait_config(5_000_000, 10**10), app, initiator=False, **opts) as s:
            proc = spawn_peer("sink", peer, 0, PEER_CPU)
            await s.wait_established()
            t0, cpu0 = CLOCK(), time.process_time()
            for i in range(BURST):
                await s.send(payload(b"B", i) + bytes(1000))
            while _busy(s.stats()):
                await sleep(0.005)
            result = _burst_result(s.stats(), cpu0, t0)
        proc.communicate(timeout=20)
        return result

    return run(main)


# --- running it -------------------------------------------------------------------------------


def pcts(values: list[int]) -> dict[str, float]:
    values = sorted(values)
    out = {}
    for name, q in (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999)):
        out[name] = values[min(len(values) - 1, int(len(values) * q))] / 1e3
    return out


def latency_case(run: Callable[[Times, int], list[int]], n: int) -> dict[str, Any]:
    times = Times(n)
    sent = run(times, n)
    keep = range(min(WARMUP, n // 10), n)
    recv = [times.recv[i] - sent[i] for i in keep if times.recv[i] and sent[i]]
    send = [times.done[i] - times.call[i] for i in keep if times.done[i] and times.call[i]]
    return {"samples": len(recv), "recv": pcts(recv), "send": pcts(send)}


Case = tuple[str, Callable[[Times, int], list[int]] | str]


def latency_cases(has: dict[str, bool], cpu: int) -> list[Case]:
    new_loop = asyncio.new_event_loop
    cases: list[Case] = [
        ("udp blocking socket (floor)", lambda t, k: app_udp(t, k, cpu)),
        ("raw, callback (busy-poll 50 us)", lambda t, k: app_raw(t, k, cpu, callback=True)),
        (
            "raw, callback, busy-poll off",
            lambda t, k: app_raw(t, k, cpu, callback=True, busy_poll_ns=0),
        ),
        (
            "raw, callback, busy-poll 200 us",
            lambda t, k: app_raw(t, k, cpu, callback=True, busy_poll_ns=200_000),
        ),
        ("raw, iterator in another thread", lambda t, k: app_raw(t, k, cpu, callback=False)),
        (
            "io_uring, callback",
            (lambda t, k: app_raw(t, k, cpu, callback=True, opener=uring.open_session))
            if URING_UNAVAILABLE is None
            else URING_UNAVAILABLE,
        ),
        ("asyncio, max_size 2048", lambda t, k: app_aio(t, k, cpu, new_loop)),
        (
            "asyncio, max_size 256 KiB (stock)",
            lambda t, k: app_aio(t, k, cpu, new_loop, max_size=None),
        ),
    ]
    if has["uvloop"]:
        import uvloop  # noqa: PLC0415

        cases.append(("uvloop", lambda t, k: app_aio(t, k, cpu, uvloop.new_event_loop)))
    else:
        cases.append(("uvloop", "uvloop not installed"))
    cases.append(
        ("trio", (lambda t, k: app_trio(t, k, cpu)) if has["trio"] else "trio not installed")
    )
    quic = (lambda t, k: app_quic(t, k, cpu)) if has["aioquic"] else "aioquic not installed"
    cases.append(("aioquic asyncio DATAGRAM", quic))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smoke run; nothing written")
    parser.add_argument("--pings", type=int, default=8000)
    args = parser.parse_args()
    if args.peer:
        peer_main(json.loads(args.peer))
        return
    signal.alarm(600)  # never hang a CI job
    os.sched_setaffinity(0, {APP_CPU})
    n = 600 if args.quick else args.pings
    has = {m: importlib.util.find_spec(m) is not None for m in ("uvloop", "trio", "aioquic")}
    cases = latency_cases(has, PEER_CPU)
    if PEER_CPU != APP_CPU:
        cases.insert(1, ("udp blocking socket, same CPU", lambda t, k: app_udp(t, k, APP_CPU)))
    latency: dict[str, Any] = {}
    print(
        f"{'case':34} {'recv p50':>9} {'p99':>8} {'p99.9':>8}"
        f"   {'send p50':>9} {'p99':>8} {'p99.9':>8}  (us)"
    )
    for name, run in cases:
        if isinstance(run, str):
            latency[name] = {"skipped": run}
            print(f"{name:34} skipped: {run}")
            continue
        latency[name] = r = latency_case(run, n)
        rv, sd = r["recv"], r["send"]
        print(
            f"{name:34} {rv['p50_us']:9.1f} {rv['p99_us']:8.1f} {rv['p999_us']:8.1f}"
            f"   {sd['p50_us']:9.1f} {sd['p99_us']:8.1f} {sd['p999_us']:8.1f}",
            flush=True,
        )
    timers = run_timers(has)
    if not args.quick:
        path = write_json(
            "adapters",
            {
                "pings": n,
                "app_cpu": APP_CPU,
                "peer_cpu": PEER_CPU,
                "peer_scheduling": sorted(PEER_POLICY),
                "payload_bytes": SIZE,
                "warmup": WARMUP,
                "latency": latency,
                "timers": timers,
            },
        )
        print(f"wrote {path}")


def run_timers(has: dict[str, bool]) -> dict[str, Any]:
    def arun(
        loop_factory: Callable[[], asyncio.AbstractEventLoop],
    ) -> Callable[..., dict[str, float]]:
        def run(fn: Callable[[], Coroutine[Any, Any, dict[str, float]]]) -> dict[str, float]:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                return runner.run(fn())

        return run

    rows: list[tuple[str, Callable[[], dict[str, float]]]] = [
        ("raw, hybrid wait (spin 100 us, slack 1 ns)", timers_raw),
        ("raw, sleep only (slack default)", lambda: timers_raw(spin_ns=0, timer_slack_ns=None)),
        (
            "asyncio, spin 1 ms",
            lambda: timers_async(arun(asyncio.new_event_loop), aio.open_session, asyncio.sleep),
        ),
        (
            "asyncio, no spin",
            lambda: timers_async(
                arun(asyncio.new_event_loop), aio.open_session, asyncio.sleep, spin_ns=0
            ),
        ),
    ]
    if has["uvloop"]:
        import uvloop  # noqa: PLC0415

        rows += [
            (
                "uvloop, spin 1 ms",
                lambda: timers_async(arun(uvloop.new_event_loop), aio.open_session, asyncio.sleep),
            ),
            (
                "uvloop, no spin",
                lambda: timers_async(
                    arun(uvloop.new_event_loop), aio.open_session, asyncio.sleep, spin_ns=0
                ),
            ),
        ]
    if has["trio"]:
        import trio  # noqa: PLC0415

        from plait_adapters import trio_  # noqa: PLC0415

        rows += [
            ("trio, spin 1 ms", lambda: timers_async(trio.run, trio_.open_session, trio.sleep)),
            (
                "trio, no spin",
                lambda: timers_async(trio.run, trio_.open_session, trio.sleep, spin_ns=0),
            ),
        ]
    if URING_UNAVAILABLE is None:
        rows.append(("io_uring, hybrid wait", lambda: timers_raw(uring.open_session)))
    out: dict[str, Any] = {}
    print(
        f"\n{'timers while pacing (~0.65 ms apart)':44} {'late p50':>9} {'p99':>8}"
        f"  {'CPU %':>6} {'burst ms':>9}"
    )
    for name, fn in rows:
        out[name] = r = fn()
        print(
            f"{name:44} {r['timer_late_p50_us']:9.1f} {r['timer_late_p99_us']:8.1f}"
            f"  {r['cpu_percent']:6.1f} {r['burst_ms']:9.1f}",
            flush=True,
        )
    return out


if __name__ == "__main__":
    main()
