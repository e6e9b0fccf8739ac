"""Both ends of a session on loopback, under any adapter, seen through one blocking API.

The conformance suite (`tests/test_adapters.py`) is written once against `End`; each
runtime gets an `EndsFactory` here (`ENDS`) that opens any number of ends, each with
its own config and role, and yields them as `End`s; `ADAPTERS` gives the usual pair
(the responder B, then the initiator A, one config) made from it (`pair_of`):

* thread-driven adapters (`plait_adapters.raw`, `plait_adapters.uring`) already have
  `End`'s blocking API: `sync_ends` opens them as they are;
* async adapters run their ends on one event loop in a background thread; `AsyncEnd`
  forwards each call to that loop and waits for it (`aio_ends`, `trio_ends`).

To add an adapter, add an entry to `ENDS`: a function that returns an `EndsFactory`,
or a string saying why it is skipped here (missing module, kernel without io_uring);
pytest shows that string as the skip reason. A blocking adapter whose
`open_session(config, links, initiator=..., on_message=...)` returns an object with
`End`'s methods needs only ``functools.partial(sync_ends, module.open_session)``.

`Nat` stands between the two ends for the cases where the responder learns the
initiator's addresses (``remote=None``): one mapping per link, whose public port can be
switched mid-session as a carrier-grade NAT re-maps a modem.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import random
import select
import socket
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import plait
from plait_adapters import LinkSpec, SessionStats
from plait_adapters._links import Address

T = TypeVar("T")
OnMessage = Callable[[plait.MessageReceived], None] | None


class End(Protocol):
    """One end of a session, driven by some runtime, used from the test's thread."""

    def send(
        self,
        data: bytes,
        stream: int = 0,
        *,
        deadline: int | None = None,
        duplicate: str | None = None,
        timeout: float | None = None,
    ) -> int: ...
    def receive(self, timeout: float | None = None) -> plait.MessageReceived: ...
    def wait_established(self, timeout: float | None = None) -> bool: ...
    @property
    def ended(self) -> plait.SessionClosed | None: ...
    def poll_events(self) -> list[plait.Event]: ...
    def close_link(self, link: int) -> None: ...
    def stats(self) -> SessionStats: ...
    def set_link_rate(self, link: int, rate_bps: int | None) -> None: ...
    def set_latency(self, latency_ns: int) -> None: ...
    def set_fec(self, fec: plait.FecConfig | None) -> None: ...
    def close(self, timeout: float | None = None, *, abort: bool = False) -> None: ...


PairFactory = Callable[
    [plait.Config, Sequence[LinkSpec], Sequence[LinkSpec], OnMessage],
    AbstractContextManager[tuple[End, End]],
]


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (what ``bind(port 0)`` picks)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PICK: Final = random.Random(os.urandom(16))
"""Picks test ports; not seeded: each test process should pick its own."""
_HANDED: set[int] = set()
"""Ports `free_ports` gave out in this process: never twice (two calls in one test, the
second picking a port the first handed out but nobody had bound yet, failed CI once)."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` UDP ports on `host` that were free a moment ago, from below the ephemeral
    range. A test binds them after a while, and link ports are exclusive: a port from
    the ephemeral range might be handed meanwhile to a socket bound to port 0 (a NAT
    stand-in's, another test run's), and the test would fail with EADDRINUSE."""
    top = max(_ephemeral_low(), 20_000)
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            port = _PICK.randrange(10_000, top)
            if port in _HANDED:
                continue  # handed out already: its test may not have bound it yet
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        ports = [sock.getsockname()[1] for sock in socks]
        _HANDED.update(ports)
        return ports
    finally:
        for sock in socks:
            sock.close()


def loopback_links(n: int, *, learn: bool = False) -> tuple[list[LinkSpec], list[LinkSpec]]:
    """`n` links on 127.0.0.1 with free ports (`free_ports`): (side A's specs, side B's
    specs); with `learn`, B's links have no remote (B learns A's addresses)."""
    addrs = [("127.0.0.1", port) for port in free_ports(2 * n)]
    a = [LinkSpec(local=addrs[i], remote=addrs[n + i]) for i in range(n)]
    b = [LinkSpec(local=addrs[n + i], remote=None if learn else addrs[i]) for i in range(n)]
    return a, b


_UDP_HEADER = struct.Struct("!HHHH")


