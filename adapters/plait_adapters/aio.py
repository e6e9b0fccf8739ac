"""asyncio (and uvloop): a DatagramProtocol per link, one timer, spinning near deadlines.

Each datagram runs the endpoint loop at once, inside `datagram_received`: feed it,
hand messages and events to the application, flush, and re-arm the one timer only if
the deadline changed (as aioquic's adapter does). `send()` flushes at once too, so a
message leaves the socket inside the call.

Two costs of stock asyncio are handled here:

* the selector transport reads every datagram into a fresh 256 KiB buffer
  (`_SelectorTransport.max_size`): two page faults and ~11 us per datagram. Each
  transport's `max_size` is set to ``max(2048, mtu + 1)`` (`max_size=None` keeps
  asyncio's default; uvloop has no such attribute and needs nothing);
* timers wake about 1 ms late (the selector's timeout is whole milliseconds; uvloop
  fires anything under 0.5 ms at once). So the timer is set `spin_ns` (1 ms) early and
  the loop then spins (``call_soon``, other I/O still served) until the deadline. Set
  ``spin_ns=0`` for millisecond-grade timing at no CPU cost.

A link with no remote (a responder learning the peer's address) gets a protocol that
passes `datagram_received`'s address on: when the endpoint accepts the datagram, the
link's `_session.Peer` sends there (``transport.sendto(data, addr)``).

Usage::

    async with plait_adapters.aio.open_session(cfg, links, initiator=True) as s:
        await s.send(b"hello", stream=0)
        async for msg in s:
            ...
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypedDict, Unpack

import plait
from plait_adapters._async import AsyncFacade
from plait_adapters._links import LinkLike, clock, open_sockets, specs
from plait_adapters._session import EventCallback, MessageCallback, Peer, Session

__all__ = ["AioOptions", "AioSession", "open_session"]


class _LinkProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: AioSession, link: int) -> None:
        self._owner = owner
        self._link = link

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._owner._datagram(self._link, data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):  # ECONNREFUSED after an ICMP error, and the like
            self._owner._session.count_error("socket", exc)


class _LearningProtocol(_LinkProtocol):
    """A link with no remote: the source address goes with the datagram."""

    def __init__(self, owner: AioSession, link: int, peer: Peer) -> None:
        super().__init__(owner, link)
        self._peer = peer

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._owner._datagram_from(self._link, data, addr, self._peer)


class AioSession(AsyncFacade):
    """A plait session on an asyncio event loop. Use `open_session`."""

    def __init__(
        self,
        config: plait.Config,
        links: Iterable[LinkLike],
        *,
        initiator: bool,
        on_message: MessageCallback | None = None,
        on_event: EventCallback | None = None,
        spin_ns: int = 1_000_000,
        max_size: int | None = 2048,
    ) -> None:
        self._specs = specs(links)
        self._session = Session(
            config,
            self._specs,
            initiator=initiator,
            runtime="asyncio",
            on_message=on_message,
            on_event=on_event,
        )
        self._config = config
        self._spin_ns = spin_ns
        self._max_size = None if max_size is None else max(max_size, config.mtu + 1)
        self._loop = asyncio.get_running_loop()
        self._transports: list[asyncio.DatagramTransport] = []
        self._sends: list[Callable[[bytes], object]] = []
        self._timer: asyncio.Handle | None = None
        self._readable: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None

    async def _start(self) -> None:
        loop, s = self._loop, self._session
        s.notes["loop"] = type(loop).__module__ + "." + type(loop).__name__
        socks = open_sockets(self._specs)
        # a datagram may be read (and answered) while later links are still opening
        self._sends = [Session.closed_send()] * len(socks)
        for i, sock in enumerate(socks):
            peer = s.learner(i)
            protocol = (
                functools.partial(_LinkProtocol, self, i)
                if peer is None
                else functools.partial(_LearningProtocol, self, i, peer)
            )
            try:
                transport, _ = await loop.create_datagram_endpoint(protocol, sock=sock)
            except BaseException:
                for unowned in socks[i:]:
                    unowned.close()
                raise
            if self._max_size is not None and hasattr(transport, "max_size"):
                transport.max_size = self._max_size  # the selector transport reads with it
                s.notes["max_size"] = str(self._max_size)
            self._transports.append(transport)
            if peer is None:
                self._sends[i] = transport.sendto
            else:
                peer.sendto = transport.sendto
                self._sends[i] = peer
        self._step(clock())

    # --- the API beyond the shared one (`AsyncFacade`) -------------------------------------

    def close_link(self, link: int) -> None:
        """Close one link's socket (what a dead modem looks like)."""
        self._transports[link].close()
        self._sends[link] = Session.closed_send()

    def _opened(self) -> bool:
        return len(self._transports) == len(self._specs)  # else opening failed half-way

    def _close_io(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in self._transports:
            transport.close()

    async def _settle(self) -> None:
        await asyncio.sleep(0)  # let the transports finish closing

    # --- the loop ------------------------------------------------------------------------------

    def _datagram(self, link: int, data: bytes) -> None:
        now = clock()
        self._session.feed(link, data, now)
        self._step(now)

    def _datagram_from(self, link: int, data: bytes, addr: object, peer: Peer) -> None:
        now = clock()
        if self._session.feed(link, data, now):
            peer.addr = addr
        self._step(now)

    def _rearm(self, due: int | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is None or self._session.error is not None:
            return
        delay = due - clock() - self._spin_ns
        if delay <= 0:
            self._timer = self._loop.call_soon(self._on_timer)
        else:
            self._timer = self._loop.call_later(delay / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = clock()
        due = self._session.deadline()[0]
        if due is not None and now < due:  # early (the spin window): go round the loop
            self._rearm(due)
            return
        self._step(now)

    async def _wait_progress(self, timeout: float | None = None) -> bool:
        if self._readable is None:
            self._readable = self._loop.create_future()
        if timeout is None:
            await self._readable
            return True
        try:  # shielded: other readers wait on the same future
            await asyncio.wait_for(asyncio.shield(self._readable), timeout)
        except TimeoutError:
            return False
        return True

    async def _wait_room(self) -> None:
        if self._room is None:
            self._room = self._loop.create_future()
        await self._room

    def _wake_readers(self) -> None:
        fut, self._readable = self._readable, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_room(self) -> None:
        fut, self._room = self._room, None
        if fut is not None and not fut.done():
            fut.set_result(None)


class AioOptions(TypedDict, total=False):
    """`AioSession`'s keywords, for `open_session`."""

    on_message: MessageCallback | None
    on_event: EventCallback | None
    spin_ns: int
    max_size: int | None


@asynccontextmanager
async def open_session(
    config: plait.Config,
    links: Iterable[LinkLike],
    *,
    initiator: bool,
    **options: Unpack[AioOptions],
) -> AsyncIterator[AioSession]:
    """Open the sockets on the running loop; closes them on exit.

    Args:
        config: the session's `plait.Config` (one `LinkConfig` per link, equal on both ends).
        links: one (local, remote[, interface]) or `LinkSpec` per link.
        initiator: True on the end that starts the session.
        options: on_message, on_event, spin_ns, max_size (see the module docstring).
    """
    session = AioSession(config, links, initiator=initiator, **options)
    try:
        await session._start()
        yield session
    except BaseException:  # leaving on an error (or a cancel): no lingering
        await session.aclose(abort=True)
        raise
    await session.aclose()