class Spoofer:
    """Sends UDP datagrams that seem to come from an address another socket owns: link
    ports are exclusive (no SO_REUSEADDR), so a test cannot bind the peer's address
    while the peer runs. A raw IPv4 socket writes the UDP header itself (checksum 0:
    none, which IPv4 allows); it needs root or CAP_NET_RAW (`open` returns None
    without)."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self._sock, self.host = sock, host

    @classmethod
    def open(cls, host: str = "127.0.0.1") -> Spoofer | None:
        """A spoofer whose datagrams come from `host` (None without CAP_NET_RAW)."""
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        except PermissionError:
            return None
        sock.bind((host, 0))  # the source address of what it sends
        return cls(sock, host)

    def send(self, data: bytes, source: Address, to: Address) -> None:
        """One datagram to `to`, from `source` (whose host must be `host`)."""
        if source[0] != self.host:
            raise ValueError(f"this spoofer sends from {self.host}, not {source[0]}")
        header = _UDP_HEADER.pack(source[1], to[1], _UDP_HEADER.size + len(data), 0)
        self._sock.sendmsg([header, data], [], 0, (to[0], 0))

    def close(self) -> None:
        self._sock.close()


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


class Nat:
    """A NAT stand-in, one mapping per link, run by a thread: the initiator sends to
    `inside[i]`; the NAT passes that on to `public[i]` from its mapped port, and what
    comes back to the mapped port goes to the initiator's last source address.
    `remap()` gives every link a new mapped port and forgets the old one (datagrams to
    it are lost), as a carrier-grade NAT does when a mapping expires."""

    def __init__(self, public: Sequence[Address]) -> None:
        self.public = list(public)
        n = len(public)
        self._inner = [_udp() for _ in range(n)]
        self._mapped = [_udp() for _ in range(n)]
        self.inside: list[Address] = [sk.getsockname() for sk in self._inner]
        self._initiator: list[Address | None] = [None] * n
        self.last_in: list[bytes | None] = [None] * n
        """The last datagram passed on to the responder, per link (to replay)."""
        self.replies = [0] * n
        """Datagrams from the responder through each link's current mapping."""
        self.paused = False
        """While True, every datagram is dropped, both ways (a network outage)."""
        self._requests: deque[Callable[[], None]] = deque()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="nat", daemon=True)
        self._thread.start()

    def mapped_ports(self) -> list[int]:
        return [sk.getsockname()[1] for sk in self._mapped]

    def remap(self) -> None:
        """A new mapped port on every link; returns once the NAT uses them."""
        done = threading.Event()

        def remap() -> None:
            for i, old in enumerate(self._mapped):
                self._mapped[i] = _udp()
                old.close()
                self.replies[i] = 0
            done.set()

        self._requests.append(remap)
        assert done.wait(5.0)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5.0)
        for sock in self._inner + self._mapped:
            sock.close()

    def _run(self) -> None:
        while not self._stop:
            while self._requests:
                self._requests.popleft()()
            socks = self._inner + self._mapped
            for sock in select.select(socks, [], [], 0.01)[0]:
                self._pass(sock)

    def _pass(self, sock: socket.socket) -> None:
        n = len(self._inner)
        at = (self._inner + self._mapped).index(sock)
        i, inward = at % n, at < n
        while True:
            try:
                data, source = sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError:
                continue  # ICMP port unreachable, and the like
            if self.paused:
                continue
            if inward:  # from the initiator, out through the mapping
                self._initiator[i] = source
                self.last_in[i] = data
                to, out = self.public[i], self._mapped[i]
            else:  # from the responder, back to the initiator
                initiator = self._initiator[i]
                if source != self.public[i] or initiator is None:
                    continue
                self.replies[i] += 1
                to, out = initiator, self._inner[i]
            with contextlib.suppress(OSError):  # a full buffer: UDP drops
                out.sendto(data, to)


# --- any number of ends, and pairs of them -----------------------------------------------------


EndSpec = tuple[plait.Config, Sequence[LinkSpec], bool, OnMessage]
"""One end to open: its config, its links, whether it is the initiator, on_message."""


class EndsFactory(Protocol):
    """Opens ends (in order) under one runtime; closes them in reverse order."""

    def __call__(self, specs: Sequence[EndSpec]) -> AbstractContextManager[list[End]]: ...


@contextmanager
def pair_of(
    ends: EndsFactory,
    config: plait.Config,
    links_a: Sequence[LinkSpec],
    links_b: Sequence[LinkSpec],
    on_message_b: OnMessage,
) -> Iterator[tuple[End, End]]:
    """The responder B, then the initiator A, both with `config`: yields (A, B)."""
    with ends([(config, links_b, False, on_message_b), (config, links_a, True, None)]) as (b, a):
        yield a, b


# --- thread-driven adapters -------------------------------------------------------------------


class _Opener(Protocol):
    def __call__(
        self,
        config: plait.Config,
        links: Sequence[LinkSpec],
        *,
        initiator: bool,
        on_message: OnMessage = None,
    ) -> End: ...


@contextmanager
def sync_ends(open_session: _Opener, specs: Sequence[EndSpec]) -> Iterator[list[End]]:
    with contextlib.ExitStack() as stack:
        opened: list[End] = []
        for config, links, initiator, on_message in specs:
            end = open_session(config, links, initiator=initiator, on_message=on_message)
            stack.callback(end.close)
            opened.append(end)
        yield opened


# --- async adapters ---------------------------------------------------------------------------


class _Runner(Protocol):
    def __call__(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T: ...


class _AsyncSession(Protocol):
    async def send(
        self,
        data: bytes,
        stream: int = 0,
        *,
        deadline: int | None = None,
        duplicate: str | None = None,
        timeout: float | None = None,
    ) -> int: ...
    async def receive(self, timeout: float | None = None) -> plait.MessageReceived: ...
    async def wait_established(self, timeout: float | None = None) -> bool: ...
    @property
    def ended(self) -> plait.SessionClosed | None: ...
    def poll_events(self) -> list[plait.Event]: ...
    def close_link(self, link: int) -> None: ...
    def stats(self) -> SessionStats: ...
    def set_link_rate(self, link: int, rate_bps: int | None) -> None: ...
    def set_latency(self, latency_ns: int) -> None: ...
    def set_fec(self, fec: plait.FecConfig | None) -> None: ...
    async def aclose(self, timeout: float | None = None, *, abort: bool = False) -> None: ...


class AsyncEnd:
    """An async session, used from another thread: each call runs on its loop."""

    def __init__(self, session: _AsyncSession, run: _Runner) -> None:
        self._s = session
        self._run = run

    def send(
        self,
        data: bytes,
        stream: int = 0,
        *,
        deadline: int | None = None,
        duplicate: str | None = None,
        timeout: float | None = None,
    ) -> int:
        return self._run(
            lambda: self._s.send(
                data, stream, deadline=deadline, duplicate=duplicate, timeout=timeout
            ),
            (timeout or 10.0) + 5.0,
        )

    def receive(self, timeout: float | None = None) -> plait.MessageReceived:
        wait = 10.0 if timeout is None else timeout
        return self._run(lambda: self._s.receive(wait), wait + 5.0)

    def wait_established(self, timeout: float | None = None) -> bool:
        wait = 10.0 if timeout is None else timeout
        return self._run(lambda: self._s.wait_established(wait), wait + 5.0)

    @property
    def ended(self) -> plait.SessionClosed | None:
        return self._s.ended

    def set_link_rate(self, link: int, rate_bps: int | None) -> None:
        self._sync(lambda: self._s.set_link_rate(link, rate_bps))

    def set_latency(self, latency_ns: int) -> None:
        self._sync(lambda: self._s.set_latency(latency_ns))

    def set_fec(self, fec: plait.FecConfig | None) -> None:
        self._sync(lambda: self._s.set_fec(fec))

    def _sync(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self._run(call, 10.0)

    def poll_events(self) -> list[plait.Event]:
        return self._sync(self._s.poll_events)

    def close_link(self, link: int) -> None:
        self._sync(lambda: self._s.close_link(link))

    def stats(self) -> SessionStats:
        return self._sync(self._s.stats)

    def close(self, timeout: float | None = None, *, abort: bool = False) -> None:
        wait = 10.0 if timeout is None else timeout
        self._run(lambda: self._s.aclose(timeout, abort=abort), wait + 5.0)


OpenAsync = Callable[..., AbstractAsyncContextManager[Any]]


async def _serve(
    open_session: OpenAsync,
    specs: Sequence[EndSpec],
    ready: Callable[[list[Any]], None],
    stopped: Callable[[], Awaitable[None]],
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        opened = []
        for config, links, initiator, on_message in specs:
            session = open_session(config, links, initiator=initiator, on_message=on_message)
            opened.append(await stack.enter_async_context(session))
        ready(opened)
        await stopped()


@contextmanager
def aio_ends(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], specs: Sequence[EndSpec]
) -> Iterator[list[End]]:
    from plait_adapters import aio  # noqa: PLC0415  (imported only for this runtime)

    loop = loop_factory()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ends: list[Any] = []
    stop = asyncio.Event()

    def run(fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        async def go() -> T:
            return await asyncio.wait_for(fn(), timeout)

        return asyncio.run_coroutine_threadsafe(go(), loop).result(timeout + 5)

    async def stopped() -> None:
        await stop.wait()

    served = asyncio.run_coroutine_threadsafe(
        _serve(aio.open_session, specs, ends.extend, stopped), loop
    )
    try:
        run(lambda: _until(lambda: bool(ends) or served.done()), 10.0)
        if served.done():
            served.result()  # raises what opening raised
        yield [AsyncEnd(end, run) for end in ends]
    finally:
        loop.call_soon_threadsafe(stop.set)
        try:
            served.result(10.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10.0)
            loop.close()


async def _until(done: Callable[[], bool]) -> None:
    while not done():
        await asyncio.sleep(0.001)


@contextmanager
def trio_ends(specs: Sequence[EndSpec]) -> Iterator[list[End]]:
    import trio  # noqa: PLC0415  (imported only for this runtime)

    from plait_adapters import trio_  # noqa: PLC0415

    ends: list[Any] = []
    failed: list[BaseException] = []
    opened = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    stop: list[trio.Event] = []

    async def main() -> None:
        token.append(trio.lowlevel.current_trio_token())
        stop.append(trio.Event())

        def ready(sessions: list[Any]) -> None:
            ends.extend(sessions)
            opened.set()

        await _serve(trio_.open_session, specs, ready, stop[0].wait)

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)
        opened.set()

    def run(fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        async def go() -> T:
            with trio.fail_after(timeout):
                return await fn()

        try:
            return trio.from_thread.run(go, trio_token=token[0])
        except trio.TooSlowError:
            raise TimeoutError from None

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    opened.wait(10.0)
    try:
        if failed:
            raise failed[0]
        yield [AsyncEnd(end, run) for end in ends]
    finally:
        if token and not failed:
            trio.from_thread.run_sync(stop[0].set, trio_token=token[0])
        thread.join(10.0)
        if failed:
            raise failed[0]


# --- the registry -----------------------------------------------------------------------------


def _raw() -> EndsFactory | str:
    from plait_adapters import raw  # noqa: PLC0415

    return functools.partial(sync_ends, raw.open_session)


def _asyncio() -> EndsFactory | str:
    return functools.partial(aio_ends, asyncio.new_event_loop)


def _uvloop() -> EndsFactory | str:
    if importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install uvloop)"
    import uvloop  # noqa: PLC0415

    return functools.partial(aio_ends, uvloop.new_event_loop)


def _trio() -> EndsFactory | str:
    if importlib.util.find_spec("trio") is None:
        return "trio is not installed (pip install plait[trio])"
    return trio_ends


def _io_uring() -> EndsFactory | str:
    from plait_adapters import uring  # noqa: PLC0415

    reason = uring.availability()
    if reason is not None:
        return f"io_uring unavailable: {reason}"
    return functools.partial(sync_ends, uring.open_session)


ENDS: dict[str, Callable[[], EndsFactory | str]] = {
    "raw": _raw,
    "asyncio": _asyncio,
    "uvloop": _uvloop,
    "trio": _trio,
    "io_uring": _io_uring,
}
"""Adapter name -> a function giving what opens its ends, or why it is skipped."""


def _pairs(name: str) -> PairFactory | str:
    made = ENDS[name]()
    return made if isinstance(made, str) else functools.partial(pair_of, made)


ADAPTERS: dict[str, Callable[[], PairFactory | str]] = {
    name: functools.partial(_pairs, name) for name in ENDS
}
"""Adapter name -> a function giving its pair factory, or why it is skipped."""
